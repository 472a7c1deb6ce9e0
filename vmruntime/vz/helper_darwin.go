//go:build darwin

package vz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/Code-Hex/vz/v3"

	"github.com/vmlet/vmlet/vmruntime"
)

// RunHelper runs the helper of the VM whose state folder is dir. It builds
// the VZ machine from the configuration the daemon wrote there and boots
// it, or restores it from restorePath when that is not empty. Then it
// serves the daemon's commands until the machine stops or ctx ends. The binary must
// be signed with the com.apple.security.virtualization entitlement.
func RunHelper(ctx context.Context, dir, restorePath string) error {
	return runHelper(ctx, dir, restorePath, newVZMachine)
}

// vzMachine is a hypervisor backed by one VZ virtual machine.
type vzMachine struct {
	config         *vz.VirtualMachineConfiguration
	vm             *vz.VirtualMachine
	notSuspendable string
	done           chan string
	once           sync.Once
}

// newVZMachine builds m's configuration and the machine from it.
func newVZMachine(m *vmruntime.Machine) (hypervisor, error) {
	config, err := buildConfig(m)
	if err != nil {
		return nil, err
	}
	vm, err := vz.NewVirtualMachine(config)
	if err != nil {
		return nil, fmt.Errorf("creating virtual machine: %w", err)
	}
	v := &vzMachine{
		config:         config,
		vm:             vm,
		notSuspendable: saveRestoreSupport(config),
		done:           make(chan string, 1),
	}
	go v.watch(vm.StateChangedNotify())
	return v, nil
}

// watch reports on Done when the machine stops or fails.
func (v *vzMachine) watch(states <-chan vz.VirtualMachineState) {
	for s := range states {
		switch s {
		case vz.VirtualMachineStateStopped:
			v.finish("machine stopped")
		case vz.VirtualMachineStateError:
			v.finish("virtualization framework reported an internal error")
		}
	}
}

func (v *vzMachine) finish(reason string) {
	v.once.Do(func() { v.done <- reason })
}

func (v *vzMachine) Start() error { return v.vm.Start() }

func (v *vzMachine) Pause() error { return v.vm.Pause() }

func (v *vzMachine) Resume() error { return v.vm.Resume() }

// RequestStop requests that the guest power off, as an ACPI power button does.
func (v *vzMachine) RequestStop() error {
	ok, err := v.vm.RequestStop()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("virtualization framework did not accept the stop request")
	}
	return nil
}

// Stop ends the machine at once; a machine that already stopped is no
// error.
func (v *vzMachine) Stop() error {
	if !v.vm.CanStop() {
		return nil
	}
	return v.vm.Stop()
}

// State maps VZ's states, transitional ones included, onto the three
// states of vmruntime.
func (v *vzMachine) State() vmruntime.State {
	switch v.vm.State() {
	case vz.VirtualMachineStatePaused, vz.VirtualMachineStatePausing, vz.VirtualMachineStateSaving:
		return vmruntime.StatePaused
	case vz.VirtualMachineStateStopped, vz.VirtualMachineStateError, vz.VirtualMachineStateRestoring:
		return vmruntime.StateStopped
	default:
		return vmruntime.StateRunning
	}
}

func (v *vzMachine) NotSuspendable() string { return v.notSuspendable }

func (v *vzMachine) Done() <-chan string { return v.done }

// DialAgent connects to the guest's vsock port through the machine's one
// virtio socket device.
func (v *vzMachine) DialAgent(port uint32) (io.ReadWriteCloser, error) {
	devices := v.vm.SocketDevices()
	if len(devices) == 0 {
		return nil, errors.New("machine has no virtio socket device")
	}
	return devices[0].Connect(port)
}

// loadMachineID returns the machine identifier stored in dir, creating and
// storing one on first use. A restore needs the identifier the machine
// was saved with.
func loadMachineID(dir string) (*vz.GenericMachineIdentifier, error) {
	path := filepath.Join(dir, machineIDFile)
	id, err := vz.NewGenericMachineIdentifierWithDataPath(path)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("loading machine identifier %q: %w", path, err)
	}
	id, err = vz.NewGenericMachineIdentifier()
	if err != nil {
		return nil, fmt.Errorf("creating machine identifier: %w", err)
	}
	if err := writeFileAtomic(path, id.DataRepresentation(), 0o600); err != nil {
		return nil, err
	}
	return id, nil
}
