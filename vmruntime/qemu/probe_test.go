package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/vmruntime"
)

func TestParseMachines(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "machine-help.txt"))
	if err != nil {
		t.Fatal(err)
	}
	types, pinned := parseMachines(out, "pc")
	if pinned != "pc-i440fx-7.2" {
		t.Errorf("pinned = %q, want pc-i440fx-7.2", pinned)
	}
	for _, name := range []string{"pc", "pc-i440fx-7.2", "pc-i440fx-2.0", "q35", "pc-q35-7.1", "microvm"} {
		if !types[name] {
			t.Errorf("types lack %q", name)
		}
	}
	if types["Supported"] {
		t.Error("types contain the header line")
	}
	if _, pinned := parseMachines(out, "virt"); pinned != "" {
		t.Errorf("pinned for virt = %q, want none", pinned)
	}
}

func TestHasVirtFlag(t *testing.T) {
	tests := []struct {
		name    string
		cpuinfo string
		want    bool
	}{
		{"vmx", "processor\t: 0\nflags\t\t: fpu vme vmx sse\n", true},
		{"svm", "flags\t\t: fpu svm\n", true},
		{"nested", "flags\t\t: fpu vme hypervisor sse\n", false},
		{"only in another field", "model name\t: vmx svm\nflags\t: fpu\n", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasVirtFlag([]byte(tt.cpuinfo)); got != tt.want {
				t.Errorf("hasVirtFlag = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChooseAccel(t *testing.T) {
	for _, accel := range []string{AccelKVM, AccelHVF, AccelTCG} {
		if got, err := chooseAccel(accel); err != nil || got != accel {
			t.Errorf("chooseAccel(%q) = %q, %v", accel, got, err)
		}
	}
	if got, err := chooseAccel(""); err != nil || got == "" {
		t.Errorf("chooseAccel(\"\") = %q, %v, want a choice", got, err)
	}
	if _, err := chooseAccel("xen"); err == nil || !strings.Contains(err.Error(), `"xen"`) {
		t.Errorf("chooseAccel(xen) = %v, want an error naming it", err)
	}
}

func TestCanRestore(t *testing.T) {
	r := &Runtime{
		version:      "7.2.22",
		machineType:  "pc-i440fx-7.2",
		machineTypes: map[string]bool{"pc-i440fx-7.2": true, "pc-i440fx-7.1": true},
	}
	tests := []struct {
		name    string
		runtime string
		ok      bool
	}{
		{"same", "qemu 7.2.22 pc-i440fx-7.2", true},
		{"older patch release", "qemu 7.2.0 pc-i440fx-7.2", true},
		{"older release, older type", "qemu 7.1.0 pc-i440fx-7.1", true},
		{"newer patch release", "qemu 7.2.23 pc-i440fx-7.2", false},
		{"newer major", "qemu 8.0.0 pc-i440fx-7.2", false},
		{"unknown machine type", "qemu 7.2.22 pc-i440fx-8.0", false},
		{"other backend", "vz 14.0 macos", false},
		{"bad version", "qemu 7.x pc-i440fx-7.2", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.CanRestore(vmruntime.CheckpointInfo{Runtime: tt.runtime})
			if tt.ok && err != nil {
				t.Errorf("CanRestore = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, vmruntime.ErrCheckpointIncompatible) {
				t.Errorf("CanRestore = %v, want ErrCheckpointIncompatible", err)
			}
		})
	}
}

func TestRuntimeStringRoundTrip(t *testing.T) {
	r := &Runtime{version: "7.2.22", machineType: "pc-i440fx-7.2", machineTypes: map[string]bool{"pc-i440fx-7.2": true}}
	if got := r.RuntimeString(); got != "qemu 7.2.22 pc-i440fx-7.2" {
		t.Errorf("RuntimeString = %q", got)
	}
	if err := r.CanRestore(vmruntime.CheckpointInfo{Runtime: r.RuntimeString()}); err != nil {
		t.Errorf("CanRestore of its own runtime: %v", err)
	}
}

func TestSuspendable(t *testing.T) {
	r := &Runtime{}
	m := baseMachine()
	if err := r.Suspendable(m); err != nil {
		t.Errorf("Suspendable without shares = %v", err)
	}
	m.Shares = []vmruntime.Share{{Tag: "work", Path: "/srv"}}
	if err := r.Suspendable(m); !errors.Is(err, vmruntime.ErrNotSuspendable) {
		t.Errorf("Suspendable with a share = %v, want ErrNotSuspendable", err)
	}
}

func TestCheckStateDir(t *testing.T) {
	if err := checkStateDir("/var/lib/vmlet/vms/builder"); err != nil {
		t.Errorf("checkStateDir of a short folder: %v", err)
	}
	deep := "/" + strings.Repeat("d", 100)
	err := checkStateDir(deep)
	if err == nil || !strings.Contains(err.Error(), "too deep") {
		t.Errorf("checkStateDir of a %d-byte folder = %v, want too deep", len(deep), err)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		change  func(*vmruntime.Machine)
		missing string
	}{
		{"all present", func(*vmruntime.Machine) {}, ""},
		{"kernel", func(m *vmruntime.Machine) { m.Kernel = filepath.Join(dir, "nope") }, "nope"},
		{"initrd", func(m *vmruntime.Machine) { m.Initrd = filepath.Join(dir, "initrd") }, "initrd"},
		{"disk without size", func(m *vmruntime.Machine) {
			m.Disks = []vmruntime.Disk{{Path: filepath.Join(dir, "disk.img")}}
		}, "disk.img"},
		{"disk with size", func(m *vmruntime.Machine) {
			m.Disks = []vmruntime.Disk{{Path: filepath.Join(dir, "new.img"), SizeBytes: 1 << 20}}
		}, ""},
		{"share", func(m *vmruntime.Machine) {
			m.Shares = []vmruntime.Share{{Tag: "s", Path: filepath.Join(dir, "share")}}
		}, "share"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &vmruntime.Machine{Name: "x", Kernel: kernel}
			tt.change(m)
			err := checkFiles(m)
			if tt.missing == "" && err != nil {
				t.Fatalf("checkFiles = %v, want nil", err)
			}
			if tt.missing != "" && (!errors.Is(err, vmruntime.ErrMissingFile) || !strings.Contains(err.Error(), tt.missing)) {
				t.Fatalf("checkFiles = %v, want ErrMissingFile naming %q", err, tt.missing)
			}
		})
	}
}

func TestCreateDisksSparse(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.img")
	if err := os.WriteFile(existing, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.img")
	disks := []vmruntime.Disk{{Path: fresh, SizeBytes: 64 << 20}, {Path: existing, SizeBytes: 64 << 20}}
	if err := createDisks(disks); err != nil {
		t.Fatalf("createDisks: %v", err)
	}
	info, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != 64<<20 {
		t.Errorf("fresh disk is %d bytes, want %d", info.Size(), 64<<20)
	}
	if blocks := statBlocks(t, fresh); blocks != 0 {
		t.Errorf("fresh disk has %d blocks allocated, want a sparse file", blocks)
	}
	if data, _ := os.ReadFile(existing); string(data) != "data" {
		t.Errorf("existing disk changed to %q", data)
	}
}

func TestAdoptSkipsForeignPid(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "vms", "other")
	mustMkdir(t, dir)
	// This test's own pid is alive but is not a QEMU of that folder, as
	// after a pid reuse.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := os.WriteFile(filepath.Join(dir, pidFile), pid, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{vms: make(map[string]*vm)}
	names, err := r.Adopt(t.Context(), root)
	if err != nil || len(names) != 0 {
		t.Errorf("Adopt = %v, %v, want nothing", names, err)
	}
}
