package controller

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/spec"
)

// Defaults of WatcherOptions.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultResync   = 30 * time.Second
)

// Handler receives what a Watcher saw, one call at a time, from the
// watcher's goroutine.
type Handler interface {
	// Changed is called when a manifest file exists after a burst of events
	// on its path.
	Changed(path string)
	// Removed is called when a manifest file is absent after a burst of
	// events on its path.
	Removed(path string)
	// Relist is called when the whole folder must be read again: on a change
	// to a dot-entry that is a symlink or a folder (a Kubernetes ConfigMap
	// volume's ..data swap), on inotify queue overflow, and every resync
	// period.
	Relist()
}

// WatcherOptions configures a Watcher.
type WatcherOptions struct {
	// Debounce is how long a path must stay quiet before the handler hears
	// of it. Default DefaultDebounce.
	Debounce time.Duration
	// Resync is the period of full re-lists. Default DefaultResync.
	Resync time.Duration
	// Clock drives the debounce and the resync. Default the real clock.
	Clock clock.WithTickerAndDelayedExecution
}

// relistKey marks a pending re-list among the pending paths. A real path
// is never empty.
const relistKey = ""

// Watcher watches a manifest folder with fsnotify (the folder, not the
// files, so that files replaced by rename are seen) and reports debounced
// changes to a Handler.
type Watcher struct {
	dir     string
	handler Handler
	opts    WatcherOptions
	notify  *fsnotify.Watcher

	// deadline and armed are owned by Run's goroutine: the time each
	// pending path becomes due, and whether a timer is set for it.
	deadline map[string]time.Time
	armed    map[string]bool

	// fired collects the paths whose timers fired. Timer callbacks only
	// append here and signal wake: a fake clock runs them while holding its
	// own lock, so they must not call the clock.
	mu    sync.Mutex
	fired []string
	wake  chan struct{}

	// scheduled, when set, is called with each path that schedule takes,
	// so that tests know when to step a fake clock.
	scheduled func(path string)
}

// NewWatcher starts watching dir. Events are buffered by the kernel until
// Run reads them, so a caller may re-list the folder between NewWatcher and
// Run without missing a change.
func NewWatcher(dir string, handler Handler, opts WatcherOptions) (*Watcher, error) {
	opts = opts.withDefaults()
	notify, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %q: %w", dir, err)
	}
	if err := notify.Add(dir); err != nil {
		notify.Close()
		return nil, fmt.Errorf("watching %q: %w", dir, err)
	}
	w := &Watcher{
		dir:      dir,
		handler:  handler,
		opts:     opts,
		notify:   notify,
		deadline: make(map[string]time.Time),
		armed:    make(map[string]bool),
		wake:     make(chan struct{}, 1),
	}
	return w, nil
}

func (o WatcherOptions) withDefaults() WatcherOptions {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Run delivers events to the handler until ctx ends, then stops watching.
// Pending paths whose debounce has not fired are dropped: the next daemon
// re-lists the folder at its start.
func (w *Watcher) Run(ctx context.Context) {
	defer w.notify.Close()
	log := logr.FromContextOrDiscard(ctx)
	resync := w.opts.Clock.NewTicker(w.opts.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case event, ok := <-w.notify.Events:
			if !ok {
				return
			}
			w.handleEvent(log, event)
		case err, ok := <-w.notify.Errors:
			if !ok {
				return
			}
			w.handleError(log, err)
		case <-resync.C():
			log.V(1).Info("Resyncing manifest folder", "dir", w.dir)
			w.handler.Relist()
		case <-w.wake:
			w.dispatchFired()
		}
	}
}

func (w *Watcher) handleEvent(log logr.Logger, event fsnotify.Event) {
	name := filepath.Base(event.Name)
	if strings.HasPrefix(name, ".") {
		if isLinkOrFolder(event.Name) {
			log.V(1).Info("Folder entry swapped, re-listing", "path", event.Name, "op", event.Op.String())
			w.schedule(relistKey)
		}
		return
	}
	if !spec.IsManifestName(name) {
		return
	}
	log.V(1).Info("Manifest event", "path", event.Name, "op", event.Op.String())
	w.schedule(event.Name)
}

// isLinkOrFolder reports whether path is a symlink or a folder now.
func isLinkOrFolder(path string) bool {
	info, err := os.Lstat(path)
	if err != nil {
		return false
	}
	return info.Mode()&(fs.ModeSymlink|fs.ModeDir) != 0
}

func (w *Watcher) handleError(log logr.Logger, err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		log.Info("Event queue overflowed, re-listing", "dir", w.dir)
		w.handler.Relist()
		return
	}
	log.Error(err, "Watching manifest folder", "dir", w.dir)
}

// schedule makes path due one debounce period from now, pushing back any
// earlier deadline.
func (w *Watcher) schedule(path string) {
	w.deadline[path] = w.opts.Clock.Now().Add(w.opts.Debounce)
	if !w.armed[path] {
		w.armed[path] = true
		w.arm(path, w.opts.Debounce)
	}
	if w.scheduled != nil {
		w.scheduled(path)
	}
}

func (w *Watcher) arm(path string, d time.Duration) {
	w.opts.Clock.AfterFunc(d, func() { w.fire(path) })
}

// fire runs as a timer callback.
func (w *Watcher) fire(path string) {
	w.mu.Lock()
	w.fired = append(w.fired, path)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) takeFired() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	fired := w.fired
	w.fired = nil
	return fired
}

// dispatchFired reports every fired path whose deadline has passed and
// re-arms the timers of paths that saw events since theirs was set.
func (w *Watcher) dispatchFired() {
	now := w.opts.Clock.Now()
	for _, path := range w.takeFired() {
		if left := w.deadline[path].Sub(now); left > 0 {
			w.arm(path, left)
			continue
		}
		delete(w.deadline, path)
		delete(w.armed, path)
		w.dispatch(path)
	}
}

// dispatch reports path to the handler. Whether the file is there now,
// not which events arrived, decides between Changed and Removed, so a
// rename or remove followed by a re-create is a change.
func (w *Watcher) dispatch(path string) {
	if path == relistKey {
		w.handler.Relist()
		return
	}
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		w.handler.Removed(path)
		return
	}
	w.handler.Changed(path)
}
