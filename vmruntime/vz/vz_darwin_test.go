//go:build darwin

package vz

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/Code-Hex/vz/v3"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
)

// Environment variables that point the end-to-end test at an arm64 guest
// image with the vmlet agent. The test binary must be signed:
//
//	VMLET_VZ_KERNEL=... VMLET_VZ_INITRD=... go test -exec 'hack/codesign --exec' ./vmruntime/vz
const (
	envKernel = "VMLET_VZ_KERNEL"
	envInitrd = "VMLET_VZ_INITRD"
)

func init() {
	realHelperMain = runRealHelper
}

// runRealHelper runs the test binary as "vmlet vmm" with VZ.
func runRealHelper() int {
	fs := flag.NewFlagSet("vmm", flag.ContinueOnError)
	dir := fs.String("vm-dir", "", "")
	restore := fs.String("restore", "", "")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := RunHelper(ctx, *dir, *restore); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// skipOld skips a test when this macOS lacks what it needs.
func skipOld(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, vz.ErrUnsupportedOSVersion) {
		t.Skipf("macOS %s is too old: %v", macOSVersion(), err)
	}
}

func TestMachineIDPersists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := loadMachineID(dir)
	skipOld(t, err)
	if err != nil {
		t.Fatalf("loadMachineID: %v", err)
	}
	second, err := loadMachineID(dir)
	if err != nil {
		t.Fatalf("loadMachineID again: %v", err)
	}
	if !slices.Equal(first.DataRepresentation(), second.DataRepresentation()) {
		t.Error("the second load created a new machine identifier, want the stored one")
	}
}

// testMachine returns a machine with an empty kernel, a sparse disk, a
// share and NAT, all under t.TempDir.
func testMachine(t *testing.T) *vmruntime.Machine {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	disk := filepath.Join(dir, "disk.img")
	for path, size := range map[string]int64{kernel: 0, disk: 1 << 20} {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
	return &vmruntime.Machine{
		Name:      "config",
		CPUs:      1,
		MemoryMiB: 512,
		Kernel:    kernel,
		Disks:     []vmruntime.Disk{{Path: disk}},
		Shares:    []vmruntime.Share{{Tag: "work", Path: dir}},
		Network:   vmruntime.NetworkNAT,
		MAC:       []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		AgentPort: 5000,
		StateDir:  dir,
	}
}

func TestBuildConfig(t *testing.T) {
	t.Parallel()
	m := testMachine(t)
	config, err := buildConfig(m)
	skipOld(t, err)
	if err != nil {
		t.Fatalf("buildConfig: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.StateDir, machineIDFile)); err != nil {
		t.Errorf("machine identifier not stored: %v", err)
	}
	reason := saveRestoreSupport(config)
	if host := hostNotSuspendable(); host != "" && reason != host {
		t.Errorf("saveRestoreSupport = %q, want the host's reason %q", reason, host)
	}
}

func TestBootSuspendResume(t *testing.T) {
	kernel := os.Getenv(envKernel)
	if kernel == "" {
		t.Skipf("set %s and %s to an arm64 guest image with the vmlet agent", envKernel, envInitrd)
	}
	if !SaveRestoreSupported() {
		t.Skip("save and restore need macOS 14 on Apple silicon")
	}
	root := newStateRoot(t)
	r, err := New(root, Options{
		Executable: os.Args[0],
		Env:        []string{envRealHelper + "=1"},
		NewAgent:   func(rw io.ReadWriteCloser) AgentClient { return agent.NewClient(rw) },
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &vmruntime.Machine{
		Name: "e2e", CPUs: 1, MemoryMiB: 512,
		Kernel: kernel, Initrd: os.Getenv(envInitrd),
		AgentPort: 5000, StopTimeout: 10 * time.Second,
		StateDir: filepath.Join(root, "vms", "e2e"),
	}
	boot(t, r, m)
	before := connect(t, r, m)

	info := suspend(t, r, m, filepath.Join(root, "e2e.ckpt"))
	if err := r.Restore(t.Context(), m, filepath.Join(root, "e2e.ckpt"), info); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := r.Resume(t.Context(), m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if after := connect(t, r, m); after.BootID != before.BootID {
		t.Errorf("boot id after resume = %q, want %q", after.BootID, before.BootID)
	}
	if err := r.Stop(t.Context(), m); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}
