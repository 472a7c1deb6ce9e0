package controller

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/reconcile"
)

// Reconciler runs at most one transition for the VM a key names. The
// reconcile package's Reconciler implements it.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (reconcile.Result, error)
}

// Catalog maps manifest files to the keys to reconcile. The reconcile
// package's Catalog implements it.
type Catalog interface {
	Relist() ([]string, error)
	Update(path string) []string
	Remove(path string) []string
}

// Backoff of a key whose reconcile failed: doubling from retryBaseDelay up
// to retryMaxDelay, per key.
const (
	retryBaseDelay = 5 * time.Millisecond
	retryMaxDelay  = 5 * time.Minute
)

// Controller feeds a rate-limiting work queue from a Watcher's events and
// drains it with exactly one worker, so that lifecycle transitions on this
// host's VMs never overlap within one daemon. A key queued several times
// before the worker takes it is reconciled once; a key queued while it is
// being reconciled is reconciled again afterwards.
type Controller struct {
	catalog    Catalog
	reconciler Reconciler
	queue      workqueue.TypedRateLimitingInterface[string]
	log        logr.Logger
}

// NewController returns a controller whose queue uses clk for its delays
// (the real clock when nil). log receives the queue decisions and the
// watcher's events at V(1).
func NewController(catalog Catalog, reconciler Reconciler, clk clock.WithTicker, log logr.Logger) *Controller {
	if clk == nil {
		clk = clock.RealClock{}
	}
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBaseDelay, retryMaxDelay)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "vmlet", Clock: clk})
	return &Controller{catalog: catalog, reconciler: reconciler, queue: queue, log: log}
}

// Enqueue adds keys to the queue.
func (c *Controller) Enqueue(keys ...string) {
	for _, key := range keys {
		c.queue.Add(key)
	}
}

// Changed implements Handler: the catalog re-reads the file and the keys
// it names, old and new, are queued.
func (c *Controller) Changed(path string) {
	keys := c.catalog.Update(path)
	c.log.V(1).Info("Manifest changed", "path", path, "keys", keys)
	c.Enqueue(keys...)
}

// Removed implements Handler.
func (c *Controller) Removed(path string) {
	keys := c.catalog.Remove(path)
	c.log.V(1).Info("Manifest removed", "path", path, "keys", keys)
	c.Enqueue(keys...)
}

// Relist implements Handler: every key the catalog holds is queued again.
// The queue's deduplication makes this cheap for keys already waiting.
func (c *Controller) Relist() {
	keys, err := c.catalog.Relist()
	if err != nil {
		c.log.Error(err, "Re-listing manifest folder")
	}
	c.log.V(1).Info("Re-listed manifest folder", "keys", len(keys))
	c.Enqueue(keys...)
}

// Run is the single worker: it reconciles queued keys until ctx ends or
// ShutDown is called. When ctx ends it takes no new key, but the reconcile
// in flight runs to its end under its own deadlines, so that a transition
// is never cut in half. Run then shuts the queue down and returns.
func (c *Controller) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, c.queue.ShutDown)
	defer stop()
	defer c.queue.ShutDown()
	work := context.WithoutCancel(ctx)
	for c.processNextWorkItem(ctx, work) {
	}
}

// ShutDown makes Run return after the reconcile in flight.
func (c *Controller) ShutDown() {
	c.queue.ShutDown()
}

// processNextWorkItem reconciles one key under work, a context that is not
// cancelled when ctx is. It returns false when the worker must stop.
func (c *Controller) processNextWorkItem(ctx, work context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	c.reconcileHandler(work, key)
	return true
}

// reconcileHandler reconciles key and applies the queue discipline to the
// outcome: an error is retried with backoff unless it is terminal, a
// planned retry is queued after its delay, and success forgets the key's
// failures.
func (c *Controller) reconcileHandler(ctx context.Context, key string) {
	log := c.log.WithValues("vm", key)
	res, err := c.reconciler.Reconcile(logr.NewContext(ctx, log), key)
	switch {
	case err != nil && reconcile.IsTerminal(err):
		c.queue.Forget(key)
		log.Error(err, "Reconcile failed, not retrying", "reason", reconcile.Reason(err))
	case err != nil:
		c.queue.AddRateLimited(key)
		log.Error(err, "Reconcile failed, retrying", "reason", reconcile.Reason(err), "retries", c.queue.NumRequeues(key))
	case res.RequeueAfter > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, res.RequeueAfter)
		log.V(1).Info("Requeued", "after", res.RequeueAfter)
	default:
		c.queue.Forget(key)
	}
}

// Len returns the number of keys waiting in the queue, for tests and
// benchmarks.
func (c *Controller) Len() int {
	return c.queue.Len()
}
