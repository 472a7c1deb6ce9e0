//go:build darwin && !arm64

package vz

import (
	"errors"

	"github.com/Code-Hex/vz/v3"
)

// errSaveRestoreUnsupported is returned on Intel Macs: Code-Hex/vz offers
// save and restore on darwin/arm64 only, as VZ does on Apple silicon.
var errSaveRestoreUnsupported = errors.New("save and restore need macOS 14 on Apple silicon")

// saveRestoreSupport returns why no machine can be saved on an Intel Mac.
func saveRestoreSupport(*vz.VirtualMachineConfiguration) string {
	return errSaveRestoreUnsupported.Error()
}

// Save is unsupported on an Intel Mac.
func (v *vzMachine) Save(string) error { return errSaveRestoreUnsupported }

// Restore is unsupported on an Intel Mac.
func (v *vzMachine) Restore(string) error { return errSaveRestoreUnsupported }
