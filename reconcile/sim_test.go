package reconcile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

// newSimHarness is a harness over the real sim runtime.
func newSimHarness(t *testing.T) (*harness, *sim.Runtime) {
	t.Helper()
	h := newHarness(t)
	rt := newSim(t, h)
	h.runtime = rt
	h.restart()
	t.Cleanup(func() { checkNoOverlaps(t, rt) })
	return h, rt
}

func newSim(t *testing.T, h *harness) *sim.Runtime {
	t.Helper()
	rt, err := sim.New(sim.Options{StateRoot: h.state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func checkNoOverlaps(t *testing.T, rt *sim.Runtime) {
	t.Helper()
	overlaps, err := sim.Overlaps(rt.TraceFile())
	if err != nil {
		t.Fatal(err)
	}
	if len(overlaps) > 0 {
		t.Errorf("hazard detector saw overlaps: %v", overlaps)
	}
}

// guestExec runs a command in the guest of web and returns its output.
func guestExec(t *testing.T, rt vmruntime.Runtime, argv ...string) string {
	t.Helper()
	ag, err := rt.Agent("web")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ag.Exec(t.Context(), argv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(res.Stdout))
}

func TestSimSuspendResumeKeepsMemory(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	guestExec(t, rt, "set", "greeting", "hello")
	bootID := guestExec(t, rt, "cat", "/proc/sys/kernel/random/boot_id")

	h.write(manifest{name: "web", desired: spec.Suspended})
	h.mustReconcile("web")
	st := h.status(path)
	if st.Phase != spec.PhaseSuspended || st.Checkpoint == nil || st.Checkpoint.Runtime != sim.Version {
		t.Fatalf("after suspend: phase %s checkpoint %+v", st.Phase, st.Checkpoint)
	}

	h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if got := guestExec(t, rt, "get", "greeting"); got != "hello" {
		t.Errorf("memory after resume = %q, want hello", got)
	}
	if got := guestExec(t, rt, "cat", "/proc/sys/kernel/random/boot_id"); got != bootID {
		t.Errorf("boot id after resume = %q, want %q", got, bootID)
	}
	if h.exists("vms/web/checkpoint") {
		t.Error("the consumed checkpoint is still there")
	}

	h.write(manifest{name: "web", desired: spec.Stopped})
	h.mustReconcile("web")
	h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if got := guestExec(t, rt, "get", "greeting"); got == "hello" {
		t.Error("memory survived a cold boot")
	}
}

func TestSimPrewarm(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Suspended})
	h.mustReconcile("web")
	if got := h.status(path).Phase; got != spec.PhaseSuspended {
		t.Fatalf("phase = %s, want Suspended", got)
	}
	obs, err := rt.Observe(t.Context(), "web")
	if err != nil || obs.State != vmruntime.StateStopped {
		t.Errorf("prewarmed VM process: %v %v, want Stopped", obs.State, err)
	}
}

func TestSimFailedSaveKeepsRunning(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	guestExec(t, rt, "set", "k", "v")

	if err := rt.Inject(sim.FailNextSave("web")); err != nil {
		t.Fatal(err)
	}
	h.write(manifest{name: "web", desired: spec.Suspended})
	if _, err := h.reconcile("web"); err == nil {
		t.Fatal("a failed save returned no error")
	}
	st := h.status(path)
	if st.Phase != spec.PhaseRunning || condition(st, "Ready") != "True/SuspendFailed" {
		t.Errorf("phase %s Ready %s, want Running and True/SuspendFailed", st.Phase, condition(st, "Ready"))
	}
	if got := guestExec(t, rt, "get", "k"); got != "v" {
		t.Errorf("memory after the failed save = %q", got)
	}
	if h.exists("vms/web/checkpoint.tmp") {
		t.Error("the temp checkpoint is still there")
	}

	h.mustReconcile("web")
	if got := h.status(path).Phase; got != spec.PhaseSuspended {
		t.Errorf("retry: phase = %s, want Suspended", got)
	}
}

func TestSimFailedRestoreColdBoots(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Suspended})
	h.mustReconcile("web")
	if err := rt.Inject(sim.FailNextRestore("web")); err != nil {
		t.Fatal(err)
	}
	h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	st := h.status(path)
	if st.Phase != spec.PhaseRunning || condition(st, "Ready") != "True/ColdBootedAfterFailedResume" {
		t.Errorf("phase %s Ready %s", st.Phase, condition(st, "Ready"))
	}
	if got := len(h.trashEntries()); got != 1 {
		t.Errorf("trash entries = %d, want 1", got)
	}
}

func TestSimCrashRestarts(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if err := rt.Inject(sim.Crash("web")); err != nil {
		t.Fatal(err)
	}
	res := h.mustReconcile("web")
	if got := h.status(path).Phase; got != spec.PhaseFailed || res.RequeueAfter <= 0 {
		t.Fatalf("after the crash: phase %s requeue %v", got, res.RequeueAfter)
	}
	h.clock.Step(res.RequeueAfter)
	h.mustReconcile("web")
	st := h.status(path)
	if st.Phase != spec.PhaseRunning || st.Restarts != 1 {
		t.Errorf("after the restart: phase %s restarts %d", st.Phase, st.Restarts)
	}
}

