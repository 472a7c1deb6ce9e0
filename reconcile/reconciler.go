package reconcile

import (
	"context"
	"errors"
	"time"

	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/vmruntime"
)

// Locker is the host-wide lifecycle lock.
type Locker interface {
	// Lock blocks until the lock is held or ctx ends, and returns the
	// function that releases it.
	Lock(ctx context.Context) (unlock func(), err error)
}

// StatusMode says where status is written.
type StatusMode int

const (
	// StatusInline writes status into the manifest, or into the VM's state
	// folder where the manifest cannot be written.
	StatusInline StatusMode = iota
	// StatusState always writes status into <state>/vms/<name>/status.yaml.
	StatusState
)

// Defaults for the Config fields left zero.
const (
	DefaultTrashRetention = 24 * time.Hour
	DefaultSaveTimeout    = 5 * time.Minute
)

// Config is what a Reconciler needs.
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

// Result tells the caller when to reconcile the key again.
type Result struct {
	// RequeueAfter, when positive, asks for another reconcile after that
	// long (a crash-restart backoff, a status write that raced a user's).
	RequeueAfter time.Duration
}

// Reconciler drives VMs towards their manifests. Reconcile must not be
// called for two keys at once; Adopt and PurgeTrash may run beside it.
type Reconciler struct {
	cfg Config
}

// New checks cfg, fills in its defaults and returns a Reconciler.
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
	return &Reconciler{cfg: cfg}, nil
}

// Adopt runs once at start: it lets the runtime take over VMs an earlier
// daemon left running and returns the keys to queue.
func (r *Reconciler) Adopt(ctx context.Context) ([]string, error) {
	return nil, nil
}

// Reconcile runs at most one transition for key and writes the status that
// results.
func (r *Reconciler) Reconcile(ctx context.Context, key string) (Result, error) {
	return Result{}, errors.New("reconcile: not implemented")
}

// PurgeTrash deletes trash entries older than the retention window.
func (r *Reconciler) PurgeTrash() error {
	return nil
}
