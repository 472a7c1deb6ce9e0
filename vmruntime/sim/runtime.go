package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/vmruntime"
)

// Version is the runtime's version, recorded in each checkpoint's
// CheckpointInfo.Runtime.
const Version = "sim 1"

// Errors that callers classify with errors.Is.
var (
	// ErrInvalidState is returned for an operation the VM's state does not
	// allow, such as Save on a running VM or Restore into one that runs.
	ErrInvalidState = errors.New("invalid vm state for the operation")
	// ErrBusy is returned for a lifecycle operation on a VM whose previous
	// one is still in flight.
	ErrBusy = errors.New("another operation on the vm is in flight")
	// ErrInjected is wrapped by every failure a fault caused.
	ErrInjected = errors.New("injected fault")
)

// Runtime is the simulated backend. Create it with New.
type Runtime struct {
	opts  Options
	clock clock.Clock
	trace *tracer

	mu     sync.Mutex // guards the maps
	vms    map[string]*vm
	faults map[string]*faultSet
}

// Compile-time checks that Runtime has every ability of a backend.
var (
	_ vmruntime.Runtime      = (*Runtime)(nil)
	_ vmruntime.Checkpointer = (*Runtime)(nil)
	_ vmruntime.Adopter      = (*Runtime)(nil)
)

// New returns a Runtime over opts.StateRoot, which it creates 0700 if
// missing, and opens its trace file. The caller closes it with Close.
func New(opts Options) (*Runtime, error) {
	if opts.StateRoot == "" {
		return nil, errors.New("creating sim runtime: missing state folder")
	}
	if err := os.MkdirAll(opts.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("creating sim runtime: %w", err)
	}
	if opts.TraceFile == "" {
		opts.TraceFile = filepath.Join(opts.StateRoot, "sim-trace")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	trace, err := openTracer(opts.TraceFile)
	if err != nil {
		return nil, fmt.Errorf("creating sim runtime: %w", err)
	}
	r := &Runtime{
		opts:   opts,
		clock:  opts.Clock,
		trace:  trace,
		vms:    map[string]*vm{},
		faults: map[string]*faultSet{},
	}
	return r, nil
}

// Close closes the trace file. The VMs stay as they are, to be adopted by
// the next Runtime over the same state folder.
func (r *Runtime) Close() error { return r.trace.close() }

// Name returns "sim".
func (r *Runtime) Name() string { return "sim" }

// TraceFile returns the path of the hazard detector's trace.
func (r *Runtime) TraceFile() string { return r.opts.TraceFile }

// lookup returns the VM called name, reading its state file the first time.
func (r *Runtime) lookup(name string) (*vm, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	if v := r.vms[name]; v != nil {
		return v, nil
	}
	v, err := loadVM(r.opts.StateRoot, name)
	if err != nil {
		return nil, err
	}
	r.vms[name] = v
	return v, nil
}

// Observe reports the VM's process state. A VM never seen is Stopped.
func (r *Runtime) Observe(ctx context.Context, name string) (vmruntime.Observation, error) {
	v, err := r.lookup(name)
	if err != nil {
		return vmruntime.Observation{}, fmt.Errorf("observing %q: %w", name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return vmruntime.Observation{State: v.state.State, PID: v.state.PID, Exit: v.state.Exit}, nil
}

// Boot cold-boots the VM: a new process, a new boot id and an empty guest
// memory. It fails with ErrInvalidState when the VM's process exists. The
// sim reads no kernel or disk, so it does not check that they exist.
func (r *Runtime) Boot(ctx context.Context, m *vmruntime.Machine) error {
	if m == nil {
		return errors.New("booting: missing machine")
	}
	bootID := newBootID()
	return r.operate(ctx, &operation{
		op: "Boot", name: m.Name, latency: r.opts.Latency.Boot, guest: bootID,
		check: requireState(vmruntime.StateStopped),
		apply: func(v *vm) error {
			v.state = vmState{
				State: vmruntime.StateRunning, PID: newPID(),
				MachineHash: m.MachineHash, Guest: guest{BootID: bootID},
			}
			return nil
		},
	})
}

// Pause halts a running VM's guest. It fails with ErrInvalidState unless the
// VM is running.
func (r *Runtime) Pause(ctx context.Context, name string) error {
	return r.operate(ctx, &operation{
		op: "Pause", name: name, latency: r.opts.Latency.Pause,
		check: requireState(vmruntime.StateRunning),
		apply: setState(vmruntime.StateRunning, vmruntime.StatePaused),
	})
}

// Resume lets a paused VM's guest run again. It fails with ErrInvalidState
// unless the VM is paused.
func (r *Runtime) Resume(ctx context.Context, name string) error {
	return r.operate(ctx, &operation{
		op: "Resume", name: name, latency: r.opts.Latency.Resume,
		check: requireState(vmruntime.StatePaused),
		apply: setState(vmruntime.StatePaused, vmruntime.StateRunning),
	})
}

// Stop shuts the VM down and returns once its process is gone. A running
// guest with a responsive agent takes the Stop latency. A paused guest, or
// one whose agent hangs, ignores the request, so Stop waits m.StopTimeout
// and then kills it. A stopped VM is left as it is.
func (r *Runtime) Stop(ctx context.Context, m *vmruntime.Machine) error {
	if m == nil {
		return errors.New("stopping: missing machine")
	}
	o := &operation{
		op: "Stop", name: m.Name, latency: r.opts.Latency.Stop, skipIfStopped: true,
		apply: func(v *vm) error { v.state = stopped(""); return nil },
	}
	o.check = func(v *vm) error {
		if v.state.State == vmruntime.StatePaused || r.agentHung(v.name) {
			o.latency = m.StopTimeout
		}
		return nil
	}
	return r.operate(ctx, o)
}

// Kill ends the VM's process at once. A stopped VM is left as it is.
func (r *Runtime) Kill(ctx context.Context, name string) error {
	return r.operate(ctx, &operation{
		op: "Kill", name: name, latency: r.opts.Latency.Kill, skipIfStopped: true,
		apply: func(v *vm) error { v.state = stopped(""); return nil },
	})
}

// crash ends the VM's process as a crash does, outside any operation.
func (r *Runtime) crash(name string) error {
	v, err := r.lookup(name)
	if err != nil {
		return fmt.Errorf("crashing %q: %w", name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()

	if v.state.State == vmruntime.StateStopped {
		return nil
	}
	v.state = stopped(fmt.Sprintf("killed by signal %d (%s)", syscall.SIGKILL, ErrInjected))
	if err := v.save(); err != nil {
		return fmt.Errorf("crashing %q: %w", name, err)
	}
	return nil
}

// requireState returns a check that the VM is in state want.
func requireState(want vmruntime.State) func(*vm) error {
	return func(v *vm) error { return checkState(v, want) }
}

// checkState returns nil when the VM is in state want, else an error
// wrapping ErrNotRunning for a stopped VM and ErrInvalidState otherwise.
func checkState(v *vm, want vmruntime.State) error {
	got := v.state.State
	switch {
	case got == want:
		return nil
	case got == vmruntime.StateStopped:
		return vmruntime.ErrNotRunning
	default:
		return fmt.Errorf("vm is %s, not %s: %w", got, want, ErrInvalidState)
	}
}

// setState returns an apply that moves the VM from state from to state to.
func setState(from, to vmruntime.State) func(*vm) error {
	return func(v *vm) error {
		if err := checkState(v, from); err != nil {
			return err
		}
		v.state.State = to
		return nil
	}
}
