package reconcile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

func TestInvalidManifestKeepsLastValidSpec(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)
	// Invalid, and asking for Stopped: neither is acted on.
	invalid := manifest{name: "web", desired: spec.Stopped, extra: "  cpus: 0\n"}
	data := []byte(invalid.text())
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.cat.Update(path)

	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("calls = %q, want none", calls)
	}
	if got := h.rt.stateOf("web"); got != vmruntime.StateRunning {
		t.Errorf("VM is %s, want Running", got)
	}
	m, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status == nil {
		t.Fatal("invalid manifest got no status")
	}
	if got := condition(m.Status, "Valid"); got != "False/InvalidSpec" {
		t.Errorf("Valid = %s, want False/InvalidSpec", got)
	}
	if m.Status.Phase != spec.PhaseRunning {
		t.Errorf("phase = %s, want Running", m.Status.Phase)
	}

	// The restarted daemon reads the VM's machine from its record.
	h.restart()
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("calls after a restart = %q, want none", calls)
	}
	if got := condition(h.status(path), "Suspendable"); got != "True/Supported" {
		t.Errorf("Suspendable from the record = %s", got)
	}

	// Fixed, the manifest is acted on again.
	h.write(manifest{name: "web", desired: spec.Stopped})
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Stop web"}) {
		t.Errorf("calls after the fix = %q, want a stop", calls)
	}
}

func TestRemovedManifest(t *testing.T) {
	tests := []struct {
		name     string
		observed spec.DesiredState
		calls    []string
		trash    int
	}{
		{name: "running", observed: spec.Running, calls: []string{"Stop web"}},
		{name: "suspended", observed: spec.Suspended, trash: 1},
		{name: "stopped", observed: spec.Stopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := bring(h, tt.observed, false)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if got := h.cat.Remove(path); !slices.Equal(got, []string{"web"}) {
				t.Fatalf("remove = %q", got)
			}

			h.mustReconcile("web")
			if calls := h.rt.takeCalls(); !slices.Equal(calls, tt.calls) {
				t.Errorf("calls = %q, want %q", calls, tt.calls)
			}
			if got := len(h.trashEntries()); got != tt.trash {
				t.Errorf("trash entries = %d, want %d", got, tt.trash)
			}
			if h.exists("vms/web/machine.json") || h.exists("vms/web/checkpoint") {
				t.Error("the record or the checkpoint is still in the state folder")
			}
			h.mustReconcile("web")
			if calls := h.rt.takeCalls(); len(calls) > 0 {
				t.Errorf("second reconcile made calls %q", calls)
			}
		})
	}
}

func TestRemovedWhileDaemonDown(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Suspended, false)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.restart()
	keys, err := h.r.Adopt(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"web"}) {
		t.Fatalf("adopt = %q, want [web]", keys)
	}
	h.mustReconcile("web")
	if got := len(h.trashEntries()); got != 1 {
		t.Errorf("trash entries = %d, want the checkpoint", got)
	}
}

