package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// operation is one lifecycle operation on one VM, run by Runtime.operate.
type operation struct {
	op      string // "Boot", "Save", ...: the name the trace records
	name    string // the VM's
	latency time.Duration
	// guest is the boot id of the guest the operation concerns; empty means
	// the VM's current guest.
	guest string
	// hang makes the operation wait for its context to end instead of its
	// latency, as a request to an agent that does not respond does.
	hang bool
	// skipIfStopped makes the operation succeed at once, without a trace,
	// on a stopped VM.
	skipIfStopped bool
	// check runs under the VM's mutex before the trace begins; an error
	// ends the operation with nothing changed. Nil means no check.
	check func(v *vm) error
	// apply runs under the VM's mutex after the latency; when it returns
	// nil, the VM's state is saved.
	apply func(v *vm) error
}

// verbs words each operation for error messages.
var verbs = map[string]string{
	"Boot": "booting", "Connect": "connecting to the agent of", "Pause": "pausing",
	"Resume": "resuming", "Save": "saving", "Restore": "restoring",
	"Stop": "stopping", "Kill": "killing",
}

// operate runs o: it checks the VM's state, records the operation's begin
// in the trace, waits its latency, applies it, and records its end.
func (r *Runtime) operate(ctx context.Context, o *operation) error {
	v, err := r.lookup(o.name)
	if err != nil {
		return o.wrap(err)
	}
	run, err := r.start(v, o)
	if !run {
		return o.wrap(err)
	}
	defer r.finish(v)

	id, err := r.trace.begin(Operation{
		Op: o.op, VM: o.name, StateRoot: r.opts.StateRoot,
		PID: os.Getpid(), Guest: o.guest, Began: r.clock.Now(),
	})
	if err != nil {
		return o.wrap(err)
	}
	err = r.wait(ctx, o)
	if err == nil {
		err = r.commit(v, o)
	}
	return o.wrap(errors.Join(err, r.trace.end(id)))
}

// start checks that o may run on v and marks v busy. It returns false, with
// the reason or with nil when there is nothing to do, when o must not run.
func (r *Runtime) start(v *vm, o *operation) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()

	if v.busy != "" {
		return false, fmt.Errorf("%s in flight: %w", v.busy, ErrBusy)
	}
	if o.skipIfStopped && v.state.State == vmruntime.StateStopped {
		return false, nil
	}
	if o.check != nil {
		if err := o.check(v); err != nil {
			return false, err
		}
	}
	if o.guest == "" {
		o.guest = v.state.Guest.BootID
	}
	v.busy = o.op
	return true, nil
}

// finish marks v no longer busy.
func (r *Runtime) finish(v *vm) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.busy = ""
}

// wait sleeps o's latency through the clock, or until ctx ends.
func (r *Runtime) wait(ctx context.Context, o *operation) error {
	if o.hang {
		<-ctx.Done()
		return fmt.Errorf("agent not responding: %w", context.Cause(ctx))
	}
	if o.latency <= 0 {
		return ctx.Err()
	}
	timer := r.clock.NewTimer(o.latency)
	defer timer.Stop()
	select {
	case <-timer.C():
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// commit applies o to v and saves v's state.
func (r *Runtime) commit(v *vm, o *operation) error {
	v.mu.Lock()
	defer v.mu.Unlock()

	if err := o.apply(v); err != nil {
		return err
	}
	return v.save()
}

// wrap adds the operation and VM to err; a nil err stays nil.
func (o *operation) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %q: %w", verbs[o.op], o.name, err)
}
