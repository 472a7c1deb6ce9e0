package reconcile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// bring puts the VM web into an observed state through the reconciler.
func bring(h *harness, observed spec.DesiredState, disk bool) string {
	h.t.Helper()
	path := h.write(manifest{name: "web", desired: observed, disk: disk})
	h.mustReconcile("web")
	h.rt.takeCalls()
	return path
}

func TestTransitions(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		observed spec.DesiredState
		desired  spec.DesiredState
		cpus     int // a changed machine when > 1
		disk     bool
		fault    func(h *harness)
		wantErr  bool
		calls    []string
		phase    spec.Phase
		conds    map[string]string
		files    map[string]bool // state folder files that must exist or not
		trash    int
	}{
		{
			name: "stopped to running", observed: spec.Stopped, desired: spec.Running,
			calls: []string{"Boot web", "Connect web"},
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/AgentReady", "Valid": "True/SpecValid"},
			files: map[string]bool{"vms/web/machine.json": true},
		},
		{
			name: "stopped to suspended prewarms", observed: spec.Stopped, desired: spec.Suspended,
			calls: []string{"Boot web", "Connect web", "Quiesce web", "Pause web", "Save web", "Kill web"},
			phase: spec.PhaseSuspended,
			conds: map[string]string{"Ready": "False/Suspended", "CheckpointStale": "False/CheckpointCurrent"},
			files: map[string]bool{"vms/web/checkpoint": true, "vms/web/checkpoint.json": true, "vms/web/checkpoint.tmp": false},
		},
		{
			name: "stopped stays stopped", observed: spec.Stopped, desired: spec.Stopped,
			phase: spec.PhaseStopped,
			conds: map[string]string{"Ready": "False/Stopped"},
		},
		{
			name: "running to suspended", observed: spec.Running, desired: spec.Suspended,
			calls: []string{"Quiesce web", "Pause web", "Save web", "Kill web"},
			phase: spec.PhaseSuspended,
			conds: map[string]string{"Ready": "False/Suspended"},
			files: map[string]bool{"vms/web/checkpoint": true, "vms/web/checkpoint.tmp": false},
		},
		{
			name: "running to stopped", observed: spec.Running, desired: spec.Stopped,
			calls: []string{"Stop web"},
			phase: spec.PhaseStopped,
		},
		{
			name: "running with a changed machine keeps running", observed: spec.Running, desired: spec.Running, cpus: 2,
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/AgentReady", "RestartRequired": "True/MachineChanged"},
		},
		{
			name: "running, save fails, stays running", observed: spec.Running, desired: spec.Suspended,
			fault:   func(h *harness) { h.rt.failNext("Save", "web", errBoom) },
			wantErr: true,
			calls:   []string{"Quiesce web", "Pause web", "Save web", "Resume web", "Thaw web"},
			phase:   spec.PhaseRunning,
			conds:   map[string]string{"Ready": "True/SuspendFailed"},
			files:   map[string]bool{"vms/web/checkpoint": false, "vms/web/checkpoint.tmp": false, "vms/web/checkpoint.json": false},
		},
		{
			name: "running, quiesce fails, stays running", observed: spec.Running, desired: spec.Suspended,
			fault:   func(h *harness) { h.rt.failNext("Quiesce", "web", errBoom) },
			wantErr: true,
			calls:   []string{"Quiesce web", "Thaw web"},
			phase:   spec.PhaseRunning,
			conds:   map[string]string{"Ready": "True/SuspendFailed"},
		},
		{
			name: "running, not suspendable, suspend refused", observed: spec.Running, desired: spec.Suspended,
			fault: func(h *harness) { h.rt.notSuspendable = fmt.Errorf("9p share: %w", vmruntime.ErrNotSuspendable) },
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/AgentReady", "Suspendable": "False/NotSuspendable"},
		},
		{
			name: "suspended to running", observed: spec.Suspended, desired: spec.Running,
			calls: []string{"Restore web", "Resume web", "Connect web", "Thaw web"},
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/AgentReady", "CheckpointStale": "False/NoCheckpoint"},
			files: map[string]bool{"vms/web/checkpoint": false, "vms/web/checkpoint.json": false},
		},
		{
			name: "suspended to stopped trashes the checkpoint", observed: spec.Suspended, desired: spec.Stopped,
			phase: spec.PhaseStopped,
			files: map[string]bool{"vms/web/checkpoint": false},
			trash: 1,
		},
		{
			name: "suspended with a changed machine is stale", observed: spec.Suspended, desired: spec.Running, cpus: 2,
			phase: spec.PhaseSuspended,
			conds: map[string]string{"CheckpointStale": "True/MachineChanged"},
			files: map[string]bool{"vms/web/checkpoint": true},
		},
		{
			name: "suspended, runtime cannot restore, stale", observed: spec.Suspended, desired: spec.Running,
			fault: func(h *harness) {
				h.rt.incompatible = fmt.Errorf("old machine type: %w", vmruntime.ErrCheckpointIncompatible)
			},
			phase: spec.PhaseSuspended,
			conds: map[string]string{"CheckpointStale": "True/RuntimeIncompatible"},
			files: map[string]bool{"vms/web/checkpoint": true},
		},
		{
			name: "suspended with a changed disk is stale", observed: spec.Suspended, desired: spec.Running, disk: true,
			fault: func(h *harness) { h.touchDisk(512) },
			phase: spec.PhaseSuspended,
			conds: map[string]string{"CheckpointStale": "True/DiskChanged"},
			files: map[string]bool{"vms/web/checkpoint": true},
		},
		{
			name: "suspended, restore fails, cold boot", observed: spec.Suspended, desired: spec.Running,
			fault: func(h *harness) { h.rt.failNext("Restore", "web", errBoom) },
			calls: []string{"Restore web", "Boot web", "Connect web"},
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/ColdBootedAfterFailedResume"},
			files: map[string]bool{"vms/web/checkpoint": false},
			trash: 1,
		},
		{
			name: "suspended, agent hangs after restore, cold boot", observed: spec.Suspended, desired: spec.Running,
			fault: func(h *harness) { h.rt.hangNext("Connect", "web") },
			calls: []string{"Restore web", "Resume web", "Connect web", "Kill web", "Boot web", "Connect web"},
			phase: spec.PhaseRunning,
			conds: map[string]string{"Ready": "True/ColdBootedAfterFailedResume"},
			trash: 1,
		},
		{
			name: "stopped, boot misses a file, failed", observed: spec.Stopped, desired: spec.Running,
			fault: func(h *harness) {
				h.rt.failNext("Boot", "web", fmt.Errorf("kernel: %w", vmruntime.ErrMissingFile))
			},
			wantErr: true,
			calls:   []string{"Boot web"},
			phase:   spec.PhaseFailed,
			conds:   map[string]string{"Ready": "False/MissingFile"},
		},
		{
			name: "stopped, agent hangs, failed", observed: spec.Stopped, desired: spec.Running,
			fault:   func(h *harness) { h.rt.hangNext("Connect", "web") },
			wantErr: true,
			calls:   []string{"Boot web", "Connect web", "Kill web"},
			phase:   spec.PhaseFailed,
			conds:   map[string]string{"Ready": "False/AgentTimeout"},
		},
		{
			name: "running, process died, failed", observed: spec.Running, desired: spec.Running,
			fault: func(h *harness) { h.rt.set("web", vmruntime.StateStopped, "killed by signal 9") },
			phase: spec.PhaseFailed,
			conds: map[string]string{"Ready": "False/Crashed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			path := bring(h, tt.observed, tt.disk)
			h.write(manifest{name: "web", desired: tt.desired, cpus: tt.cpus, disk: tt.disk})
			if tt.fault != nil {
				tt.fault(h)
			}

			_, err := h.reconcile("web")
			if (err != nil) != tt.wantErr {
				t.Fatalf("reconcile error = %v, want error %v", err, tt.wantErr)
			}
			if calls := h.rt.takeCalls(); !slices.Equal(calls, tt.calls) {
				t.Errorf("calls = %q, want %q", calls, tt.calls)
			}
			st := h.status(path)
			if st.Phase != tt.phase {
				t.Errorf("phase = %s, want %s", st.Phase, tt.phase)
			}
			for typ, want := range tt.conds {
				if got := condition(st, typ); got != want {
					t.Errorf("condition %s = %s, want %s", typ, got, want)
				}
			}
			for rel, want := range tt.files {
				if got := h.exists(rel); got != want {
					t.Errorf("%s exists = %v, want %v", rel, got, want)
				}
			}
			if got := len(h.trashEntries()); got != tt.trash {
				t.Errorf("trash entries = %d, want %d", got, tt.trash)
			}
			if !tt.wantErr {
				checkIdle(t, h, path)
			}
		})
	}
}

