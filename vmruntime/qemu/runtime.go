package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// The runtime implements every optional ability of vmruntime.
var (
	_ vmruntime.Runtime      = (*Runtime)(nil)
	_ vmruntime.Checkpointer = (*Runtime)(nil)
	_ vmruntime.Adopter      = (*Runtime)(nil)
)

// Files the runtime keeps in a VM's state folder, besides
// vmruntime.ConsoleLogFile.
const (
	pidFile     = "qemu.pid"
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	// qemuLogFile collects QEMU's own standard output and error.
	qemuLogFile = "qemu.log"
)

// probeTimeout bounds the runs of the QEMU binary in New.
const probeTimeout = 30 * time.Second

// Options configure a Runtime. The zero value picks every default.
type Options struct {
	// Binary is the QEMU system emulator, a name looked up in PATH or a
	// path. The default is qemu-system-x86_64, or qemu-system-aarch64 on
	// arm64.
	Binary string
	// Accel is auto, kvm, hvf or tcg. The default auto picks HVF on macOS,
	// KVM where /proc/cpuinfo shows vmx or svm and /dev/kvm opens, and TCG
	// otherwise.
	Accel string
	// MachineType is the versioned machine type every VM boots with, and
	// which checkpoints record. The default is the type that the binary's
	// "pc" alias (x86) or "virt" alias (arm64) points to, such as
	// pc-i440fx-7.2.
	MachineType string
}

// Runtime runs each VM as a QEMU process. It is safe for concurrent use.
// Lifecycle methods on one VM are expected from one goroutine at a time,
// but Observe and Agent may run alongside them.
type Runtime struct {
	binary      string
	version     string
	accel       string
	machineType string
	// machineTypes are those the binary supports, for CanRestore.
	machineTypes map[string]bool
	// vsock is true where the host has /dev/vhost-vsock.
	vsock bool

	mu  sync.Mutex
	vms map[string]*vm
}

// New probes the QEMU binary once for its version and machine types and
// returns a Runtime that uses it.
func New(opts Options) (*Runtime, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()

	r := &Runtime{binary: opts.Binary, vms: make(map[string]*vm)}
	if r.binary == "" {
		r.binary = defaultBinary()
	}
	accel, err := chooseAccel(opts.Accel)
	if err != nil {
		return nil, err
	}
	r.accel = accel
	if err := r.probe(ctx, opts.MachineType); err != nil {
		return nil, err
	}
	_, err = os.Stat("/dev/vhost-vsock")
	r.vsock = err == nil
	return r, nil
}

func (r *Runtime) probe(ctx context.Context, machineType string) error {
	version, err := probeVersion(ctx, r.binary)
	if err != nil {
		return err
	}
	types, pinned, err := probeMachines(ctx, r.binary, machineFamily())
	if err != nil {
		return err
	}
	if machineType == "" {
		machineType = pinned
	}
	if !types[machineType] {
		return fmt.Errorf("machine type %q is not supported by %q", machineType, r.binary)
	}
	r.version, r.machineType, r.machineTypes = version, machineType, types
	return nil
}

// Name returns "qemu".
func (r *Runtime) Name() string { return "qemu" }

// Accel returns the accelerator VMs run with: kvm, hvf or tcg.
func (r *Runtime) Accel() string { return r.accel }

// RuntimeString returns what a checkpoint records of this runtime, such as
// "qemu 7.2.22 pc-i440fx-7.2".
func (r *Runtime) RuntimeString() string {
	return formatRuntime(r.version, r.machineType)
}

func (r *Runtime) lookup(name string) *vm {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vms[name]
}

func (r *Runtime) register(v *vm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vms[v.name] = v
}

// socketPathMax is the longest unix socket path the kernel takes: sun_path
// holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
func socketPathMax() int {
	if runtime.GOOS == "darwin" {
		return 103
	}
	return 107
}

// checkStateDir rejects a state folder too deep for the sockets in it.
func checkStateDir(dir string) error {
	longest := filepath.Join(dir, agentSocket)
	if len(longest) > socketPathMax() {
		return fmt.Errorf("state folder %q is too deep for unix sockets: %q is %d bytes, the limit is %d (use a shorter --state-dir)",
			dir, longest, len(longest), socketPathMax())
	}
	return nil
}
