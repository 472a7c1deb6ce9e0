package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/vmruntime"
)

// newRuntime returns a zero-latency Runtime over a fresh state folder.
func newRuntime(t *testing.T, opts Options) *Runtime {
	t.Helper()
	if opts.StateRoot == "" {
		opts.StateRoot = t.TempDir()
	}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// machine returns a machine with an agent, named name.
func machine(name string) *vmruntime.Machine {
	return &vmruntime.Machine{Name: name, CPUs: 1, MemoryMiB: 64, AgentPort: 5000, MachineHash: "h1"}
}

// observe returns the VM's state.
func observe(t *testing.T, r *Runtime, name string) vmruntime.Observation {
	t.Helper()
	obs, err := r.Observe(t.Context(), name)
	if err != nil {
		t.Fatalf("Observe(%q): %v", name, err)
	}
	return obs
}

// boot boots and connects m.
func boot(t *testing.T, r *Runtime, m *vmruntime.Machine) vmruntime.Hello {
	t.Helper()
	if err := r.Boot(t.Context(), m); err != nil {
		t.Fatalf("Boot(%q): %v", m.Name, err)
	}
	hello, err := r.Connect(t.Context(), m)
	if err != nil {
		t.Fatalf("Connect(%q): %v", m.Name, err)
	}
	return hello
}

// suspend pauses, saves and kills m, and returns the checkpoint's path and
// info.
func suspend(t *testing.T, r *Runtime, m *vmruntime.Machine) (string, vmruntime.CheckpointInfo) {
	t.Helper()
	ctx := t.Context()
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause(%q): %v", m.Name, err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint")
	info, err := r.Save(ctx, m, path)
	if err != nil {
		t.Fatalf("Save(%q): %v", m.Name, err)
	}
	if err := r.Kill(ctx, m.Name); err != nil {
		t.Fatalf("Kill(%q): %v", m.Name, err)
	}
	return path, info
}

// resume restores m from path, resumes and connects it.
func resume(t *testing.T, r *Runtime, m *vmruntime.Machine, path string, info vmruntime.CheckpointInfo) vmruntime.Hello {
	t.Helper()
	ctx := t.Context()
	if err := r.Restore(ctx, m, path, info); err != nil {
		t.Fatalf("Restore(%q): %v", m.Name, err)
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume(%q): %v", m.Name, err)
	}
	hello, err := r.Connect(ctx, m)
	if err != nil {
		t.Fatalf("Connect(%q): %v", m.Name, err)
	}
	return hello
}

// execIn runs argv in the VM's guest.
func execIn(t *testing.T, r *Runtime, name string, argv ...string) vmruntime.ExecResult {
	t.Helper()
	a, err := r.Agent(name)
	if err != nil {
		t.Fatalf("Agent(%q): %v", name, err)
	}
	res, err := a.Exec(t.Context(), argv, nil)
	if err != nil {
		t.Fatalf("Exec(%q, %q): %v", name, argv, err)
	}
	return res
}

func TestUnseenVMIsStopped(t *testing.T) {
	r := newRuntime(t, Options{})
	if got := observe(t, r, "ghost").State; got != vmruntime.StateStopped {
		t.Errorf("state = %s, want Stopped", got)
	}
}

func TestLifecycleStates(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	ctx := t.Context()

	steps := []struct {
		name string
		run  func() error
		want vmruntime.State
	}{
		{"boot", func() error { return r.Boot(ctx, m) }, vmruntime.StateRunning},
		{"pause", func() error { return r.Pause(ctx, m.Name) }, vmruntime.StatePaused},
		{"resume", func() error { return r.Resume(ctx, m.Name) }, vmruntime.StateRunning},
		{"stop", func() error { return r.Stop(ctx, m) }, vmruntime.StateStopped},
		{"stop again", func() error { return r.Stop(ctx, m) }, vmruntime.StateStopped},
		{"boot again", func() error { return r.Boot(ctx, m) }, vmruntime.StateRunning},
		{"kill", func() error { return r.Kill(ctx, m.Name) }, vmruntime.StateStopped},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		obs := observe(t, r, m.Name)
		if obs.State != step.want {
			t.Fatalf("after %s: state = %s, want %s", step.name, obs.State, step.want)
		}
		if running := obs.State != vmruntime.StateStopped; running != (obs.PID > maxLinuxPID) {
			t.Errorf("after %s: pid = %d in state %s", step.name, obs.PID, obs.State)
		}
	}
}

