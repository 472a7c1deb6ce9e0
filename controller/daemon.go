package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/reconcile"
	"github.com/vmlet/vmlet/vmruntime"
)

// DefaultPurgeInterval is how often the daemon deletes trash entries older
// than their retention.
const DefaultPurgeInterval = 10 * time.Minute

// ErrSocketPathTooLong means the state folder is too deep for the unix
// sockets the daemon creates in it.
var ErrSocketPathTooLong = errors.New("state folder is too deep for a unix socket path")

// Options configures the daemon that Run starts.
type Options struct {
	// Dir is the manifest folder. It is created when missing.
	Dir string
	// StateDir is the state folder, created 0700 when missing.
	StateDir string
	// HostLock is the host-wide lifecycle lock file.
	HostLock string
	// DisableHostLock leaves the host lock out, so that two daemons on one
	// host may overlap their transitions. Tests set it to show that the
	// overlap detector works; nothing else should.
	DisableHostLock bool
	// NewRuntime builds the backend over the absolute state folder once the
	// daemon holds its lock.
	NewRuntime func(stateDir string) (vmruntime.Runtime, error)
	// StatusMode selects where status is written.
	StatusMode reconcile.StatusMode
	// Resync and Debounce configure the watcher; zero means the default.
	Resync   time.Duration
	Debounce time.Duration
	// PurgeInterval is the period of trash purges. Default
	// DefaultPurgeInterval.
	PurgeInterval time.Duration
	// TrashRetention is how long trash entries are kept; zero means the
	// reconcile package's default.
	TrashRetention time.Duration
	// Clock drives the watcher, the queue and the reconciler. Default the
	// real clock.
	Clock clock.WithTickerAndDelayedExecution
}

// Run is the daemon. It locks the state folder, and fails at once with the
// holder's pid when another daemon has it. It adopts the VMs an earlier
// daemon left running, reads the manifest folder and queues every VM. Then
// it watches the folder, reconciles one VM at a time, serves the local API
// and purges the trash until ctx ends. At the end it lets the transition in
// flight finish, leaves every VM as it is, and returns nil.
func Run(ctx context.Context, opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if err := prepareFolders(opts); err != nil {
		return err
	}
	lock, err := LockStateDir(opts.StateDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	d, err := newDaemon(opts)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

// withDefaults fills in the defaults and makes the folders absolute, so
// that every path the watcher reports names the file whatever the working
// folder.
func (o Options) withDefaults() (Options, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.PurgeInterval <= 0 {
		o.PurgeInterval = DefaultPurgeInterval
	}
	var err error
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return o, fmt.Errorf("resolving manifest folder: %w", err)
	}
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return o, fmt.Errorf("resolving state folder: %w", err)
	}
	return o, nil
}

func prepareFolders(opts Options) error {
	if err := checkSocketPath(filepath.Join(opts.StateDir, APISocketName)); err != nil {
		return err
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("creating manifest folder: %w", err)
	}
	return nil
}

// checkSocketPath rejects a socket path longer than sun_path holds: 108
// bytes on Linux and 104 on macOS and the BSDs, the terminating NUL
// included.
//
// NOTE: only the daemon's own socket is checked here. Backends put their
// per-VM sockets under <state>/vms/<name>/ and report a name too long for
// them when they boot that VM.
func checkSocketPath(path string) error {
	limit := 108
	if runtime.GOOS != "linux" {
		limit = 104
	}
	if len(path) >= limit {
		return fmt.Errorf("%w: %q is %d bytes, the limit is %d; choose a shorter --state-dir",
			ErrSocketPathTooLong, path, len(path), limit-1)
	}
	return nil
}

// daemon holds the parts Run wires together.
type daemon struct {
	opts       Options
	runtime    vmruntime.Runtime
	reconciler *reconcile.Reconciler
	catalog    *reconcile.Catalog
	controller *Controller
}

func newDaemon(opts Options) (*daemon, error) {
	rt, err := opts.NewRuntime(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("starting runtime: %w", err)
	}
	catalog := reconcile.NewCatalog(opts.Dir)
	cfg := reconcile.Config{
		Runtime:        rt,
		Catalog:        catalog,
		StateDir:       opts.StateDir,
		Clock:          opts.Clock,
		StatusMode:     opts.StatusMode,
		TrashRetention: opts.TrashRetention,
	}
	if !opts.DisableHostLock {
		lock := NewHostLock(opts.HostLock)
		if err := lock.Check(); err != nil {
			return nil, fmt.Errorf("%w (set --host-lock to a file in a folder that exists)", err)
		}
		cfg.HostLock = lock
	}
	rec, err := reconcile.New(cfg)
	if err != nil {
		return nil, err
	}
	return &daemon{opts: opts, runtime: rt, reconciler: rec, catalog: catalog}, nil
}

func (d *daemon) run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	d.controller = NewController(d.catalog, d.reconciler, d.opts.Clock, log)
	watcher, err := NewWatcher(d.opts.Dir, d.controller, WatcherOptions{
		Debounce: d.opts.Debounce,
		Resync:   d.opts.Resync,
		Clock:    d.opts.Clock,
	})
	if err != nil {
		return err
	}
	if err := d.start(ctx); err != nil {
		watcher.notify.Close()
		return err
	}
	log.Info("Daemon started", "dir", d.opts.Dir, "stateDir", d.opts.StateDir,
		"runtime", d.runtime.Name(), "vms", d.controller.Len())

	var wg sync.WaitGroup
	wg.Go(func() { watcher.Run(ctx) })
	wg.Go(func() { d.serveAPI(ctx) })
	wg.Go(func() { d.purgeTrash(ctx) })
	d.controller.Run(ctx)
	wg.Wait()
	log.Info("Daemon stopped")
	return nil
}

// start adopts the VMs still running and queues them and every manifest.
func (d *daemon) start(ctx context.Context) error {
	adopted, err := d.reconciler.Adopt(ctx)
	if err != nil {
		return fmt.Errorf("adopting running VMs: %w", err)
	}
	if len(adopted) > 0 {
		logr.FromContextOrDiscard(ctx).Info("Adopted running VMs", "vms", adopted)
	}
	d.controller.Enqueue(adopted...)
	keys, err := d.catalog.Relist()
	if err != nil {
		return fmt.Errorf("listing manifest folder: %w", err)
	}
	logr.FromContextOrDiscard(ctx).V(1).Info("Listed manifest folder", "keys", keys)
	d.controller.Enqueue(keys...)
	return nil
}

// serveAPI runs the local API. A failure is logged and leaves the daemon
// running: VMs keep being reconciled without the API.
func (d *daemon) serveAPI(ctx context.Context) {
	socket := filepath.Join(d.opts.StateDir, APISocketName)
	if err := ServeAPI(ctx, socket, d.runtime, d.opts.StateDir); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "Local API stopped")
	}
}

// purgeTrash deletes expired trash entries at start and then every
// PurgeInterval until ctx ends.
func (d *daemon) purgeTrash(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx)
	ticker := d.opts.Clock.NewTicker(d.opts.PurgeInterval)
	defer ticker.Stop()
	for {
		if err := d.reconciler.PurgeTrash(); err != nil {
			log.Error(err, "Purging trash")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}
