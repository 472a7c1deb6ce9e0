package sim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/vmlet/vmlet/vmruntime"
)

// inject injects f and fails the test on an error.
func inject(t *testing.T, r *Runtime, f Fault) {
	t.Helper()
	if err := r.Inject(f); err != nil {
		t.Fatalf("Inject(%v): %v", f, err)
	}
}

func TestFailNextSave(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatal(err)
	}
	inject(t, r, FailNextSave(m.Name))

	path := filepath.Join(t.TempDir(), "checkpoint")
	if _, err := r.Save(t.Context(), m, path); !errors.Is(err, ErrInjected) {
		t.Fatalf("Save: error = %v, want ErrInjected", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("failed save left no truncated file: %v", err)
	}
	if got := observe(t, r, m.Name).State; got != vmruntime.StatePaused {
		t.Errorf("state after failed save = %s, want Paused", got)
	}

	// The fault is spent: the next save succeeds.
	if _, err := r.Save(t.Context(), m, path+".2"); err != nil {
		t.Errorf("second Save: %v", err)
	}
}

func TestTruncatedCheckpointRejected(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatal(err)
	}
	inject(t, r, FailNextSave(m.Name))
	path := filepath.Join(t.TempDir(), "checkpoint")
	r.Save(t.Context(), m, path)
	if err := r.Kill(t.Context(), m.Name); err != nil {
		t.Fatal(err)
	}

	info := vmruntime.CheckpointInfo{Runtime: Version}
	if err := r.Restore(t.Context(), m, path, info); err == nil {
		t.Fatal("Restore of a truncated checkpoint succeeded")
	}
	if got := observe(t, r, m.Name).State; got != vmruntime.StateStopped {
		t.Errorf("state = %s, want Stopped", got)
	}
}

func TestFailNextRestore(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	path, info := suspend(t, r, m)
	inject(t, r, FailNextRestore(m.Name))

	if err := r.Restore(t.Context(), m, path, info); !errors.Is(err, ErrInjected) {
		t.Fatalf("Restore: error = %v, want ErrInjected", err)
	}
	if got := observe(t, r, m.Name).State; got != vmruntime.StateStopped {
		t.Errorf("state after failed restore = %s, want Stopped", got)
	}
	if err := r.Restore(t.Context(), m, path, info); err != nil {
		t.Errorf("second Restore: %v", err)
	}
}

