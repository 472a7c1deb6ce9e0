//go:build !darwin

package vz

import (
	"os"
	"runtime"
)

// macOSVersion returns "none" on systems other than macOS.
func macOSVersion() string { return "none" }

// hostID returns the host name.
func hostID() string {
	name, _ := os.Hostname()
	return name
}

// hostNotSuspendable returns why no VM can be saved here.
func hostNotSuspendable() string {
	return "vz runs only on macOS; this host runs " + runtime.GOOS
}

// SaveRestoreSupported returns false: vz runs only on macOS.
func SaveRestoreSupported() bool { return false }
