package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// Locker is the host-wide lifecycle lock.
type Locker interface {
	// Lock blocks until the lock is held or ctx ends, and returns the
	// function that releases it.
	Lock(ctx context.Context) (unlock func(), err error)
}

// StatusMode selects where status is written.
type StatusMode int

const (
	// StatusInline writes status into the manifest, or into the VM's state
	// folder where the manifest cannot be written.
	StatusInline StatusMode = iota
	// StatusState always writes status into <state>/vms/<name>/status.yaml.
	StatusState
)

// parseCacheFile is the file in the state folder that keeps the catalog's
// parses across restarts.
const parseCacheFile = "manifest-cache"

// Defaults for the Config fields left zero.
const (
	DefaultTrashRetention = 24 * time.Hour
	DefaultSaveTimeout    = 5 * time.Minute
)

// Config is the configuration of a Reconciler.
type Config struct {
	Runtime vmruntime.Runtime
	Catalog *Catalog
	// StateDir is the state folder: VMs in StateDir/vms/<name>, discarded
	// checkpoints in StateDir/trash.
	StateDir string
	// HostLock is held across every lifecycle transition; nil means no host
	// lock, which only tests should use.
	HostLock Locker
	// Clock defaults to the real clock.
	Clock      clock.Clock
	StatusMode StatusMode
	// TrashRetention is how long PurgeTrash keeps a trash entry; default 24h.
	TrashRetention time.Duration
	// SaveTimeout bounds a save and a restore; default 5m.
	SaveTimeout time.Duration
}

// Result is the outcome of a successful Reconcile: when to reconcile the
// key again.
type Result struct {
	// RequeueAfter, when positive, is the delay before the key must be
	// reconciled again, for a crash-restart backoff or a status write that
	// raced a user's edit.
	RequeueAfter time.Duration
}

// Reconciler drives VMs towards their manifests. Reconcile must not be
// called for two keys at once; Adopt and PurgeTrash may run beside it.
type Reconciler struct {
	cfg Config

	mu  sync.Mutex
	vms map[string]*memo
}

// memo is the state a Reconciler keeps in memory for one VM between
// reconciles.
type memo struct {
	rec       *record
	recLoaded bool
	// note is the outcome of the last transition, shown in Ready.
	note *note
	// stateStatus is the content of the VM's status.yaml.
	stateStatus *spec.Status
	stateLoaded bool
	// logged is the last manifest error logged, so it is logged once.
	logged string
	// target was derived from the manifest targetOf, which the catalog
	// hands out again for as long as the file is unchanged.
	target   *target
	targetOf *spec.Manifest
}

// New checks cfg, fills in its defaults, creates the state folder's vms
// folder and returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Runtime == nil || cfg.Catalog == nil || cfg.StateDir == "" {
		return nil, errors.New("reconcile config: runtime, catalog and state folder are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.TrashRetention <= 0 {
		cfg.TrashRetention = DefaultTrashRetention
	}
	if cfg.SaveTimeout <= 0 {
		cfg.SaveTimeout = DefaultSaveTimeout
	}
	if err := ensureDir(filepath.Join(cfg.StateDir, "vms")); err != nil {
		return nil, err
	}
	cfg.Catalog.useCache(filepath.Join(cfg.StateDir, parseCacheFile))
	return &Reconciler{cfg: cfg, vms: make(map[string]*memo)}, nil
}

// memo returns the memo of name, creating it. The caller holds r.mu.
func (r *Reconciler) memoLocked(name string) *memo {
	mm := r.vms[name]
	if mm == nil {
		mm = &memo{}
		r.vms[name] = mm
	}
	return mm
}

// forget drops what the Reconciler remembers of name.
func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.vms, name)
}

// cachedRecord returns the VM's record, read from its state folder once.
func (r *Reconciler) cachedRecord(name string) (*record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mm := r.memoLocked(name)
	if !mm.recLoaded {
		rec, err := r.readRecord(name)
		if err != nil {
			return nil, err
		}
		mm.rec, mm.recLoaded = rec, true
	}
	return mm.rec, nil
}

func (r *Reconciler) setNote(name string, n *note) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.memoLocked(name).note = n
}

func (r *Reconciler) noteOf(name string) *note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.memoLocked(name).note
}

// Adopt runs once at start. It lets the runtime take over the VMs an
// earlier daemon left running, and returns their names and those of the
// VMs with a checkpoint in the state folder, for the caller to queue. So a
// VM whose manifest was removed while the daemon was down is stopped, and
// its checkpoint moved to the trash.
func (r *Reconciler) Adopt(ctx context.Context) ([]string, error) {
	keys := make(map[string]bool)
	if a, ok := r.cfg.Runtime.(vmruntime.Adopter); ok {
		names, err := a.Adopt(ctx, r.cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("adopting VMs: %w", err)
		}
		for _, n := range names {
			keys[n] = true
		}
	}
	if err := r.addSuspended(keys); err != nil {
		return nil, err
	}
	if err := r.hintManifests(keys); err != nil {
		return nil, err
	}
	return sortedKeys(keys), nil
}

// hintManifests records in the catalog which manifest each VM of keys was last
// started from, so that a manifest that does not parse at start keeps its
// VM instead of leaving it without an owner.
func (r *Reconciler) hintManifests(keys map[string]bool) error {
	for name := range keys {
		rec, err := r.cachedRecord(name)
		if err != nil {
			return fmt.Errorf("adopting VMs: %w", err)
		}
		if rec != nil && rec.Manifest != "" {
			r.cfg.Catalog.hint(rec.Manifest, name)
		}
	}
	return nil
}

// addSuspended adds the names of VM folders that hold a checkpoint or a
// temp checkpoint.
func (r *Reconciler) addSuspended(keys map[string]bool) error {
	entries, err := os.ReadDir(filepath.Join(r.cfg.StateDir, "vms"))
	if err != nil {
		return fmt.Errorf("adopting VMs: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && r.hasCheckpoint(e.Name()) {
			keys[e.Name()] = true
		}
	}
	return nil
}

func (r *Reconciler) hasCheckpoint(name string) bool {
	for _, f := range []string{checkpointFile, checkpointTempFile} {
		if _, err := os.Lstat(filepath.Join(r.vmDir(name), f)); err == nil {
			return true
		}
	}
	return false
}

// Reconcile runs at most one transition for key, after the repairs an
// interrupted transition calls for, and writes the status that results
// where it changed. key is a VM name, or the path of a manifest whose name
// cannot be read.
func (r *Reconciler) Reconcile(ctx context.Context, key string) (Result, error) {
	if isPathKey(key) {
		return r.reconcileFile(ctx, key)
	}
	e := r.cfg.Catalog.lookup(key)
	res, err := r.reconcileVM(ctx, key, e.Owner)
	derr := r.markDuplicates(ctx, key, e)
	if err == nil {
		err = derr
	}
	return res, err
}
