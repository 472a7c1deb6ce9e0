//go:build darwin

package vz

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// macOSVersion returns the product version, for example "14.5".
func macOSVersion() string {
	v, err := syscall.Sysctl("kern.osproductversion")
	if err != nil {
		return "unknown"
	}
	return v
}

// hostID returns the Mac's hardware UUID, or its host name when the UUID
// cannot be read.
func hostID() string {
	if id, err := syscall.Sysctl("kern.uuid"); err == nil && id != "" {
		return id
	}
	name, _ := os.Hostname()
	return name
}

// hostNotSuspendable returns why no VM on this Mac can be saved, or "".
// Save and restore need macOS 14 on Apple silicon.
func hostNotSuspendable() string {
	if runtime.GOARCH != "arm64" {
		return "save and restore need Apple silicon; this Mac is " + runtime.GOARCH
	}
	major, _, _ := strings.Cut(macOSVersion(), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 14 {
		return "save and restore need macOS 14 or later; this Mac runs " + macOSVersion()
	}
	return ""
}

// SaveRestoreSupported reports whether this Mac can save and restore VMs:
// macOS 14 or later on Apple silicon.
func SaveRestoreSupported() bool { return hostNotSuspendable() == "" }
