package main

import (
	"path/filepath"
	"strings"
)

// wantedModules are the kernel modules the agent loads, in order, when
// modules.dep lists them. A module built into the kernel or absent from it
// is skipped: Debian's cloud kernel builds ext4 in and has no 9p. crc32c
// comes before ext4 because ext4 needs it but modules.dep does not say so.
// button and evdev let the agent read the ACPI power button.
var wantedModules = []string{
	"crc32c_generic", "crc32c-intel", "ext4",
	"virtio_pci", "virtio_blk", "virtio_console", "virtio_net",
	"9pnet_virtio", "9p",
	"vmw_vsock_virtio_transport",
	"fuse", "virtiofs",
	"button", "evdev",
}

// availableModules returns the names in wanted that modules.dep (its text
// in dep) lists, in wanted's order. modules.dep spells names with
// underscores or dashes as their files do, while modprobe treats the two
// alike.
func availableModules(dep string, wanted []string) []string {
	listed := make(map[string]bool)
	for _, line := range strings.Split(dep, "\n") {
		path, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		base := filepath.Base(path)
		base, _, _ = strings.Cut(base, ".ko")
		listed[strings.ReplaceAll(base, "-", "_")] = true
	}
	var names []string
	for _, name := range wanted {
		if listed[strings.ReplaceAll(name, "-", "_")] {
			names = append(names, name)
		}
	}
	return names
}
