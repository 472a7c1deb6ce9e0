package spec

import "time"

// APIVersion and Kind identify a vmlet manifest.
const (
	APIVersion = "vmlet.dev/v1alpha1"
	Kind       = "VirtualMachine"
)

// VirtualMachine is one manifest: how a VM is built, the state it should be
// in, and the status vmlet last observed.
type VirtualMachine struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       Spec       `json:"spec"`
	Status     *Status    `json:"status,omitempty"`
}

// ObjectMeta is the part of metadata that vmlet reads.
type ObjectMeta struct {
	// Name is a DNS-1123 label, unique in the manifest folder. It names the
	// VM's state folder.
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// DesiredState is the state a manifest requests.
type DesiredState string

// The desired states a manifest may name.
const (
	Running   DesiredState = "Running"
	Suspended DesiredState = "Suspended"
	Stopped   DesiredState = "Stopped"
)

// Network is how a VM reaches the outside.
type Network string

// The networks a manifest may name.
const (
	NetworkNone Network = "none"
	NetworkNAT  Network = "nat"
)

// Spec is how a VM is built and the state it should be in.
type Spec struct {
	DesiredState DesiredState `json:"desiredState"`
	CPUs         int          `json:"cpus"`
	// Memory is a Kubernetes quantity, a whole number of MiB.
	Memory Quantity `json:"memory"`
	// Kernel, Initrd and the paths below are as written in the manifest;
	// Resolve turns relative ones into absolute paths against the
	// manifest's folder.
	Kernel            string            `json:"kernel"`
	Initrd            string            `json:"initrd,omitempty"`
	Cmdline           string            `json:"cmdline,omitempty"`
	Disks             []Disk            `json:"disks,omitempty"`
	SharedDirectories []SharedDirectory `json:"sharedDirectories,omitempty"`
	Network           Network           `json:"network,omitempty"`
	Agent             *Agent            `json:"agent,omitempty"`
	StopTimeout       *Duration         `json:"stopTimeout,omitempty"`
}

// Disk is a virtio block device backed by a file on the host.
type Disk struct {
	Path string `json:"path"`
	// Size, when set, lets vmlet create the file sparse where it is missing;
	// the agent then formats it ext4.
	Size      *Quantity `json:"size,omitempty"`
	MountPath string    `json:"mountPath,omitempty"`
	ReadOnly  bool      `json:"readOnly,omitempty"`
}

// SharedDirectory is a host folder shared into the guest (VirtioFS on vz,
// virtio-9p on qemu).
type SharedDirectory struct {
	Tag       string `json:"tag"`
	Path      string `json:"path"`
	MountPath string `json:"mountPath,omitempty"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// Agent is where the guest agent listens and how long a boot or resume
// may wait for its handshake.
type Agent struct {
	Port         uint32    `json:"port"`
	ReadyTimeout *Duration `json:"readyTimeout,omitempty"`
}

// Defaults applied where a manifest leaves a field out.
const (
	DefaultNetwork      = NetworkNone
	DefaultStopTimeout  = 30 * time.Second
	DefaultReadyTimeout = 60 * time.Second
)

// Phase is the lifecycle phase vmlet observed.
type Phase string

// The phases of DESIGN.md. Invalid is not a phase: it is Valid=False.
const (
	PhasePending    Phase = "Pending"
	PhaseStarting   Phase = "Starting"
	PhaseRunning    Phase = "Running"
	PhaseSuspending Phase = "Suspending"
	PhaseSuspended  Phase = "Suspended"
	PhaseResuming   Phase = "Resuming"
	PhaseStopping   Phase = "Stopping"
	PhaseStopped    Phase = "Stopped"
	PhaseFailed     Phase = "Failed"
)

// ConditionStatus is True, False or Unknown, as in Kubernetes.
type ConditionStatus string

// The condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// The condition types vmlet sets.
const (
	ConditionReady           = "Ready"
	ConditionValid           = "Valid"
	ConditionSuspendable     = "Suspendable"
	ConditionRestartRequired = "RestartRequired"
	ConditionCheckpointStale = "CheckpointStale"
)

// Status is what vmlet observed. Only vmlet writes it.
type Status struct {
	Phase            Phase       `json:"phase,omitempty"`
	ObservedSpecHash string      `json:"observedSpecHash,omitempty"`
	Conditions       []Condition `json:"conditions,omitempty"`
	Checkpoint       *Checkpoint `json:"checkpoint,omitempty"`
	Restarts         int         `json:"restarts,omitempty"`
}

// Condition follows the Kubernetes API conventions: LastTransitionTime
// changes only when Status changes.
type Condition struct {
	Type               string          `json:"type"`
	Status             ConditionStatus `json:"status"`
	Reason             string          `json:"reason,omitempty"`
	Message            string          `json:"message,omitempty"`
	LastTransitionTime Time            `json:"lastTransitionTime,omitzero"`
}

// Checkpoint describes a saved memory image of a suspended VM.
type Checkpoint struct {
	Bytes       int64  `json:"bytes"`
	SavedAt     Time   `json:"savedAt"`
	MachineHash string `json:"machineHash"`
	// Runtime names the backend, its version and machine type, for example
	// "qemu 7.2.0 pc-i440fx-7.2".
	Runtime string `json:"runtime"`
}
