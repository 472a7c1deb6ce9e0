package vz

import (
	"cmp"
	"context"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// shutdownRequestTimeout bounds the agent's shutdown request inside Stop.
const shutdownRequestTimeout = 5 * time.Second

// Pause halts the guest's vCPUs.
func (r *Runtime) Pause(ctx context.Context, name string) error {
	return r.simple(ctx, name, opPause)
}

// Resume lets a paused guest run again, a restored one included.
func (r *Runtime) Resume(ctx context.Context, name string) error {
	return r.simple(ctx, name, opResume)
}

func (r *Runtime) simple(ctx context.Context, name, op string) error {
	v, err := r.running(name)
	if err != nil {
		return err
	}
	_, err = v.call(ctx, request{Op: op})
	return err
}

// Stop requests that the guest power off, through its agent when one is
// connected and through VZ's RequestStop, waits m.StopTimeout, then ends
// the machine with VZ's Stop and at last kills the helper. It returns once
// the helper is gone.
func (r *Runtime) Stop(ctx context.Context, m *vmruntime.Machine) error {
	v := r.lookup(m.Name)
	if v == nil {
		return nil
	}
	v.markStopRequested()
	if r.requestShutdown(ctx, v) && v.waitGone(ctx, m.StopTimeout) {
		r.drop(v)
		return nil
	}
	return r.end(ctx, v)
}

// requestShutdown requests that the guest power off and reports whether
// the agent or VZ accepted the request. When neither did, as for a paused
// machine, waiting for the guest is pointless.
func (r *Runtime) requestShutdown(ctx context.Context, v *vm) bool {
	accepted := false
	if a := v.currentAgent(); a != nil {
		sctx, cancel := context.WithTimeout(ctx, shutdownRequestTimeout)
		accepted = a.client.Shutdown(sctx) == nil
		cancel()
	}
	_, err := v.call(ctx, request{Op: opRequestStop})
	return accepted || err == nil
}

// Kill ends the machine at once and returns once its helper is gone.
func (r *Runtime) Kill(ctx context.Context, name string) error {
	v := r.lookup(name)
	if v == nil {
		return nil
	}
	v.markStopRequested()
	return r.end(ctx, v)
}

// end stops the machine through its helper, kills the helper when that
// does not end it within killGrace, and waits until it is gone.
func (r *Runtime) end(ctx context.Context, v *vm) error {
	sctx, cancel := context.WithTimeout(ctx, killGrace)
	_, _ = v.call(sctx, request{Op: opStop})
	gone := v.waitGone(sctx, killGrace)
	cancel()
	if !gone {
		v.kill()
	}
	select {
	case <-v.done:
		r.drop(v)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drop removes a helper that is gone from the runtime and closes its agent
// connection.
func (r *Runtime) drop(v *vm) {
	r.forget(v)
	v.setAgent(nil)
}

// Observe reports the state of name's machine. A helper that ended
// without Stop or Kill reports StateStopped with the reason it recorded.
func (r *Runtime) Observe(ctx context.Context, name string) (vmruntime.Observation, error) {
	v := r.lookup(name)
	if v == nil {
		return vmruntime.Observation{State: vmruntime.StateStopped}, nil
	}
	if v.exited() {
		return r.ended(v), nil
	}
	resp, err := v.call(ctx, request{Op: opState})
	if err != nil {
		// A helper that ended between the two checks is no error.
		if v.waitGone(ctx, time.Second) {
			return r.ended(v), nil
		}
		return vmruntime.Observation{}, err
	}
	o := vmruntime.Observation{State: resp.State, PID: v.pid}
	// A helper whose machine stopped exits in a moment; report it now.
	if resp.State == vmruntime.StateStopped && !v.wasStopRequested() {
		o.Exit = cmp.Or(resp.Exit, "machine stopped")
	}
	return o, nil
}

// ended describes a helper that is gone.
func (r *Runtime) ended(v *vm) vmruntime.Observation {
	o := vmruntime.Observation{State: vmruntime.StateStopped}
	if !v.wasStopRequested() {
		o.Exit = v.exitReason()
	}
	return o
}
