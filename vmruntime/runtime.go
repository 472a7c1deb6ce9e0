package vmruntime

import (
	"context"
	"errors"
	"net"
	"time"
)

// Machine is the configuration a backend builds one VM from. The reconcile
// package derives it from a manifest; backends know nothing of manifests.
// All paths are absolute.
type Machine struct {
	Name        string
	CPUs        int
	MemoryMiB   int64
	Kernel      string
	Initrd      string // empty for none
	Cmdline     string // appended after the console argument the backend sets
	Disks       []Disk
	Shares      []Share
	Network     Network
	MAC         net.HardwareAddr // derived from Name; stays across boots
	AgentPort   uint32           // 0: the VM has no agent
	StopTimeout time.Duration
	// StateDir is the VM's own folder, <state>/vms/<name>, 0700. Backends keep
	// sockets, pid files, logs and machine identifiers there.
	StateDir string
	// MachineHash identifies the machine's shape; a checkpoint records it.
	MachineHash string
}

// Disk is a virtio block device.
type Disk struct {
	Path      string
	SizeBytes int64 // when > 0 and the file is missing, it is created sparse
	MountPath string
	ReadOnly  bool
}

// Share is a host folder shared into the guest.
type Share struct {
	Tag       string
	Path      string
	MountPath string
	ReadOnly  bool
}

// Network is the guest network mode: NetworkNone or NetworkNAT.
type Network string

// Networks a Machine may ask for.
const (
	NetworkNone Network = "none"
	NetworkNAT  Network = "nat"
)

// State is the observed state of one VM's process.
type State string

// The states a backend reports.
const (
	// StateStopped means no VM process exists.
	StateStopped State = "Stopped"
	// StateRunning means the process exists and the guest executes.
	StateRunning State = "Running"
	// StatePaused means the process exists and the guest's vCPUs are halted.
	StatePaused State = "Paused"
)

// Observation is a backend's report on one VM.
type Observation struct {
	State State
	PID   int
	// Exit is the reason the process ended when it ended without Stop or
	// Kill (a crash, a kill -9, a guest power-off); empty otherwise.
	Exit string
}

// CheckpointInfo describes a checkpoint written by Checkpointer.Save.
type CheckpointInfo struct {
	Bytes int64
	// Runtime names the backend, its version and the machine type, for
	// example "qemu 7.2.0 pc-i440fx-7.2". CanRestore reads it back.
	Runtime string
}

// Runtime drives one kind of hypervisor. It is used by a single worker, so
// methods on different VMs never run at the same time, but Observe and Agent
// may be called from other goroutines (the daemon's local API) meanwhile.
// Every method is bounded by its context.
type Runtime interface {
	// Name returns the backend's name: "qemu", "vz" or "sim".
	Name() string

	// Boot cold-boots m and returns once the guest executes. It does not wait
	// for the agent. A missing kernel, initrd or disk without a size fails
	// with an error that wraps ErrMissingFile.
	Boot(ctx context.Context, m *Machine) error

	// Connect waits for the agent's boot handshake, replies with the
	// guest configuration from m, and keeps the connection for Agent. It is
	// called after Boot and after Resume from a restore; the context carries
	// the manifest's readyTimeout.
	Connect(ctx context.Context, m *Machine) (Hello, error)

	// Agent returns the connection Connect established, or ErrNoAgent.
	Agent(name string) (Agent, error)

	// Pause halts the guest's vCPUs; Resume lets them run again.
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error

	// Stop requests a guest shutdown (agent, then ACPI) and kills the
	// process when m.StopTimeout passes. It returns once the process is gone.
	Stop(ctx context.Context, m *Machine) error

	// Kill ends the VM process at once and returns once it is gone.
	Kill(ctx context.Context, name string) error

	// Observe reports the VM's process state. A VM the backend never saw is
	// StateStopped, not an error.
	Observe(ctx context.Context, name string) (Observation, error)
}

// Checkpointer is a Runtime that can save a VM's memory to a file and
// restore it. It is found by a type assertion.
type Checkpointer interface {
	// Suspendable returns nil when m can be saved, or an error wrapping
	// ErrNotSuspendable that gives the reason (a 9p share on qemu, an Intel Mac on
	// vz).
	Suspendable(m *Machine) error

	// Save writes the memory of a paused VM to path and fsyncs it. The file
	// must not exist. The VM stays paused; the caller kills it afterwards.
	Save(ctx context.Context, m *Machine, path string) (CheckpointInfo, error)

	// CanRestore returns nil when this backend can restore a checkpoint
	// saved with info, or an error wrapping ErrCheckpointIncompatible.
	CanRestore(info CheckpointInfo) error

	// Restore starts m from the checkpoint at path. The VM comes back
	// paused; the caller resumes it and then calls Connect.
	Restore(ctx context.Context, m *Machine, path string, info CheckpointInfo) error
}

// Adopter is a Runtime that can find VMs an earlier daemon left running.
type Adopter interface {
	// Adopt returns the names of VM processes still alive in stateRoot's vms
	// folder and takes them over, so that Observe, Agent and the rest work
	// on them as if this process had booted them.
	Adopt(ctx context.Context, stateRoot string) ([]string, error)
}

// Errors that callers classify with errors.Is.
var (
	ErrMissingFile            = errors.New("missing file")
	ErrNotSuspendable         = errors.New("machine cannot be suspended")
	ErrCheckpointIncompatible = errors.New("checkpoint cannot be restored by this runtime")
	ErrNoAgent                = errors.New("no agent connection")
	ErrNotRunning             = errors.New("vm is not running")
)

// Names of files every backend keeps in Machine.StateDir, so that the daemon
// and its client find them whatever the backend.
const (
	// ConsoleLogFile is the guest's serial or virtio console output.
	ConsoleLogFile = "console.log"
	// AgentSerialPort is the virtio-serial port name the agent uses where
	// there is no vsock.
	AgentSerialPort = "vmlet.agent"
)