// checkIdle reconciles again and checks that nothing happens: no runtime
// call and no write.
func checkIdle(t *testing.T, h *harness, path string) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	h.cat.Update(path)
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("second reconcile made calls %q", calls)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("second reconcile rewrote %s", path)
	}
}

func TestCrashRestartBackoff(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)

	var waits []time.Duration
	for i := range 3 {
		h.rt.set("web", vmruntime.StateStopped, "exit status 1")
		res := h.mustReconcile("web")
		if got := h.status(path).Phase; got != spec.PhaseFailed {
			t.Fatalf("crash %d: phase = %s, want Failed", i+1, got)
		}
		waits = append(waits, res.RequeueAfter)

		early := h.mustReconcile("web")
		if calls := h.rt.takeCalls(); len(calls) > 0 {
			t.Fatalf("crash %d: reconcile inside the backoff made calls %q", i+1, calls)
		}
		if early.RequeueAfter != res.RequeueAfter {
			t.Errorf("crash %d: requeue inside the backoff = %v, want %v", i+1, early.RequeueAfter, res.RequeueAfter)
		}

		h.clock.Step(res.RequeueAfter)
		h.mustReconcile("web")
		if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Boot web", "Connect web"}) {
			t.Fatalf("crash %d: calls after the backoff = %q", i+1, calls)
		}
		st := h.status(path)
		if st.Phase != spec.PhaseRunning || st.Restarts != i+1 {
			t.Errorf("crash %d: phase %s restarts %d, want Running and %d", i+1, st.Phase, st.Restarts, i+1)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	if !slices.Equal(waits, want) {
		t.Errorf("backoffs = %v, want %v", waits, want)
	}
}