func TestRestoreRejectsOtherCheckpoints(t *testing.T) {
	tests := []struct {
		name string
		m    *vmruntime.Machine
		info vmruntime.CheckpointInfo
		want error
	}{
		{"other runtime", machine("web"), vmruntime.CheckpointInfo{Runtime: "qemu 7.2.0 pc-i440fx-7.2"}, vmruntime.ErrCheckpointIncompatible},
		{"other vm", machine("db"), vmruntime.CheckpointInfo{Runtime: Version}, vmruntime.ErrCheckpointIncompatible},
		{"other machine", &vmruntime.Machine{Name: "web", MachineHash: "h2"}, vmruntime.CheckpointInfo{Runtime: Version}, vmruntime.ErrCheckpointIncompatible},
	}
	r := newRuntime(t, Options{})
	boot(t, r, machine("web"))
	path, _ := suspend(t, r, machine("web"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.Restore(t.Context(), tt.m, path, tt.info); !errors.Is(err, tt.want) {
				t.Errorf("Restore: error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSaveRejectsExistingFile(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Save(t.Context(), m, path); !errors.Is(err, os.ErrExist) {
		t.Errorf("Save over a file: error = %v, want ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "mine" {
		t.Errorf("existing file overwritten with %q", data)
	}
}

func TestCrashStopsVM(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	inject(t, r, Crash(m.Name))

	obs := observe(t, r, m.Name)
	if obs.State != vmruntime.StateStopped {
		t.Errorf("state after crash = %s, want Stopped", obs.State)
	}
	if obs.Exit == "" {
		t.Error("crash left Exit empty")
	}
	if _, err := r.Agent(m.Name); !errors.Is(err, vmruntime.ErrNoAgent) {
		t.Errorf("Agent after crash: error = %v, want ErrNoAgent", err)
	}

	// A boot clears the exit reason.
	boot(t, r, m)
	if obs := observe(t, r, m.Name); obs.Exit != "" {
		t.Errorf("Exit after boot = %q, want empty", obs.Exit)
	}
}

func TestCrashFailsConnectionInUse(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	a, err := r.Agent(m.Name)
	if err != nil {
		t.Fatal(err)
	}
	inject(t, r, Crash(m.Name))
	if err := a.Ping(t.Context()); !errors.Is(err, vmruntime.ErrNotRunning) {
		t.Errorf("Ping after crash: error = %v, want ErrNotRunning", err)
	}

	boot(t, r, m)
	if err := a.Ping(t.Context()); !errors.Is(err, vmruntime.ErrNoAgent) {
		t.Errorf("Ping on the old guest's connection: error = %v, want ErrNoAgent", err)
	}
}

func TestHangAgentBlocksConnect(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	inject(t, r, HangAgent(m.Name))
	if err := r.Boot(t.Context(), m); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.Connect(ctx, m); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect to a hung agent: error = %v, want DeadlineExceeded", err)
	}
	if found := overlaps(t, r.TraceFile()); len(found) != 0 {
		t.Errorf("overlaps = %v, want none", found)
	}

	inject(t, r, ReleaseAgent(m.Name))
	if _, err := r.Connect(t.Context(), m); err != nil {
		t.Errorf("Connect after release: %v", err)
	}
}

func TestHangAgentBlocksRequests(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	a, err := r.Agent(m.Name)
	if err != nil {
		t.Fatal(err)
	}
	inject(t, r, HangAgent(m.Name))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping to a hung agent: error = %v, want Canceled", err)
	}
}

func TestHangAgentStopWaitsTimeout(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	r := newRuntime(t, Options{Clock: clk, Latency: Latencies{Stop: time.Second}})
	m := machine("web")
	m.StopTimeout = 30 * time.Second
	boot(t, r, m)
	inject(t, r, HangAgent(m.Name))

	done := inFlight(t, clk, func() error { return r.Stop(t.Context(), m) })
	clk.Step(time.Second)
	if clk.Waiters() != 1 {
		t.Fatal("Stop of a hung guest finished within the Stop latency")
	}
	clk.Step(m.StopTimeout)
	if err := <-done; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := observe(t, r, m.Name).State; got != vmruntime.StateStopped {
		t.Errorf("state = %s, want Stopped", got)
	}
}

func TestCancelledOperationLeavesNoTrace(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	r := newRuntime(t, Options{Clock: clk, Latency: Latencies{Boot: time.Second}})
	ctx, cancel := context.WithCancel(t.Context())
	done := inFlight(t, clk, func() error { return r.Boot(ctx, machine("a")) })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Boot: error = %v, want Canceled", err)
	}
	if got := observe(t, r, "a").State; got != vmruntime.StateStopped {
		t.Errorf("state after cancelled boot = %s, want Stopped", got)
	}

	// The cancelled boot ended in the trace, so the next one overlaps
	// nothing.
	r.opts.Latency = Latencies{}
	if err := r.Boot(t.Context(), machine("b")); err != nil {
		t.Fatal(err)
	}
	if found := overlaps(t, r.TraceFile()); len(found) != 0 {
		t.Errorf("overlaps = %v, want none", found)
	}
}

func TestAgentShutdownPowersOff(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	a, err := r.Agent(m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	obs := observe(t, r, m.Name)
	if obs.State != vmruntime.StateStopped || obs.Exit != "guest powered off" {
		t.Errorf("after Shutdown: %+v, want Stopped with Exit %q", obs, "guest powered off")
	}
}

func TestInjectRejectsInvalidFault(t *testing.T) {
	r := newRuntime(t, Options{})
	for _, f := range []Fault{{Kind: "explode", VM: "web"}, Crash(""), Crash("../web")} {
		if err := r.Inject(f); err == nil {
			t.Errorf("Inject(%v) succeeded", f)
		}
	}
}
