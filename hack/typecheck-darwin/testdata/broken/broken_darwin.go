//go:build darwin

// Package broken holds darwin code with type errors, which the darwin
// type-check must report.
package broken

import "github.com/Code-Hex/vz/v3"

// NewBootLoader passes a number where vz wants a kernel path.
func NewBootLoader() (*vz.LinuxBootLoader, error) {
	return vz.NewLinuxBootLoader(42)
}

// Pause calls a method that vz's VirtualMachine does not have.
func Pause(vm *vz.VirtualMachine) error {
	return vm.Suspend()
}