func TestCrashWhileSetStoppedIsNotFailed(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)
	h.rt.set("web", vmruntime.StateStopped, "exit status 1")
	h.write(manifest{name: "web", desired: spec.Stopped})

	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("calls = %q, want none", calls)
	}
	if got := h.status(path).Phase; got != spec.PhaseStopped {
		t.Errorf("phase = %s, want Stopped", got)
	}

	h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Boot web", "Connect web"}) {
		t.Errorf("calls after set Running = %q, want an immediate boot", calls)
	}
}

func TestStaleCheckpointClearedBySettingStopped(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Suspended, false)
	h.write(manifest{name: "web", desired: spec.Running, cpus: 2})
	h.mustReconcile("web")
	if got := condition(h.status(path), "CheckpointStale"); got != "True/MachineChanged" {
		t.Fatalf("CheckpointStale = %s, want True/MachineChanged", got)
	}

	h.write(manifest{name: "web", desired: spec.Stopped, cpus: 2})
	h.mustReconcile("web")
	st := h.status(path)
	if got := condition(st, "CheckpointStale"); got != "False/NoCheckpoint" {
		t.Errorf("CheckpointStale after Stopped = %s, want False/NoCheckpoint", got)
	}
	if st.Phase != spec.PhaseStopped {
		t.Errorf("phase = %s, want Stopped", st.Phase)
	}
}