func TestRulesRejectInvalidStates(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *Runtime, m *vmruntime.Machine) error
		op    func(r *Runtime, m *vmruntime.Machine) error
		want  error
	}{
		{
			name:  "save from running",
			setup: func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			op:    saveTo(t),
			want:  ErrInvalidState,
		},
		{
			name:  "save from stopped",
			setup: func(*Runtime, *vmruntime.Machine) error { return nil },
			op:    saveTo(t),
			want:  vmruntime.ErrNotRunning,
		},
		{
			name:  "restore into running",
			setup: func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			op:    restoreFrom(t),
			want:  ErrInvalidState,
		},
		{
			name:  "boot running",
			setup: func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			op:    func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			want:  ErrInvalidState,
		},
		{
			name:  "pause stopped",
			setup: func(*Runtime, *vmruntime.Machine) error { return nil },
			op:    func(r *Runtime, m *vmruntime.Machine) error { return r.Pause(t.Context(), m.Name) },
			want:  vmruntime.ErrNotRunning,
		},
		{
			name:  "resume running",
			setup: func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			op:    func(r *Runtime, m *vmruntime.Machine) error { return r.Resume(t.Context(), m.Name) },
			want:  ErrInvalidState,
		},
		{
			name:  "connect paused",
			setup: bootAndPause(t),
			op: func(r *Runtime, m *vmruntime.Machine) error {
				_, err := r.Connect(t.Context(), m)
				return err
			},
			want: ErrInvalidState,
		},
		{
			name:  "connect without agent port",
			setup: func(r *Runtime, m *vmruntime.Machine) error { return r.Boot(t.Context(), m) },
			op: func(r *Runtime, m *vmruntime.Machine) error {
				m.AgentPort = 0
				_, err := r.Connect(t.Context(), m)
				return err
			},
			want: vmruntime.ErrNoAgent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRuntime(t, Options{})
			m := machine("web")
			if err := tt.setup(r, m); err != nil {
				t.Fatalf("setup: %v", err)
			}
			before := observe(t, r, m.Name)
			err := tt.op(r, m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if after := observe(t, r, m.Name); after != before {
				t.Errorf("observation changed from %+v to %+v", before, after)
			}
		})
	}
}

// saveTo returns an operation that saves the VM to a new file.
func saveTo(t *testing.T) func(r *Runtime, m *vmruntime.Machine) error {
	return func(r *Runtime, m *vmruntime.Machine) error {
		_, err := r.Save(t.Context(), m, filepath.Join(t.TempDir(), "checkpoint"))
		return err
	}
}

// restoreFrom returns an operation that restores the VM from a checkpoint
// of another runtime's VM of the same name.
func restoreFrom(t *testing.T) func(r *Runtime, m *vmruntime.Machine) error {
	return func(r *Runtime, m *vmruntime.Machine) error {
		other := newRuntime(t, Options{})
		boot(t, other, m)
		path, info := suspend(t, other, m)
		return r.Restore(t.Context(), m, path, info)
	}
}

// bootAndPause returns a setup that boots the VM and pauses it.
func bootAndPause(t *testing.T) func(r *Runtime, m *vmruntime.Machine) error {
	return func(r *Runtime, m *vmruntime.Machine) error {
		return errors.Join(r.Boot(t.Context(), m), r.Pause(t.Context(), m.Name))
	}
}

func TestRestoreComesBackPaused(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	boot(t, r, m)
	path, info := suspend(t, r, m)

	if info.Runtime != Version {
		t.Errorf("info.Runtime = %q, want %q", info.Runtime, Version)
	}
	if err := r.Restore(t.Context(), m, path, info); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := observe(t, r, m.Name).State; got != vmruntime.StatePaused {
		t.Errorf("state after restore = %s, want Paused", got)
	}
}