// TestRestartConverges starts a new Reconciler over a state folder that an
// interrupted transition left, and checks the repairs.
func TestRestartConverges(t *testing.T) {
	tests := []struct {
		name    string
		desired spec.DesiredState
		// leave puts the VM web, which runs, into a half-done state.
		leave func(h *harness)
		calls []string
		phase spec.Phase
		trash int
		files map[string]bool
	}{
		{
			name: "temp checkpoint of a paused VM", desired: spec.Running,
			leave: func(h *harness) {
				h.rt.set("web", vmruntime.StatePaused, "")
				writeState(h, "vms/web/checkpoint.tmp")
			},
			calls: []string{"Resume web", "Thaw web"},
			phase: spec.PhaseRunning,
			files: map[string]bool{"vms/web/checkpoint.tmp": false},
		},
		{
			name: "temp checkpoint, suspend asked", desired: spec.Suspended,
			leave: func(h *harness) {
				h.rt.set("web", vmruntime.StatePaused, "")
				writeState(h, "vms/web/checkpoint.tmp")
			},
			calls: []string{"Resume web", "Thaw web", "Quiesce web", "Pause web", "Save web", "Kill web"},
			phase: spec.PhaseSuspended,
			files: map[string]bool{"vms/web/checkpoint.tmp": false, "vms/web/checkpoint": true},
		},
		{
			name: "paused without a checkpoint", desired: spec.Running,
			leave: func(h *harness) { h.rt.set("web", vmruntime.StatePaused, "") },
			calls: []string{"Resume web", "Thaw web"},
			phase: spec.PhaseRunning,
		},
		{
			name: "paused with a durable checkpoint", desired: spec.Suspended,
			leave: func(h *harness) {
				suspendAndPause(h)
			},
			calls: []string{"Kill web"},
			phase: spec.PhaseSuspended,
			files: map[string]bool{"vms/web/checkpoint": true},
		},
		{
			name: "checkpoint present while running", desired: spec.Running,
			leave: func(h *harness) {
				suspendAndPause(h)
				h.rt.set("web", vmruntime.StateRunning, "")
			},
			calls: nil,
			phase: spec.PhaseRunning,
			trash: 1,
			files: map[string]bool{"vms/web/checkpoint": false},
		},
		{
			name: "checkpoint present while running, suspend asked", desired: spec.Suspended,
			leave: func(h *harness) {
				suspendAndPause(h)
				h.rt.set("web", vmruntime.StateRunning, "")
			},
			calls: []string{"Quiesce web", "Pause web", "Save web", "Kill web"},
			phase: spec.PhaseSuspended,
			trash: 1,
			files: map[string]bool{"vms/web/checkpoint": true},
		},
		{
			name: "VM gone while the daemon was down", desired: spec.Running,
			leave: func(h *harness) { h.rt.set("web", vmruntime.StateStopped, "") },
			phase: spec.PhaseFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := bring(h, spec.Running, false)
			tt.leave(h)
			h.write(manifest{name: "web", desired: tt.desired})
			h.rt.takeCalls()

			h.restart()
			h.rt.adopted = []string{"web"}
			if _, err := h.r.Adopt(t.Context()); err != nil {
				t.Fatal(err)
			}
			h.mustReconcile("web")
			if calls := h.rt.takeCalls(); !slices.Equal(calls, tt.calls) {
				t.Errorf("calls = %q, want %q", calls, tt.calls)
			}
			if got := h.status(path).Phase; got != tt.phase {
				t.Errorf("phase = %s, want %s", got, tt.phase)
			}
			if got := len(h.trashEntries()); got != tt.trash {
				t.Errorf("trash entries = %d, want %d", got, tt.trash)
			}
			for rel, want := range tt.files {
				if got := h.exists(rel); got != want {
					t.Errorf("%s exists = %v, want %v", rel, got, want)
				}
			}
		})
	}
}

// suspendAndPause suspends web and then brings back a paused process, as
// a daemon killed between a suspend's rename and its kill leaves it.
func suspendAndPause(h *harness) {
	h.t.Helper()
	h.write(manifest{name: "web", desired: spec.Suspended})
	h.mustReconcile("web")
	h.rt.set("web", vmruntime.StatePaused, "")
}

