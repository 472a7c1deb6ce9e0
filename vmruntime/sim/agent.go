package sim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/vmlet/vmlet/vmruntime"
)

// AgentVersion is the version the simulated agent sends in its handshake.
const AgentVersion = "sim-agent 1"

// Connect performs the agent's boot handshake with a running VM and returns
// the guest's boot id, which stays the same across a save and restore and
// changes on every boot. It fails with ErrNoAgent when m has no agent port,
// with ErrNotRunning or ErrInvalidState unless the VM runs, and with an
// error wrapping syscall.EIO when the hazard detector marked the guest
// corrupted. While the agent hangs it blocks until ctx ends.
func (r *Runtime) Connect(ctx context.Context, m *vmruntime.Machine) (vmruntime.Hello, error) {
	if m == nil {
		return vmruntime.Hello{}, fmt.Errorf("connecting to an agent: missing machine")
	}
	if m.AgentPort == 0 {
		return vmruntime.Hello{}, fmt.Errorf("connecting to the agent of %q: %w", m.Name, vmruntime.ErrNoAgent)
	}
	var hello vmruntime.Hello
	err := r.operate(ctx, &operation{
		op: "Connect", name: m.Name, latency: r.opts.Latency.Connect,
		hang:  r.agentHung(m.Name),
		check: requireState(vmruntime.StateRunning),
		apply: func(v *vm) error {
			if err := checkServable(v); err != nil {
				return err
			}
			v.state.AgentConnected = true
			v.state.Guest.Counter++
			hello = vmruntime.Hello{Version: AgentVersion, BootID: v.state.Guest.BootID}
			return nil
		},
	})
	return hello, err
}

// checkServable returns nil when the VM's agent can serve a request, which
// needs a running VM with a guest the detector did not corrupt. The caller
// holds v.mu.
func checkServable(v *vm) error {
	if err := checkState(v, vmruntime.StateRunning); err != nil {
		return err
	}
	corrupted, err := corruptedGuests(v.dir)
	if err != nil {
		return err
	}
	if slices.Contains(corrupted, v.state.Guest.BootID) {
		// The words of a guest whose root device fails under it.
		return fmt.Errorf("agent not responding: guest reports I/O errors on its disks: %w", syscall.EIO)
	}
	return nil
}

