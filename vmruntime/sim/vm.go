package sim

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmlet/vmlet/vmruntime"
)

// StateFile is the name of the file, in StateRoot/vms/<name>/, that holds a
// simulated VM's state.
const StateFile = "sim.json"

// vm is one simulated VM. Its mutex guards the fields below it; lifecycle
// operations hold it only to check and to apply, never across a latency.
type vm struct {
	name string
	dir  string

	mu     sync.Mutex
	state  vmState
	busy   string // the lifecycle operation in flight, empty when none
	hasDir bool   // dir is known to exist
	size   int    // the state file's length
}

// vmState is the content of sim.json: the VM's process and its guest.
type vmState struct {
	State vmruntime.State `json:"state"`
	// PID is a fake process id, above Linux's largest pid (2^22) so that it
	// never names a real process.
	PID  int    `json:"pid,omitempty"`
	Exit string `json:"exit,omitempty"`
	// AgentConnected is true once Connect succeeded for the current guest.
	AgentConnected bool   `json:"agentConnected,omitempty"`
	MachineHash    string `json:"machineHash,omitempty"`
	Guest          guest  `json:"guest"`
}

// guest is the simulated guest's memory: what a checkpoint saves and a cold
// boot loses.
type guest struct {
	BootID string `json:"bootId,omitempty"`
	// Counter counts the agent requests the guest has served since it
	// booted.
	Counter uint64            `json:"memoryCounter"`
	Values  map[string]string `json:"values,omitempty"`
	Frozen  bool              `json:"frozen,omitempty"`
}

// stopped returns the state of a VM whose process has ended, for the reason
// exit (empty after Stop or Kill).
func stopped(exit string) vmState {
	return vmState{State: vmruntime.StateStopped, Exit: exit}
}

// loadVM reads the VM's state file; a missing file is a stopped VM.
func loadVM(stateRoot, name string) (*vm, error) {
	v := &vm{name: name, dir: filepath.Join(stateRoot, "vms", name)}
	data, err := os.ReadFile(filepath.Join(v.dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		v.state = stopped("")
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading vm state: %w", err)
	}
	if err := json.Unmarshal(data, &v.state); err != nil {
		return nil, fmt.Errorf("reading vm state %q: %w", filepath.Join(v.dir, StateFile), err)
	}
	v.hasDir = true
	v.size = len(data)
	return v, nil
}

// save writes the VM's state file in place with one write at offset 0,
// padded with spaces to the file's length, so a process killed at any point
// leaves either the old state or the new one. It does not fsync: a
// simulated VM does not survive a host crash either. The caller holds v.mu.
//
// Writing in place took about 4 µs where a temp file renamed over the state
// file took 0.4 to 0.7 ms (Go benchmarks on ext4 in a Debian 12 VM), and the
// daemon's benchmarks boot 10,000 VMs.
func (v *vm) save() error {
	data, err := json.Marshal(&v.state)
	if err != nil {
		return fmt.Errorf("encoding vm state of %q: %w", v.name, err)
	}
	f, err := v.openState()
	if err != nil {
		return fmt.Errorf("writing vm state: %w", err)
	}
	if pad := v.size - len(data); pad > 0 {
		data = append(data, bytes.Repeat([]byte{' '}, pad)...)
	}
	_, err = f.WriteAt(data, 0)
	if err := errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("writing vm state: %w", err)
	}
	v.size = len(data)
	return nil
}

// openState opens the state file for writing, creating it and the VM's
// folder if missing, as after someone removed the folder. The caller holds
// v.mu.
func (v *vm) openState() (*os.File, error) {
	path := filepath.Join(v.dir, StateFile)
	if v.hasDir {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		v.hasDir = false
	}
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return nil, err
	}
	v.hasDir = true
	v.size = 0
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
}

// validateName rejects names that would leave the vms folder.
func validateName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("invalid vm name %q", name)
	}
	return nil
}

// newBootID returns a random boot id in the form of Linux's
// /proc/sys/kernel/random/boot_id (a version 4 UUID).
func newBootID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// maxLinuxPID is PID_MAX_LIMIT, the largest pid_max Linux allows.
const maxLinuxPID = 1 << 22

// newPID returns a fake process id that no real process has.
func newPID() int {
	return maxLinuxPID + 1 + mrand.IntN(1<<30)
}
