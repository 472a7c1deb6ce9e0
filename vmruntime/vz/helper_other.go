//go:build !darwin

package vz

import (
	"context"
	"errors"
	"runtime"
)

// RunHelper runs the helper of the VM whose state folder is dir. It needs
// macOS: elsewhere it returns an error.
func RunHelper(ctx context.Context, dir, restorePath string) error {
	return errors.New("the vz helper needs macOS; this system is " + runtime.GOOS)
}