// Agent returns the agent connection Connect established for the VM's
// current guest, or an error wrapping ErrNoAgent.
func (r *Runtime) Agent(name string) (vmruntime.Agent, error) {
	v, err := r.lookup(name)
	if err != nil {
		return nil, fmt.Errorf("agent of %q: %w", name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()

	if v.state.State == vmruntime.StateStopped || !v.state.AgentConnected {
		return nil, fmt.Errorf("agent of %q: %w", name, vmruntime.ErrNoAgent)
	}
	return &agent{r: r, v: v, bootID: v.state.Guest.BootID}, nil
}

// agent is the simulated guest agent of one guest. Its requests are not
// lifecycle operations: they take no latency and leave no trace.
type agent struct {
	r      *Runtime
	v      *vm
	bootID string // the guest the connection was made to
}

// Ping returns nil when the agent responds.
func (a *agent) Ping(ctx context.Context) error {
	return a.request(ctx, "ping", func(*guest) error { return nil })
}

// Quiesce marks the guest's filesystems frozen.
func (a *agent) Quiesce(ctx context.Context) error {
	return a.request(ctx, "quiesce", func(g *guest) error { g.Frozen = true; return nil })
}

// Thaw undoes Quiesce.
func (a *agent) Thaw(ctx context.Context) error {
	return a.request(ctx, "thaw", func(g *guest) error { g.Frozen = false; return nil })
}

// Shutdown powers the guest off at once; Observe then reports the VM
// Stopped with Exit "guest powered off".
func (a *agent) Shutdown(ctx context.Context) error {
	err := a.request(ctx, "shutdown", func(*guest) error { return nil })
	if err != nil {
		return err
	}
	a.v.mu.Lock()
	defer a.v.mu.Unlock()
	a.v.state = stopped("guest powered off")
	return a.v.save()
}

// Exec runs one of the commands the simulated guest implements:
//
//	echo ARGS...                        prints ARGS
//	cat /proc/sys/kernel/random/boot_id prints the guest's boot id
//	set KEY VALUE                       stores VALUE in guest memory
//	get KEY                             prints the stored value; exit 1 if none
//	true, false                         exit 0 and 1
//
// Any other command exits 127. Guest memory survives a save and restore and
// is lost on a cold boot.
func (a *agent) Exec(ctx context.Context, argv []string, stdin []byte) (vmruntime.ExecResult, error) {
	var res vmruntime.ExecResult
	err := a.request(ctx, "exec", func(g *guest) error {
		res = execute(g, argv)
		return nil
	})
	return res, err
}

// request runs do on the guest's memory when the agent can serve it, counts
// the request and saves the VM's state.
func (a *agent) request(ctx context.Context, verb string, do func(*guest) error) error {
	if a.r.agentHung(a.v.name) {
		<-ctx.Done()
		return fmt.Errorf("agent %s on %q: agent not responding: %w", verb, a.v.name, context.Cause(ctx))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("agent %s on %q: %w", verb, a.v.name, err)
	}
	a.v.mu.Lock()
	defer a.v.mu.Unlock()

	if err := a.checkServable(); err != nil {
		return fmt.Errorf("agent %s on %q: %w", verb, a.v.name, err)
	}
	if err := do(&a.v.state.Guest); err != nil {
		return fmt.Errorf("agent %s on %q: %w", verb, a.v.name, err)
	}
	a.v.state.Guest.Counter++
	return a.v.save()
}

// checkServable returns nil when the connection's guest still runs and can
// serve a request. The caller holds a.v.mu.
func (a *agent) checkServable() error {
	if a.v.state.State != vmruntime.StateStopped && a.v.state.Guest.BootID != a.bootID {
		return fmt.Errorf("connection closed: the guest was replaced: %w", vmruntime.ErrNoAgent)
	}
	return checkServable(a.v)
}

// bootIDPath is the file in which Linux publishes its boot id.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// execute runs argv against the guest's memory.
func execute(g *guest, argv []string) vmruntime.ExecResult {
	if len(argv) == 0 {
		return failed(127, "sh: missing command\n")
	}
	args := argv[1:]
	switch {
	case argv[0] == "echo":
		return output(strings.Join(args, " ") + "\n")
	case argv[0] == "cat" && len(args) == 1 && args[0] == bootIDPath:
		return output(g.BootID + "\n")
	case argv[0] == "set" && len(args) == 2:
		if g.Values == nil {
			g.Values = map[string]string{}
		}
		g.Values[args[0]] = args[1]
		return output("")
	case argv[0] == "get" && len(args) == 1:
		return lookupValue(g, args[0])
	case argv[0] == "true":
		return output("")
	case argv[0] == "false":
		return failed(1, "")
	}
	return failed(127, fmt.Sprintf("sh: %s: not found\n", strings.Join(argv, " ")))
}

// lookupValue prints the value stored under key, or fails when none is.
func lookupValue(g *guest, key string) vmruntime.ExecResult {
	value, ok := g.Values[key]
	if !ok {
		return failed(1, fmt.Sprintf("get: %s: not set\n", key))
	}
	return output(value + "\n")
}

// output returns a successful result printing stdout.
func output(stdout string) vmruntime.ExecResult {
	return vmruntime.ExecResult{Stdout: []byte(stdout)}
}

// failed returns a result with exit code code printing stderr.
func failed(code int, stderr string) vmruntime.ExecResult {
	return vmruntime.ExecResult{ExitCode: code, Stderr: []byte(stderr)}
}
