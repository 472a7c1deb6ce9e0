package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// mountSmallTmpfs mounts a tmpfs of size bytes, too small for a checkpoint.
func mountSmallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		requireOrSkip(t, "mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %q: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestRealSaveFullDiskKeepsVM(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "full", kernel, initrd)
	killOnCleanup(t, r, m.Name)
	full := mountSmallTmpfs(t, "4m")

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	last := awaitTick(t, m, 3)
	ctx := withTimeout(t, time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	checkpoint := filepath.Join(full, "checkpoint")
	_, err := r.Save(ctx, m, checkpoint)
	if err == nil {
		t.Fatal("Save into a full tmpfs succeeded")
	}
	t.Logf("Save: %v", err)

	entries, _ := os.ReadDir(full)
	if len(entries) != 0 {
		t.Errorf("files left in the full folder: %v", entries)
	}
	if obs, err := r.Observe(ctx, m.Name); err != nil || obs.State != vmruntime.StatePaused {
		t.Errorf("Observe after failed Save = %+v, %v, want Paused", obs, err)
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume after failed Save: %v", err)
	}
	awaitTick(t, m, last+3)
	if obs, err := r.Observe(ctx, m.Name); err != nil || obs.State != vmruntime.StateRunning {
		t.Errorf("Observe after Resume = %+v, %v, want Running", obs, err)
	}
}

func TestRealKillNineReportsExit(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "crash", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	awaitTick(t, m, 1)
	ctx := withTimeout(t, time.Minute)
	obs, err := r.Observe(ctx, m.Name)
	if err != nil || obs.State != vmruntime.StateRunning || obs.PID == 0 {
		t.Fatalf("Observe = %+v, %v, want Running with a pid", obs, err)
	}
	if err := syscall.Kill(obs.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := r.lookup(m.Name).process().wait(ctx); err != nil {
		t.Fatal(err)
	}

	obs, err = r.Observe(ctx, m.Name)
	if err != nil || obs.State != vmruntime.StateStopped {
		t.Fatalf("Observe after kill -9 = %+v, %v, want Stopped", obs, err)
	}
	if !strings.Contains(obs.Exit, "killed") || !strings.Contains(obs.Exit, "vmlet-test tick") {
		t.Errorf("Exit = %q, want the signal and the console's tail", obs.Exit)
	}
}

func TestRealAdoptAfterRestart(t *testing.T) {
	first := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	stateRoot := t.TempDir()
	m := counterMachine(t, stateRoot, "adopted", kernel, initrd)
	killOnCleanup(t, first, m.Name)

	if err := first.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	// A daemon that dies drops its QMP connection, which frees the socket
	// for the next one.
	v := first.lookup(m.Name)
	v.dropMonitor(v.mon)

	second := newRealRuntime(t)
	ctx := withTimeout(t, time.Minute)
	names, err := second.Adopt(ctx, stateRoot)
	if err != nil || len(names) != 1 || names[0] != m.Name {
		t.Fatalf("Adopt = %v, %v, want [%s]", names, err, m.Name)
	}
	obs, err := second.Observe(ctx, m.Name)
	if err != nil || obs.State != vmruntime.StateRunning {
		t.Fatalf("Observe adopted = %+v, %v, want Running", obs, err)
	}
	// A save that an earlier daemon left unfinished leaves a partial file.
	partial := partialPath(filepath.Join(m.StateDir, "checkpoint"))
	if err := os.WriteFile(partial, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := second.Kill(ctx, m.Name); err != nil {
		t.Fatalf("Kill adopted: %v", err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial checkpoint after Kill: %v, want it removed", err)
	}
	if obs, _ := second.Observe(ctx, m.Name); obs.State != vmruntime.StateStopped {
		t.Errorf("Observe after Kill = %+v, want Stopped", obs)
	}
}

func TestRealStopKillsAfterTimeout(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "stop", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	awaitTick(t, m, 1)
	ctx := withTimeout(t, time.Minute)
	if err := r.Stop(ctx, m); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	obs, err := r.Observe(ctx, m.Name)
	if err != nil || obs.State != vmruntime.StateStopped || obs.Exit != "" {
		t.Errorf("Observe after Stop = %+v, %v, want Stopped without an exit", obs, err)
	}
	if _, err := os.Stat(filepath.Join(m.StateDir, pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after Stop: %v, want it gone", err)
	}
}

func TestRealRestoreCorruptCheckpoint(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "corrupt", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	ctx := withTimeout(t, time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	info, err := r.Save(ctx, m, checkpoint)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := r.Kill(ctx, m.Name); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := os.Truncate(checkpoint, info.Bytes/2); err != nil {
		t.Fatal(err)
	}

	err = r.Restore(ctx, m, checkpoint, info)
	if err == nil {
		t.Fatal("Restore of a truncated checkpoint succeeded")
	}
	t.Logf("Restore: %v", err)
	if obs, _ := r.Observe(ctx, m.Name); obs.State != vmruntime.StateStopped {
		t.Errorf("Observe after failed Restore = %+v, want Stopped", obs)
	}
	if stat, err := os.Stat(checkpoint); err != nil || stat.Size() != info.Bytes/2 {
		t.Errorf("checkpoint after failed Restore: %v, want it untouched", err)
	}
}

func TestRealSaveRejectsExistingPath(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "exists", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	if err := os.WriteFile(checkpoint, []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if _, err := r.Save(ctx, m, checkpoint); !errors.Is(err, os.ErrExist) {
		t.Errorf("Save over an existing file = %v, want ErrExist", err)
	}
	if data, _ := os.ReadFile(checkpoint); string(data) != "older" {
		t.Errorf("existing file changed to %d bytes", len(data))
	}
}

// TestRealBootAllDevices checks that QEMU accepts the arguments of every
// kind of device together: disks, a read-only disk, a share, user-mode
// networking and the agent channel.
func TestRealBootAllDevices(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "devices", kernel, initrd)
	killOnCleanup(t, r, m.Name)
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro,disk.img")
	if err := os.WriteFile(readOnly, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Disks = []vmruntime.Disk{
		{Path: filepath.Join(dir, "new.img"), SizeBytes: 8 << 20},
		{Path: readOnly, ReadOnly: true},
	}
	m.Shares = []vmruntime.Share{{Tag: "work", Path: dir, ReadOnly: true}}
	m.Network = vmruntime.NetworkNAT
	m.MAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	m.AgentPort = 5000

	ctx := withTimeout(t, time.Minute)
	if err := r.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	awaitTick(t, m, 1)
	if obs, err := r.Observe(ctx, m.Name); err != nil || obs.State != vmruntime.StateRunning {
		t.Errorf("Observe = %+v, %v, want Running", obs, err)
	}
	if _, err := os.Stat(filepath.Join(m.StateDir, agentSocket)); err != nil {
		t.Errorf("agent socket: %v", err)
	}
	if err := r.Suspendable(m); !errors.Is(err, vmruntime.ErrNotSuspendable) {
		t.Errorf("Suspendable with a share = %v, want ErrNotSuspendable", err)
	}
}

func TestRealBootTooDeepStateDir(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	m := counterMachine(t, deep, "deep", kernel, initrd)
	err := r.Boot(t.Context(), m)
	if err == nil || !strings.Contains(err.Error(), "too deep") {
		t.Fatalf("Boot = %v, want a too-deep error", err)
	}
	if _, err := os.Stat(m.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder created anyway: %v", err)
	}
}

// TestRealMigrationTimeoutCancels throttles a migration to 1 MB/s so that
// its context ends first, and checks that the migration is cancelled and
// the guest can run on.
func TestRealMigrationTimeoutCancels(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "slow", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	last := awaitTick(t, m, 1)
	ctx := withTimeout(t, time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	v := r.lookup(m.Name)
	f, err := os.Create(filepath.Join(t.TempDir(), "slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mon, err := v.monitor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustQMP(t, v.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": 1 << 20}, nil))
	mustQMP(t, mon.executeWithFile(ctx, "getfd", map[string]string{"fdname": fdName}, nil, f))
	mustQMP(t, v.execute(ctx, "migrate", map[string]string{"uri": "fd:" + fdName}, nil))

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := awaitMigration(short, v, f); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("awaitMigration = %v, want DeadlineExceeded", err)
	}
	// Under a loaded host the cancellation can outlast cancelMigration's
	// bound, so the test waits for it to settle.
	var info migrationInfo
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		mustQMP(t, v.execute(ctx, "query-migrate", nil, &info))
		if info.Status != "cancelling" {
			break
		}
		time.Sleep(pollInterval)
	}
	if info.Status != "cancelled" {
		t.Errorf("migration status after the timeout = %q, want cancelled", info.Status)
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	awaitTick(t, m, last+2)
}

func mustQMP(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRealAdoptCancelsOrphanMigration leaves a throttled save running when
// its runtime goes away, as a daemon killed in the middle of a suspend
// does: the next runtime's Adopt cancels it, so the guest can resume.
func TestRealAdoptCancelsOrphanMigration(t *testing.T) {
	first := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	stateRoot := t.TempDir()
	m := counterMachine(t, stateRoot, "orphan", kernel, initrd)
	killOnCleanup(t, first, m.Name)

	if err := first.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	last := awaitTick(t, m, 1)
	ctx := withTimeout(t, time.Minute)
	if err := first.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	v := first.lookup(m.Name)
	f, err := os.Create(filepath.Join(t.TempDir(), "orphan"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mon, err := v.monitor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustQMP(t, v.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": 1 << 20}, nil))
	mustQMP(t, mon.executeWithFile(ctx, "getfd", map[string]string{"fdname": fdName}, nil, f))
	mustQMP(t, v.execute(ctx, "migrate", map[string]string{"uri": "fd:" + fdName}, nil))
	v.dropMonitor(v.mon)

	second := newRealRuntime(t)
	if _, err := second.Adopt(ctx, stateRoot); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	adopted := second.lookup(m.Name)
	var info migrationInfo
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		mustQMP(t, adopted.execute(ctx, "query-migrate", nil, &info))
		if info.Status != "cancelling" {
			break
		}
		time.Sleep(pollInterval)
	}
	if info.Status != "cancelled" {
		t.Fatalf("migration status after Adopt = %q, want cancelled", info.Status)
	}
	if err := second.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	awaitTick(t, m, last+2)
}
