package vz

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// realHelperMain runs the test binary as the real VZ helper; the darwin
// tests set it.
var realHelperMain func() int

func TestMain(m *testing.M) {
	if os.Getenv(envFakeHelper) != "" {
		os.Exit(fakeHelperMain())
	}
	if os.Getenv(envRealHelper) != "" && realHelperMain != nil {
		os.Exit(realHelperMain())
	}
	os.Exit(m.Run())
}

// testRuntimeID is the host the tests pretend to be.
const testRuntimeID = "vz macos=14.5 arch=arm64 host=test-host"

// newTestRuntime returns a Runtime whose helpers are the test binary as a
// fake helper with env added, on a host that can save and restore.
func newTestRuntime(t testing.TB, root string, env ...string) *Runtime {
	t.Helper()
	r, err := New(root, Options{
		Executable:          os.Args[0],
		Env:                 append([]string{envFakeHelper + "=1"}, env...),
		NewAgent:            newFakeAgent,
		AgentAttemptTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.host = host{
		notSuspendable: func() string { return "" },
		runtimeID:      func() string { return testRuntimeID },
	}
	return r
}

// newStateRoot returns a short state folder: t.TempDir's paths can be too
// long for unix sockets.
func newStateRoot(t testing.TB) string {
	t.Helper()
	root, err := os.MkdirTemp("", "vz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// newMachine returns a machine named name under root with an agent, a
// kernel file and a disk the runtime creates.
func newMachine(t testing.TB, root, name string) *vmruntime.Machine {
	t.Helper()
	kernel := filepath.Join(root, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &vmruntime.Machine{
		Name:        name,
		CPUs:        1,
		MemoryMiB:   256,
		Kernel:      kernel,
		Disks:       []vmruntime.Disk{{Path: filepath.Join(root, name+".img"), SizeBytes: 1 << 20, MountPath: "/work"}},
		AgentPort:   5000,
		StopTimeout: 5 * time.Second,
		StateDir:    filepath.Join(root, "vms", name),
	}
}

// boot boots m and kills its helper when the test ends.
func boot(t *testing.T, r *Runtime, m *vmruntime.Machine) {
	t.Helper()
	if err := r.Boot(t.Context(), m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Cleanup(func() { _ = r.Kill(context.Background(), m.Name) })
}

// calls returns what the fake hypervisor of m recorded.
func calls(t *testing.T, m *vmruntime.Machine) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.StateDir, callsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func observe(t *testing.T, r *Runtime, name string) vmruntime.Observation {
	t.Helper()
	o, err := r.Observe(t.Context(), name)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return o
}

func TestBootObserveStop(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "builder")
	boot(t, r, m)

	o := observe(t, r, m.Name)
	if o.State != vmruntime.StateRunning || o.PID <= 0 {
		t.Fatalf("Observe after Boot = %+v, want Running with a pid", o)
	}
	if st, err := os.Stat(m.Disks[0].Path); err != nil || st.Size() != 1<<20 {
		t.Errorf("disk not created sparse at its size: %v", err)
	}
	if err := r.Stop(t.Context(), m); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if o := observe(t, r, m.Name); o.State != vmruntime.StateStopped || o.Exit != "" {
		t.Errorf("Observe after Stop = %+v, want Stopped without an exit reason", o)
	}
	if got := calls(t, m); !slices.Contains(got, "request-stop") || slices.Contains(got, "stop") {
		t.Errorf("calls = %v, want request-stop and no forced stop", got)
	}
}

func TestStopForcesWhenGuestIgnores(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root, envIgnoreStop+"=1")
	m := newMachine(t, root, "stubborn")
	m.StopTimeout = 100 * time.Millisecond
	boot(t, r, m)

	if err := r.Stop(t.Context(), m); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := calls(t, m); !slices.Contains(got, "stop") {
		t.Errorf("calls = %v, want a forced stop after the timeout", got)
	}
	if o := observe(t, r, m.Name); o.State != vmruntime.StateStopped {
		t.Errorf("Observe after Stop = %+v, want Stopped", o)
	}
}

func TestCrashReportsExit(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "crashy")
	boot(t, r, m)

	pid := observe(t, r, m.Name).PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var o vmruntime.Observation
	stopped := waitFor(t.Context(), func() bool {
		o = observe(t, r, m.Name)
		return o.State == vmruntime.StateStopped
	})
	if !stopped {
		t.Fatal("helper killed with SIGKILL is still observed running")
	}
	if !strings.Contains(o.Exit, "killed") {
		t.Errorf("Exit = %q, want the kill signal", o.Exit)
	}
}

func TestGuestPowerOffReportsExit(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "poweroff")
	boot(t, r, m)
	connect(t, r, m)

	agent, err := r.Agent(m.Name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	if err := agent.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var o vmruntime.Observation
	waitFor(t.Context(), func() bool {
		o = observe(t, r, m.Name)
		return o.State == vmruntime.StateStopped
	})
	if o.Exit != "guest powered off" {
		t.Errorf("Observe = %+v, want Stopped with the reason the helper recorded", o)
	}
}

func connect(t *testing.T, r *Runtime, m *vmruntime.Machine) vmruntime.Hello {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	hello, err := r.Connect(ctx, m)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return hello
}

func TestConnectSendsGuestConfig(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "config")
	m.Shares = []vmruntime.Share{{Tag: "work", Path: root, MountPath: "/mnt/work"}}
	boot(t, r, m)

	hello := connect(t, r, m)
	if hello.BootID == "" {
		t.Error("handshake returned no boot id")
	}
	agent, err := r.Agent(m.Name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	cfg := agent.(*fakeAgent).cfg
	if len(cfg.Disks) != 1 || cfg.Disks[0].Serial != "disk0" || cfg.Disks[0].MountPath != "/work" {
		t.Errorf("guest disks = %+v, want disk0 at /work", cfg.Disks)
	}
	if len(cfg.Shares) != 1 || cfg.Shares[0].FSType != "virtiofs" {
		t.Errorf("guest shares = %+v, want one virtiofs share", cfg.Shares)
	}
	if got := calls(t, m); !slices.Contains(got, "dial_5000") {
		t.Errorf("calls = %v, want a vsock dial to port 5000", got)
	}
}

func TestSuspendResumeKeepsBootID(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "warm")
	boot(t, r, m)
	before := connect(t, r, m)

	path := filepath.Join(root, "warm.ckpt")
	info := suspend(t, r, m, path)
	if info.Runtime != testRuntimeID || info.Bytes == 0 {
		t.Errorf("CheckpointInfo = %+v, want this host's runtime and a size", info)
	}
	if st, err := os.Stat(path); err != nil {
		t.Errorf("checkpoint missing after Save: %v", err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode = %v, want 0600", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(root, ".warm.ckpt.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left beside the checkpoint: %v", err)
	}

	if err := r.Restore(t.Context(), m, path, info); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if o := observe(t, r, m.Name); o.State != vmruntime.StatePaused {
		t.Errorf("Observe after Restore = %+v, want Paused", o)
	}
	if err := r.Resume(t.Context(), m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	after := connect(t, r, m)
	if after.BootID != before.BootID {
		t.Errorf("boot id after resume = %q, want %q from before the save", after.BootID, before.BootID)
	}
	if got := calls(t, m); !slices.Contains(got, "restore_"+canonical(t, path)) {
		t.Errorf("calls = %v, want a restore from the canonical checkpoint path", got)
	}
}

func canonical(t *testing.T, path string) string {
	t.Helper()
	c, err := canonicalPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// suspend quiesces, pauses, saves and kills m, as the reconciler does.
func suspend(t *testing.T, r *Runtime, m *vmruntime.Machine, path string) vmruntime.CheckpointInfo {
	t.Helper()
	agent, err := r.Agent(m.Name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	if err := agent.Quiesce(t.Context()); err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	info, err := r.Save(t.Context(), m, path)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := r.Kill(t.Context(), m.Name); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	return info
}

func TestSaveRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      []string
		pause    bool
		existing bool
		want     error
	}{
		{name: "not suspendable", env: []string{envNotSuspendable + "=VZ rejected the serial port"}, pause: true, want: vmruntime.ErrNotSuspendable},
		{name: "checkpoint exists", pause: true, existing: true},
		{name: "not paused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := newStateRoot(t)
			r := newTestRuntime(t, root, tt.env...)
			m := newMachine(t, root, "refused")
			boot(t, r, m)
			path := filepath.Join(root, "refused.ckpt")
			if tt.existing {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.pause {
				if err := r.Pause(t.Context(), m.Name); err != nil {
					t.Fatalf("Pause: %v", err)
				}
			}
			_, err := r.Save(t.Context(), m, path)
			if err == nil {
				t.Fatal("Save succeeded, want a refusal")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Save error = %v, want %v", err, tt.want)
			}
			if got := calls(t, m); slices.Contains(got, "save") {
				t.Errorf("calls = %v, want no save attempted", got)
			}
		})
	}
}

func TestSuspendableReportsReason(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root, envNotSuspendable+"=VZ rejected the configuration")
	m := newMachine(t, root, "nosave")
	boot(t, r, m)

	err := r.Suspendable(m)
	if !errors.Is(err, vmruntime.ErrNotSuspendable) || !strings.Contains(err.Error(), "VZ rejected the configuration") {
		t.Errorf("Suspendable = %v, want ErrNotSuspendable with VZ's reason", err)
	}
	if o := observe(t, r, m.Name); o.State != vmruntime.StateRunning {
		t.Errorf("a machine that cannot be saved must still run, Observe = %+v", o)
	}
}

func TestSuspendableHostRefuses(t *testing.T) {
	t.Parallel()
	r, err := New(newStateRoot(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.host.notSuspendable = func() string { return "save and restore need Apple silicon" }
	m := &vmruntime.Machine{Name: "intel"}
	if err := r.Suspendable(m); !errors.Is(err, vmruntime.ErrNotSuspendable) {
		t.Errorf("Suspendable = %v, want ErrNotSuspendable", err)
	}
	if err := r.CanRestore(vmruntime.CheckpointInfo{Runtime: testRuntimeID}); !errors.Is(err, vmruntime.ErrCheckpointIncompatible) {
		t.Errorf("CanRestore = %v, want ErrCheckpointIncompatible", err)
	}
}

func TestConnectRetriesHalfOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		halfOpen string
		wantErr  bool
	}{
		{name: "first connection half-open", halfOpen: "1"},
		{name: "every connection half-open", halfOpen: "1000", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := newStateRoot(t)
			r := newTestRuntime(t, root, envHalfOpen+"="+tt.halfOpen)
			m := newMachine(t, root, "halfopen")
			boot(t, r, m)

			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			_, err := r.Connect(ctx, m)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Connect error = %v, want error %v", err, tt.wantErr)
			}
			if dials := countPrefix(calls(t, m), "dial_"); dials < 2 {
				t.Errorf("dials = %d, want a retry after the half-open connection", dials)
			}
		})
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func TestAdoptAfterDaemonRestart(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	first := newTestRuntime(t, root)
	m := newMachine(t, root, "survivor")
	boot(t, first, m)
	pid := observe(t, first, m.Name).PID
	writeStalePID(t, filepath.Join(root, "vms", "ghost"))

	second := newTestRuntime(t, root)
	names, err := second.Adopt(t.Context(), root)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if !slices.Equal(names, []string{"survivor"}) {
		t.Fatalf("Adopt = %v, want only the live helper", names)
	}
	if o := observe(t, second, m.Name); o.State != vmruntime.StateRunning || o.PID != pid {
		t.Errorf("adopted Observe = %+v, want Running with pid %d", o, pid)
	}
	if err := second.Kill(t.Context(), m.Name); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if processAlive(pid) && !waitFor(t.Context(), func() bool { return !processAlive(pid) }) {
		t.Error("adopted helper still alive after Kill")
	}
}

// writeStalePID writes a pid file in dir that names a process that ended.
func writeStalePID(t *testing.T, dir string) {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(p.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBootRejectsUnadoptedHelper(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	first := newTestRuntime(t, root)
	m := newMachine(t, root, "owned")
	boot(t, first, m)
	pid := observe(t, first, m.Name).PID

	second := newTestRuntime(t, root)
	if err := second.Boot(t.Context(), m); err == nil {
		_ = second.Kill(t.Context(), m.Name)
		t.Fatal("Boot started a second helper for a machine that already runs")
	}
	if o := observe(t, first, m.Name); o.State != vmruntime.StateRunning || o.PID != pid {
		t.Errorf("first helper after the rejected Boot = %+v, want Running with pid %d", o, pid)
	}
}

func TestStopPausedSkipsTimeout(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "paused")
	m.StopTimeout = time.Hour
	boot(t, r, m)
	if err := r.Pause(t.Context(), m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := r.Stop(ctx, m); err != nil {
		t.Fatalf("Stop of a paused machine: %v", err)
	}
	if got := calls(t, m); !slices.Contains(got, "stop") {
		t.Errorf("calls = %v, want a forced stop once the stop request failed", got)
	}
}
