package qemu

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

const sigkill = syscall.SIGKILL

// Bounds of the steps of Kill, each also bounded by the caller's context.
const (
	// quitTimeout is how long QMP quit may take before SIGKILL.
	quitTimeout = 3 * time.Second
	// killTimeout is how long a process may take to vanish after SIGKILL.
	killTimeout = 10 * time.Second
)

// observeTimeout bounds query-status in Observe, whose callers may pass a
// context without a deadline. A QEMU that does not reply within it is
// reported as an error, not waited for.
const observeTimeout = 5 * time.Second

// running returns the VM named name if its process is alive, or an error
// wrapping vmruntime.ErrNotRunning.
func (r *Runtime) running(name string) (*vm, error) {
	v := r.lookup(name)
	if v == nil || !v.process().alive() {
		return nil, fmt.Errorf("%q: %w", name, vmruntime.ErrNotRunning)
	}
	return v, nil
}

// Pause halts the guest's vCPUs with QMP stop.
func (r *Runtime) Pause(ctx context.Context, name string) error {
	v, err := r.running(name)
	if err != nil {
		return err
	}
	if err := v.execute(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("pausing %q: %w", name, err)
	}
	return nil
}

// Resume lets the guest's vCPUs run again with QMP cont. It also resumes a
// guest left in QEMU's postmigrate state by a failed Save.
func (r *Runtime) Resume(ctx context.Context, name string) error {
	v, err := r.running(name)
	if err != nil {
		return err
	}
	if err := v.execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resuming %q: %w", name, err)
	}
	return nil
}

// defaultStopTimeout applies when a Machine leaves StopTimeout zero.
const defaultStopTimeout = 30 * time.Second

// Stop asks the guest to shut down through its agent, when connected, and
// through an ACPI power-button press, waits up to m.StopTimeout (30 s when
// zero) for QEMU to exit, and then kills it. It returns once the process
// is gone. A VM that is not running is left as it is.
func (r *Runtime) Stop(ctx context.Context, m *vmruntime.Machine) error {
	v, err := r.running(m.Name)
	if err != nil {
		return nil
	}
	v.setEnding()
	timeout := m.StopTimeout
	if timeout <= 0 {
		timeout = defaultStopTimeout
	}
	graceful, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	askShutdown(graceful, v, timeout/2)
	if v.process().wait(graceful) == nil {
		v.release()
		return nil
	}
	return r.Kill(ctx, m.Name)
}

// askShutdown asks the agent, for at most agentTimeout, and then ACPI to
// power the guest off. Errors are ignored: the caller waits for the
// process and kills it when the guest does not comply.
func askShutdown(ctx context.Context, v *vm, agentTimeout time.Duration) {
	if conn := v.currentAgent(); conn != nil {
		agentCtx, cancel := context.WithTimeout(ctx, agentTimeout)
		conn.Shutdown(agentCtx)
		cancel()
	}
	v.execute(ctx, "system_powerdown", nil, nil)
}

// Kill ends the VM's process with QMP quit, or SIGKILL when quit does not
// end it within a few seconds, and returns once the process is gone. An
// adopted process is polled through its pid, checking that the pid still
// names this VM's QEMU.
func (r *Runtime) Kill(ctx context.Context, name string) error {
	v := r.lookup(name)
	if v == nil {
		return nil
	}
	v.setEnding()
	proc := v.process()
	if err := quit(ctx, v); err == nil {
		v.release()
		return nil
	}
	if err := proc.signal(sigkill); err != nil {
		return fmt.Errorf("killing qemu process %d of %q: %w", proc.pid, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	if err := proc.wait(ctx); err != nil {
		return fmt.Errorf("waiting for qemu process %d of %q to end: %w", proc.pid, name, err)
	}
	v.release()
	return nil
}

// quit sends QMP quit and waits up to quitTimeout for the process to end.
func quit(ctx context.Context, v *vm) error {
	ctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	proc := v.process()
	if !proc.alive() {
		return nil
	}
	// QEMU may close the connection before its reply arrives, so the
	// outcome is judged by the process alone.
	v.execute(ctx, "quit", nil, nil)
	return proc.wait(ctx)
}

// Observe reports the VM's state from its process and QMP query-status.
// When the process ended without Stop or Kill, Exit describes how, with the
// end of QEMU's log and of the guest console.
func (r *Runtime) Observe(ctx context.Context, name string) (vmruntime.Observation, error) {
	v := r.lookup(name)
	if v == nil {
		return vmruntime.Observation{State: vmruntime.StateStopped}, nil
	}
	proc := v.process()
	if !proc.alive() {
		return vmruntime.Observation{State: vmruntime.StateStopped, Exit: v.exitMessage()}, nil
	}
	obs := vmruntime.Observation{State: vmruntime.StatePaused, PID: proc.pid}
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	status, err := v.status(ctx)
	if err != nil {
		return obs, fmt.Errorf("observing %q: %w", name, err)
	}
	if status == "running" {
		obs.State = vmruntime.StateRunning
	}
	return obs, nil
}
