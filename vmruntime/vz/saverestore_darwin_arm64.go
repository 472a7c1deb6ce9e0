//go:build darwin && arm64

package vz

import (
	"github.com/Code-Hex/vz/v3"
)

// saveRestoreSupport returns why VZ cannot save machines built from
// config, or "". Save and restore need macOS 14 on Apple silicon.
func saveRestoreSupport(config *vz.VirtualMachineConfiguration) string {
	if reason := hostNotSuspendable(); reason != "" {
		return reason
	}
	ok, err := config.ValidateSaveRestoreSupport()
	if err != nil {
		return err.Error()
	}
	if !ok {
		return "virtualization framework cannot save this configuration"
	}
	return ""
}

// Save writes the paused machine's state to path, which must not exist.
// It needs macOS 14 on Apple silicon.
func (v *vzMachine) Save(path string) error {
	return v.vm.SaveMachineStateToPath(path)
}

// Restore loads the state at path into the stopped machine, which comes
// back paused. The machine must have been built from the configuration and
// machine identifier the state was saved with. It needs macOS 14 on Apple
// silicon.
func (v *vzMachine) Restore(path string) error {
	return v.vm.RestoreMachineStateFromURL(path)
}
