//go:build darwin

// Package good holds darwin code that type-checks.
package good

import "github.com/Code-Hex/vz/v3"

// NewBootLoader returns a boot loader for kernel.
func NewBootLoader(kernel string) (*vz.LinuxBootLoader, error) {
	return vz.NewLinuxBootLoader(kernel, vz.WithCommandLine("console=hvc0"))
}
