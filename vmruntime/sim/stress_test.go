package sim

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// cycle boots m, suspends it, resumes it and stops it, as the reconciler
// does, while other goroutines do the same. A handshake with a guest the
// detector corrupted fails with EIO; that is the point, not an error.
func cycle(r *Runtime, m *vmruntime.Machine, dir string) error {
	ctx := context.Background()
	if err := r.Boot(ctx, m); err != nil {
		return err
	}
	if _, err := r.Connect(ctx, m); err != nil && !errors.Is(err, syscall.EIO) {
		return err
	}
	if err := r.Pause(ctx, m.Name); err != nil {
		return err
	}
	path := filepath.Join(dir, m.Name+".checkpoint")
	info, err := r.Save(ctx, m, path)
	if err != nil {
		return err
	}
	if err := r.Kill(ctx, m.Name); err != nil {
		return err
	}
	if err := r.Restore(ctx, m, path, info); err != nil {
		return err
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		return err
	}
	return r.Stop(ctx, m)
}

func TestConcurrentOperationsRace(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	r := newRuntime(t, Options{TraceFile: trace, Latency: Latencies{
		Boot: time.Millisecond, Save: time.Millisecond, Restore: time.Millisecond,
	}})
	other := newRuntime(t, Options{TraceFile: trace})
	dir := t.TempDir()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() { errs <- cycle(r, machine(fmt.Sprintf("vm%d", i)), dir) })
		wg.Go(func() { errs <- cycle(other, machine(fmt.Sprintf("vm%d", i)), t.TempDir()) })
	}
	stop := make(chan struct{})
	var observers sync.WaitGroup
	observers.Go(func() { observeUntil(r, stop) })
	wg.Wait()
	close(stop)
	observers.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if found := overlaps(t, trace); len(found) == 0 {
		t.Log("no overlaps this run; the race detector still checked the runtime")
	}
}

// observeUntil observes every VM and pings its agent until stop closes.
func observeUntil(r *Runtime, stop <-chan struct{}) {
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := range 8 {
			name := fmt.Sprintf("vm%d", i)
			r.Observe(ctx, name)
			if a, err := r.Agent(name); err == nil {
				a.Ping(ctx)
			}
		}
	}
}