func TestStaleCheckpointClearedByRevert(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Suspended, false)
	h.write(manifest{name: "web", desired: spec.Running, cpus: 2})
	h.mustReconcile("web")
	h.rt.takeCalls()

	h.write(manifest{name: "web", desired: spec.Running})
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Restore web", "Resume web", "Connect web", "Thaw web"}) {
		t.Errorf("calls after the revert = %q", calls)
	}
	if got := condition(h.status(path), "CheckpointStale"); got != "False/NoCheckpoint" {
		t.Errorf("CheckpointStale = %s, want False/NoCheckpoint", got)
	}
}

func TestStatusFields(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Suspended, false)
	st := h.status(path)

	m, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.ObservedSpecHash != m.VM.SpecHash() {
		t.Errorf("observedSpecHash = %q, want %q", st.ObservedSpecHash, m.VM.SpecHash())
	}
	if st.Checkpoint == nil || st.Checkpoint.MachineHash != m.VM.MachineHash() || st.Checkpoint.Runtime != "fake 1" {
		t.Fatalf("checkpoint = %+v, want the machine hash %s and runtime fake 1", st.Checkpoint, m.VM.MachineHash())
	}
	if st.Checkpoint.Bytes != int64(len("memory of web")) {
		t.Errorf("checkpoint bytes = %d", st.Checkpoint.Bytes)
	}
	for _, typ := range conditionTypes {
		if findCondition(st, typ) == nil {
			t.Errorf("condition %s missing", typ)
		}
	}
	fi, err := os.Stat(filepath.Join(h.state, "vms/web/checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Join(h.state, "vms/web"))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("state folder mode = %v, want 0700", di.Mode().Perm())
	}
}

func TestTransitionTimeKeptWhileStatusSame(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)
	first := findCondition(h.status(path), "Ready").LastTransitionTime

	h.clock.Step(time.Hour)
	h.write(manifest{name: "web", desired: spec.Running, cpus: 2})
	h.mustReconcile("web")
	st := h.status(path)
	if got := findCondition(st, "Ready").LastTransitionTime; !got.Equal(first.Time) {
		t.Errorf("Ready lastTransitionTime = %v, want %v kept", got, first)
	}
	if got := findCondition(st, "RestartRequired").LastTransitionTime; !got.Equal(testEpoch.Add(time.Hour)) {
		t.Errorf("RestartRequired lastTransitionTime = %v, want %v", got, testEpoch.Add(time.Hour))
	}
}

func TestMachineDerivation(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Running, disk: true, extra: "  stopTimeout: 7s\n"})
	m, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	mc := h.r.machineFor(m)
	if mc.Kernel != filepath.Join(h.dir, "vmlinuz") || mc.Disks[0].Path != filepath.Join(h.dir, "disk.img") {
		t.Errorf("paths not resolved against the manifest folder: kernel %q disk %q", mc.Kernel, mc.Disks[0].Path)
	}
	if mc.MemoryMiB != 128 || mc.CPUs != 1 || mc.AgentPort != 5000 || mc.StopTimeout != 7*time.Second {
		t.Errorf("machine = %+v", mc)
	}
	if mc.StateDir != filepath.Join(h.state, "vms", "web") || mc.MachineHash != m.VM.MachineHash() {
		t.Errorf("state folder %q, machine hash %q", mc.StateDir, mc.MachineHash)
	}
	if mc.Network != vmruntime.NetworkNone {
		t.Errorf("network = %q, want none", mc.Network)
	}
	mac := macFor("web")
	if mac.String() != mc.MAC.String() || mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Errorf("MAC %s is not a stable, locally administered unicast address", mc.MAC)
	}
	if macFor("web").String() == macFor("db").String() {
		t.Error("two names derive the same MAC")
	}
}
