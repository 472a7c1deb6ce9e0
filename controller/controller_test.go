package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vmlet/vmlet/reconcile"
)

// recordingQueue records the queue calls reconcileHandler makes. The
// embedded interface is nil: a call this fake does not implement panics.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[string]
	calls []string
}

func (q *recordingQueue) Forget(key string)         { q.calls = append(q.calls, "Forget "+key) }
func (q *recordingQueue) AddRateLimited(key string) { q.calls = append(q.calls, "AddRateLimited "+key) }
func (q *recordingQueue) NumRequeues(string) int    { return 1 }
func (q *recordingQueue) AddAfter(key string, d time.Duration) {
	q.calls = append(q.calls, "AddAfter "+key+" "+d.String())
}

// scriptedReconciler returns its results in order, one per call, and
// records the keys it was called with.
type scriptedReconciler struct {
	mu      sync.Mutex
	results []scriptedResult
	keys    []string
	called  chan string
	// block, when set, is waited for inside Reconcile.
	block chan struct{}
	// ctxErr records whether the context was already done on return.
	ctxErr []error
}

type scriptedResult struct {
	res reconcile.Result
	err error
}

func newScriptedReconciler(results ...scriptedResult) *scriptedReconciler {
	return &scriptedReconciler{results: results, called: make(chan string, 100)}
}

func (r *scriptedReconciler) Reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.ctxErr = append(r.ctxErr, ctx.Err())
	var out scriptedResult
	if len(r.results) > 0 {
		out, r.results = r.results[0], r.results[1:]
	}
	r.mu.Unlock()
	r.called <- key
	return out.res, out.err
}

func (r *scriptedReconciler) waitCall(t *testing.T) string {
	t.Helper()
	select {
	case key := <-r.called:
		return key
	case <-time.After(waitLimit):
		t.Fatal("the worker never called Reconcile")
		return ""
	}
}

// nopCatalog is a Catalog with no manifests.
type nopCatalog struct{}

func (nopCatalog) Relist() ([]string, error) { return nil, nil }
func (nopCatalog) Update(string) []string    { return nil }
func (nopCatalog) Remove(string) []string    { return nil }

func TestReconcileHandlerQueueDiscipline(t *testing.T) {
	tests := []struct {
		name   string
		result scriptedResult
		want   []string
	}{
		{name: "success forgets", want: []string{"Forget vm"}},
		{
			name:   "error retries with backoff",
			result: scriptedResult{err: errors.New("boot failed")},
			want:   []string{"AddRateLimited vm"},
		},
		{
			name:   "terminal error forgets",
			result: scriptedResult{err: reconcile.Terminal(errors.New("bad spec"))},
			want:   []string{"Forget vm"},
		},
		{
			name:   "planned retry forgets then adds after",
			result: scriptedResult{res: reconcile.Result{RequeueAfter: 8 * time.Second}},
			want:   []string{"Forget vm", "AddAfter vm 8s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			queue := &recordingQueue{}
			c := &Controller{reconciler: newScriptedReconciler(tt.result), queue: queue, log: logr.Discard()}
			c.reconcileHandler(t.Context(), "vm")
			if !slices.Equal(queue.calls, tt.want) {
				t.Errorf("queue calls = %q, want %q", queue.calls, tt.want)
			}
		})
	}
}

func TestControllerRetriesAfterBackoff(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	rec := newScriptedReconciler(scriptedResult{err: errors.New("transient")}, scriptedResult{})
	c := NewController(nopCatalog{}, rec, clk, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	c.Enqueue("vm")
	rec.waitCall(t)
	// The retry waits for the backoff on the fake clock: step until the
	// delaying queue has taken the key and its timer fires.
	stepUntilCalled(t, clk, rec, retryBaseDelay)
	// The worker forgets the key after Reconcile returns.
	deadline := time.Now().Add(waitLimit)
	for c.queue.NumRequeues("vm") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("NumRequeues after a success = %d, want 0 (forgotten)", c.queue.NumRequeues("vm"))
		}
		time.Sleep(time.Millisecond)
	}
}

// stepUntilCalled steps the fake clock by d until the reconciler is
// called again. The delaying queue adds its timer from a goroutine of its
// own, so a single step may come before the timer exists.
func stepUntilCalled(t *testing.T, clk *clocktesting.FakeClock, rec *scriptedReconciler, d time.Duration) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		clk.Step(d)
		select {
		case <-rec.called:
			return
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatal("the key was never reconciled again")
		}
	}
}

func TestControllerShutdownFinishesInFlight(t *testing.T) {
	rec := newScriptedReconciler()
	rec.block = make(chan struct{})
	c := NewController(nopCatalog{}, rec, nil, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()

	c.Enqueue("first", "second")
	waitLen(t, c, 1) // the worker took "first" and is blocked in it
	cancel()
	close(rec.block)
	<-done

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.keys, []string{"first"}) {
		t.Errorf("reconciled %q, want only the key in flight at shutdown", rec.keys)
	}
	if rec.ctxErr[0] != nil {
		t.Errorf("the reconcile in flight saw its context end: %v", rec.ctxErr[0])
	}
}

func waitLen(t *testing.T, c *Controller, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for c.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue length = %d, want %d", c.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestControllerDeduplicatesKeys(t *testing.T) {
	rec := newScriptedReconciler()
	rec.block = make(chan struct{})
	c := NewController(nopCatalog{}, rec, nil, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()

	c.Enqueue("busy")
	waitLen(t, c, 0)
	// "busy" is in flight: adding it again marks it dirty once, and "idle"
	// queued three times is one item.
	c.Enqueue("busy", "idle", "idle", "busy", "idle")
	if got := c.Len(); got != 1 {
		t.Errorf("queue length = %d, want 1 (idle once; busy waits for Done)", got)
	}
	close(rec.block)
	for range 3 {
		rec.waitCall(t)
	}
	cancel()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.keys, []string{"busy", "idle", "busy"}) {
		t.Errorf("reconciled %q, want busy, idle, busy", rec.keys)
	}
}