func TestSimHungAgentFailsBoot(t *testing.T) {
	h, rt := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	if err := rt.Inject(sim.HangAgent("web")); err != nil {
		t.Fatal(err)
	}
	_, err := h.reconcile("web")
	if err == nil || Reason(err) != "Timeout" {
		t.Fatalf("error %v reason %q, want a timeout", err, Reason(err))
	}
	st := h.status(path)
	if st.Phase != spec.PhaseFailed || condition(st, "Ready") != "False/AgentTimeout" {
		t.Errorf("phase %s Ready %s", st.Phase, condition(st, "Ready"))
	}
	obs, err := rt.Observe(t.Context(), "web")
	if err != nil || obs.State != vmruntime.StateStopped {
		t.Errorf("the VM with a hung agent is %v (%v), want killed", obs.State, err)
	}
}

func TestSimRestartedDaemonAdopts(t *testing.T) {
	h, _ := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	before := h.status(path)

	rt2 := newSim(t, h)
	h.runtime = rt2
	h.restart()
	keys, err := h.r.Adopt(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "web" {
		t.Fatalf("adopt = %q", keys)
	}
	h.mustReconcile("web")
	if !statusEqual(h.status(path), before) {
		t.Errorf("status changed after the restart: %+v", h.status(path))
	}
	if got := guestExec(t, rt2, "echo", "hi"); got != "hi" {
		t.Errorf("agent after adoption: %q", got)
	}
}

// TestSimHostLockPreventsOverlaps runs two Reconcilers on two state
// folders that share one sim trace, concurrently, with and without a
// shared host lock. With the lock the hazard detector records no overlap.
// Without it, the negative control, the detector records overlaps.
func TestSimHostLockPreventsOverlaps(t *testing.T) {
	tests := []struct {
		name     string
		shared   bool
		overlaps bool
	}{
		{name: "shared host lock", shared: true, overlaps: false},
		{name: "no host lock", shared: false, overlaps: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "trace")
			lock := &mutexLocker{ch: make(chan struct{}, 1)}
			var hs []*harness
			for range 2 {
				h := newHarness(t)
				rt, err := sim.New(sim.Options{StateRoot: h.state, TraceFile: trace,
					Latency: sim.Latencies{Boot: msLatency, Save: msLatency, Restore: msLatency, Pause: msLatency}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rt.Close() })
				h.runtime = rt
				h.restart()
				if tt.shared {
					h.r.cfg.HostLock = lock
				} else {
					h.r.cfg.HostLock = nil
				}
				hs = append(hs, h)
			}
			runConcurrently(t, hs)
			overlaps, err := sim.Overlaps(trace)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(overlaps) > 0; got != tt.overlaps {
				t.Errorf("overlaps seen = %v (%d), want %v", got, len(overlaps), tt.overlaps)
			}
		})
	}
}

const msLatency = 5_000_000 // 5ms, as a time.Duration

// mutexLocker is a host lock shared by Reconcilers in one process.
type mutexLocker struct{ ch chan struct{} }

func (l *mutexLocker) Lock(ctx context.Context) (func(), error) {
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runConcurrently cycles several VMs of each harness through boot,
// suspend and resume, one goroutine per harness.
func runConcurrently(t *testing.T, hs []*harness) {
	t.Helper()
	names := []string{"a", "b", "c", "d"}
	for _, h := range hs {
		for _, n := range names {
			h.write(manifest{name: n, desired: spec.Running})
		}
	}
	errs := make(chan error, len(hs))
	for _, h := range hs {
		go func() { errs <- cycle(t.Context(), h, names) }()
	}
	for range hs {
		if err := <-errs; err != nil {
			t.Log(err) // corrupted guests fail; the trace is what counts
		}
	}
}

func cycle(ctx context.Context, h *harness, names []string) error {
	for _, desired := range []spec.DesiredState{spec.Running, spec.Suspended, spec.Running, spec.Stopped} {
		for _, n := range names {
			path := filepath.Join(h.dir, n+".yaml")
			if err := os.WriteFile(path, []byte(manifest{name: n, desired: desired}.text()), 0o644); err != nil {
				return err
			}
			h.cat.Update(path)
			if _, err := h.r.Reconcile(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestSimSuspendWithoutDiskFile suspends and resumes a VM whose disk file
// does not exist, as the sim runs it, and checks that a disk file appearing
// while it is suspended makes the checkpoint stale.
func TestSimSuspendWithoutDiskFile(t *testing.T) {
	h, _ := newSimHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running, disk: true})
	h.mustReconcile("web")
	h.write(manifest{name: "web", desired: spec.Suspended, disk: true})
	h.mustReconcile("web")
	if st := h.status(path); st.Phase != spec.PhaseSuspended {
		t.Fatalf("suspend with no disk file: phase %s, want Suspended", st.Phase)
	}

	h.write(manifest{name: "web", desired: spec.Running, disk: true})
	h.mustReconcile("web")
	if st := h.status(path); st.Phase != spec.PhaseRunning {
		t.Fatalf("resume with no disk file: phase %s, want Running", st.Phase)
	}

	h.write(manifest{name: "web", desired: spec.Suspended, disk: true})
	h.mustReconcile("web")
	if err := os.WriteFile(filepath.Join(h.dir, "disk.img"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.write(manifest{name: "web", desired: spec.Running, disk: true})
	h.mustReconcile("web")
	st := h.status(path)
	if st.Phase != spec.PhaseSuspended {
		t.Errorf("resume after the disk appeared: phase %s, want Suspended", st.Phase)
	}
	if got := condition(st, spec.ConditionCheckpointStale); got != "True/DiskChanged" {
		t.Errorf("CheckpointStale = %s, want True/DiskChanged", got)
	}
}