func TestMemorySurvivesSaveRestore(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	first := boot(t, r, m)
	execIn(t, r, m.Name, "set", "color", "blue")
	path, info := suspend(t, r, m)

	second := resume(t, r, m, path, info)
	if second.BootID != first.BootID {
		t.Errorf("boot id after restore = %q, want %q", second.BootID, first.BootID)
	}
	if got := string(execIn(t, r, m.Name, "get", "color").Stdout); got != "blue\n" {
		t.Errorf("get color after restore = %q, want %q", got, "blue\n")
	}
	got := string(execIn(t, r, m.Name, "cat", bootIDPath).Stdout)
	if got != first.BootID+"\n" {
		t.Errorf("boot_id after restore = %q, want %q", got, first.BootID+"\n")
	}
}

func TestMemoryLostOnColdBoot(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	first := boot(t, r, m)
	execIn(t, r, m.Name, "set", "color", "blue")
	if err := r.Stop(t.Context(), m); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	second := boot(t, r, m)
	if second.BootID == first.BootID {
		t.Errorf("boot id %q did not change on a cold boot", second.BootID)
	}
	res := execIn(t, r, m.Name, "get", "color")
	if res.ExitCode != 1 {
		t.Errorf("get color after boot: exit %d, stdout %q; want exit 1", res.ExitCode, res.Stdout)
	}
}

func TestCheckpointFileHeader(t *testing.T) {
	r := newRuntime(t, Options{})
	m := machine("web")
	hello := boot(t, r, m)
	path, info := suspend(t, r, m)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != info.Bytes {
		t.Errorf("info.Bytes = %d, file has %d", info.Bytes, len(data))
	}
	for _, want := range []string{checkpointMagic, `"vm":"web"`, hello.BootID, `"memoryCounter":1`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("checkpoint lacks %q:\n%s", want, data)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestStateSurvivesNewRuntime(t *testing.T) {
	root := t.TempDir()
	first := newRuntime(t, Options{StateRoot: root})
	ctx := t.Context()
	hellos := map[string]vmruntime.Hello{}
	for _, name := range []string{"a", "b", "c", "d"} {
		hellos[name] = boot(t, first, machine(name))
	}
	execIn(t, first, "a", "set", "k", "v")
	if err := first.Pause(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := first.Stop(ctx, machine("c")); err != nil {
		t.Fatal(err)
	}
	if err := first.Inject(Crash("d")); err != nil {
		t.Fatal(err)
	}
	before := map[string]vmruntime.Observation{}
	for _, name := range []string{"a", "b", "c", "d"} {
		before[name] = observe(t, first, name)
	}
	first.Close()

	second := newRuntime(t, Options{StateRoot: root})
	adopted, err := second.Adopt(ctx, root)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if got := strings.Join(adopted, ","); got != "a,b" {
		t.Errorf("adopted %q, want a,b", got)
	}
	for name, want := range before {
		if got := observe(t, second, name); got != want {
			t.Errorf("%s after adoption: %+v, want %+v", name, got, want)
		}
	}
	if _, err := second.Agent("a"); !errors.Is(err, vmruntime.ErrNoAgent) {
		t.Errorf("Agent right after adoption: err = %v, want ErrNoAgent", err)
	}
	if _, err := second.Connect(ctx, machine("a")); err != nil {
		t.Fatalf("Connect after adoption: %v", err)
	}
	if got := string(execIn(t, second, "a", "get", "k").Stdout); got != "v\n" {
		t.Errorf("get k after adoption = %q, want %q", got, "v\n")
	}
	if got := string(execIn(t, second, "a", "cat", bootIDPath).Stdout); got != hellos["a"].BootID+"\n" {
		t.Errorf("boot id after adoption = %q, want %q", got, hellos["a"].BootID+"\n")
	}
}

func TestRemovedFolderRecreated(t *testing.T) {
	root := t.TempDir()
	r := newRuntime(t, Options{StateRoot: root})
	m := machine("web")
	boot(t, r, m)
	if err := os.RemoveAll(filepath.Join(root, "vms", m.Name)); err != nil {
		t.Fatal(err)
	}
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatalf("Pause after the folder was removed: %v", err)
	}

	again := newRuntime(t, Options{StateRoot: root})
	if got := observe(t, again, m.Name).State; got != vmruntime.StatePaused {
		t.Errorf("state read back = %s, want Paused", got)
	}
}