func writeState(h *harness, rel string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.state, rel), []byte("partial"), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func TestTrashRetention(t *testing.T) {
	h := newHarness(t)
	bring(h, spec.Suspended, false)
	h.write(manifest{name: "web", desired: spec.Stopped})
	h.mustReconcile("web")
	entries := h.trashEntries()
	if len(entries) != 1 {
		t.Fatalf("trash entries = %q, want one", entries)
	}
	entry := filepath.Join(h.state, "trash", entries[0])
	for _, f := range []string{"checkpoint", "checkpoint.json"} {
		if _, err := os.Stat(filepath.Join(entry, f)); err != nil {
			t.Errorf("trash entry lacks %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(entry); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("trash entry mode: %v %v", fi.Mode().Perm(), err)
	}

	h.clock.Step(DefaultTrashRetention - time.Minute)
	if err := h.r.PurgeTrash(); err != nil {
		t.Fatal(err)
	}
	if got := len(h.trashEntries()); got != 1 {
		t.Fatalf("entry purged %v before the retention window passed", DefaultTrashRetention-time.Minute)
	}
	h.clock.Step(2 * time.Minute)
	if err := h.r.PurgeTrash(); err != nil {
		t.Fatal(err)
	}
	if got := len(h.trashEntries()); got != 0 {
		t.Errorf("entry kept after the retention window")
	}
}

func TestStatusInStateFolder(t *testing.T) {
	tests := []struct {
		name     string
		mode     StatusMode
		readOnly bool
	}{
		{name: "state mode", mode: StatusState},
		{name: "read-only manifest", mode: StatusInline, readOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mode = tt.mode
			h.restart()
			path := h.write(manifest{name: "web", desired: spec.Running})
			if tt.readOnly {
				if err := os.Chmod(path, 0o444); err != nil {
					t.Fatal(err)
				}
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			h.cat.Update(path)
			h.mustReconcile("web")

			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Error("the manifest was written")
			}
			stPath := filepath.Join(h.state, "vms/web/status.yaml")
			st, err := spec.ReadStatusFile(stPath)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != spec.PhaseRunning {
				t.Errorf("phase = %s, want Running", st.Phase)
			}
			fi, err := os.Stat(stPath)
			if err != nil {
				t.Fatal(err)
			}
			h.mustReconcile("web")
			h.restart()
			h.mustReconcile("web")
			fi2, err := os.Stat(stPath)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(fi, fi2) || !fi.ModTime().Equal(fi2.ModTime()) {
				t.Error("an unchanged status was written again")
			}
		})
	}
}

func TestHungSaveIsBounded(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)
	h.r.cfg.SaveTimeout = 50 * time.Millisecond
	h.rt.hangNext("Save", "web")
	h.write(manifest{name: "web", desired: spec.Suspended})

	_, err := h.reconcile("web")
	if Reason(err) != "Timeout" {
		t.Fatalf("error %v, reason %q, want a timeout", err, Reason(err))
	}
	if h.lock.isHeld() {
		t.Error("the host lock is still held after the bound")
	}
	want := []string{"Quiesce web", "Pause web", "Save web", "Resume web", "Thaw web"}
	if calls := h.rt.takeCalls(); !slices.Equal(calls, want) {
		t.Errorf("calls = %q, want %q", calls, want)
	}
	if got := h.rt.stateOf("web"); got != vmruntime.StateRunning {
		t.Errorf("VM is %s after the hung save, want Running", got)
	}
	if got := condition(h.status(path), "Ready"); got != "True/SuspendFailed" {
		t.Errorf("Ready = %s", got)
	}
}

func TestAdoptListsRunningAndSuspended(t *testing.T) {
	h := newHarness(t)
	for _, m := range []manifest{
		{name: "run", desired: spec.Running},
		{name: "sus", desired: spec.Suspended},
		{name: "off", desired: spec.Running},
	} {
		h.write(m)
		h.mustReconcile(m.name)
	}
	h.write(manifest{name: "off", desired: spec.Stopped})
	h.mustReconcile("off")

	h.restart()
	h.rt.adopted = []string{"run"}
	keys, err := h.r.Adopt(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"run", "sus"}; !slices.Equal(keys, want) {
		t.Errorf("adopt = %q, want %q", keys, want)
	}
}

func TestSlowTransitionShowsPhase(t *testing.T) {
	tests := []struct {
		name     string
		observed spec.DesiredState
		desired  spec.DesiredState
		op       string
		between  spec.Phase
		final    spec.Phase
	}{
		{name: "boot", observed: spec.Stopped, desired: spec.Running, op: "Boot", between: spec.PhaseStarting, final: spec.PhaseRunning},
		{name: "suspend", observed: spec.Running, desired: spec.Suspended, op: "Save", between: spec.PhaseSuspending, final: spec.PhaseSuspended},
		{name: "resume", observed: spec.Suspended, desired: spec.Running, op: "Restore", between: spec.PhaseResuming, final: spec.PhaseRunning},
		{name: "stop", observed: spec.Running, desired: spec.Stopped, op: "Stop", between: spec.PhaseStopping, final: spec.PhaseStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := bring(h, tt.observed, false)
			h.write(manifest{name: "web", desired: tt.desired})
			gate := h.rt.gateNext(tt.op, "web")

			done := make(chan error, 1)
			go func() {
				_, err := h.r.Reconcile(t.Context(), "web")
				done <- err
			}()
			waitFor(t, h.clock.HasWaiters)
			h.clock.Step(progressDelay)
			waitFor(t, func() bool { return phaseIn(path) == tt.between })
			if got := condition(h.status(path), "Ready"); got != "False/"+string(tt.between) {
				t.Errorf("Ready while in between = %s", got)
			}

			close(gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := h.status(path).Phase; got != tt.final {
				t.Errorf("final phase = %s, want %s", got, tt.final)
			}
			h.rt.takeCalls()
			checkIdle(t, h, path)
		})
	}
}

