package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

func TestRealSaveRestoreKeepsMemory(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "counter", kernel, initrd)
	killOnCleanup(t, r, m.Name)
	startObserver(t, r, m.Name)

	if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	awaitTick(t, m, 5)
	ctx := withTimeout(t, time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	// A partial file of an earlier, interrupted save is replaced.
	if err := os.WriteFile(partialPath(checkpoint), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := r.Save(ctx, m, checkpoint)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := r.Kill(ctx, m.Name); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	before, _ := consoleTicks(t, m)
	last := before[len(before)-1]

	checkCheckpointFile(t, checkpoint, info)
	if obs, _ := r.Observe(ctx, m.Name); obs.State != vmruntime.StateStopped || obs.Exit != "" {
		t.Errorf("Observe after Kill = %+v, want Stopped without an exit", obs)
	}

	if err := r.Restore(ctx, m, checkpoint, info); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if obs, err := r.Observe(ctx, m.Name); err != nil || obs.State != vmruntime.StatePaused {
		t.Errorf("Observe after Restore = %+v, %v, want Paused", obs, err)
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	awaitTick(t, m, last+3)

	ticks, boots := consoleTicks(t, m)
	if boots != 1 {
		t.Errorf("console shows %d boots, want 1", boots)
	}
	if broken := checkContinuous(ticks); broken != "" {
		t.Errorf("counter did not survive the restore: %s", broken)
	}
}

// checkCheckpointFile checks the saved file's mode and size and that no
// temporary file is left beside it.
func checkCheckpointFile(t *testing.T, path string, info vmruntime.CheckpointInfo) {
	t.Helper()
	stat, err := os.Stat(path)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if stat.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode = %v, want 0600", stat.Mode().Perm())
	}
	if stat.Size() != info.Bytes || info.Bytes == 0 {
		t.Errorf("checkpoint is %d bytes, Save returned %d", stat.Size(), info.Bytes)
	}
	partials, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.partial"))
	if len(partials) != 0 {
		t.Errorf("temporary files left: %v", partials)
	}
}

// TestRealColdBootResetsCounter is the negative control of the memory
// check: a second cold boot restarts the counter, and checkContinuous
// must report the break.
func TestRealColdBootResetsCounter(t *testing.T) {
	r := newRealRuntime(t)
	kernel, initrd := testKernel(t), buildCounterInitrd(t)
	m := counterMachine(t, t.TempDir(), "reboot", kernel, initrd)
	killOnCleanup(t, r, m.Name)

	for range 2 {
		if err := r.Boot(withTimeout(t, time.Minute), m); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		ticks, _ := consoleTicks(t, m)
		awaitTick(t, m, max(len(ticks), 1))
		if err := r.Kill(withTimeout(t, time.Minute), m.Name); err != nil {
			t.Fatalf("Kill: %v", err)
		}
	}
	ticks, boots := consoleTicks(t, m)
	if boots != 2 {
		t.Errorf("console shows %d boots, want 2", boots)
	}
	if checkContinuous(ticks) == "" {
		t.Errorf("checkContinuous accepted the ticks of two boots: %v", ticks)
	}
}

func TestRealBootMissingKernel(t *testing.T) {
	r := newRealRuntime(t)
	m := counterMachine(t, t.TempDir(), "missing", "/nonexistent/vmlinuz", "")
	err := r.Boot(t.Context(), m)
	if !errors.Is(err, vmruntime.ErrMissingFile) {
		t.Fatalf("Boot = %v, want ErrMissingFile", err)
	}
}
