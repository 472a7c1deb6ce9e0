//go:build !darwin

package main

import (
	"errors"

	"github.com/vmlet/vmlet/vmruntime"
)

// newVZRuntime fails: the vz backend needs macOS.
func newVZRuntime(string) (vmruntime.Runtime, error) {
	return nil, errors.New("the vz runtime needs macOS (use --runtime qemu or sim)")
}

// vzPreferred returns false: vz exists only on macOS.
func vzPreferred() bool { return false }