func TestProgressTimerStopped(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if h.clock.HasWaiters() {
		t.Error("the in-between timer outlived the transition")
	}
	if got := h.status(path).Phase; got != spec.PhaseRunning {
		t.Errorf("phase = %s, want Running", got)
	}
}

// phaseIn returns the phase in the manifest at path, or "" when it cannot
// be read.
func phaseIn(path string) spec.Phase {
	m, err := spec.Load(path)
	if err != nil || m.Status == nil {
		return ""
	}
	return m.Status.Phase
}

// waitFor polls cond until it holds. The bound only stops a broken test
// from hanging; a passing one waits milliseconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition did not hold within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStatusWriteRacingAnEdit(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running})
	gate := h.rt.gateNext("Boot", "web")
	done := make(chan Result, 1)
	go func() {
		res, err := h.r.Reconcile(t.Context(), "web")
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, func() bool { return slices.Contains(h.rt.callsSoFar(), "Boot web") })

	// The user replaces the file while the boot runs.
	edited := manifest{name: "web", desired: spec.Running, extra: "  cmdline: quiet\n"}.text()
	tmp := filepath.Join(h.dir, ".web.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	close(gate)

	res := <-done
	if res.RequeueAfter <= 0 {
		t.Errorf("requeue after = %v, want a retry after the conflict", res.RequeueAfter)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != edited {
		t.Fatalf("the user's edit was overwritten:\n%s", got)
	}

	h.mustReconcile("web")
	m, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.VM.Spec.Cmdline != "quiet" || m.Status == nil || m.Status.ObservedSpecHash != m.VM.SpecHash() {
		t.Errorf("after the retry: cmdline %q, status %+v", m.VM.Spec.Cmdline, m.Status)
	}
}

func TestRecordWrittenInPlace(t *testing.T) {
	h := newHarness(t)
	bring(h, spec.Running, false)
	long := &record{SpecHash: strings.Repeat("x", 4000), Started: true}
	if err := h.r.writeRecord("web", long); err != nil {
		t.Fatal(err)
	}
	short := &record{SpecHash: "short", Started: false}
	if err := h.r.writeRecord("web", short); err != nil {
		t.Fatal(err)
	}
	got, err := h.r.readRecord("web")
	if err != nil || got == nil || got.SpecHash != "short" || got.Started {
		t.Errorf("record after a shorter rewrite = %+v, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(h.state, "vms/web/machine.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode: %v, %v", fi.Mode().Perm(), err)
	}

	writeState(h, "vms/web/machine.json")
	if got, err := h.r.readRecord("web"); got != nil || err != nil {
		t.Errorf("a damaged record read as %+v, %v; want none", got, err)
	}
}

func TestProgressMessageNamesLastFailure(t *testing.T) {
	failed := &spec.Status{Phase: spec.PhaseFailed, Conditions: []spec.Condition{
		{Type: spec.ConditionReady, Status: spec.ConditionFalse, Reason: "Timeout", Message: "the agent did not answer"},
	}}
	running := &spec.Status{Phase: spec.PhaseRunning}
	tests := []struct {
		name string
		prev *spec.Status
		want string
	}{
		{name: "first attempt", prev: nil, want: progressMessages[spec.PhaseStarting]},
		{name: "after running", prev: running, want: progressMessages[spec.PhaseStarting]},
		{name: "retry after failure", prev: failed,
			want: progressMessages[spec.PhaseStarting] + "; retrying after the last attempt failed: the agent did not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressMessage(tt.prev, spec.PhaseStarting); got != tt.want {
				t.Errorf("progressMessage = %q, want %q", got, tt.want)
			}
		})
	}
}
