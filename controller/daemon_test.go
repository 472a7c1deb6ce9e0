package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

const testManifest = `apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %s
spec:
  desiredState: %s
  cpus: 1
  memory: 64Mi
  kernel: vmlinuz
  agent:
    port: 5000
`

// testDaemon is a daemon run in this process on the sim runtime.
type testDaemon struct {
	opts   Options
	cancel context.CancelFunc
	done   chan error
}

func newTestOptions(t *testing.T, latency sim.Latencies) Options {
	root := t.TempDir()
	return Options{
		Dir:      filepath.Join(root, "manifests"),
		StateDir: filepath.Join(root, "state"),
		HostLock: filepath.Join(root, "host.lock"),
		Resync:   time.Hour, // a test that passes must not need a resync
		NewRuntime: func(stateDir string) (vmruntime.Runtime, error) {
			return sim.New(sim.Options{StateRoot: stateDir, Latency: latency})
		},
	}
}

func startDaemon(t *testing.T, opts Options) *testDaemon {
	t.Helper()
	log := funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{Verbosity: 1})
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), log))
	d := &testDaemon{opts: opts, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- Run(ctx, opts) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop cancels the daemon and returns Run's error.
func (d *testDaemon) stop(t *testing.T) error {
	t.Helper()
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("daemon did not stop")
		return nil
	}
}

// waitStatus waits until read returns a status in phase.
func waitStatus(t *testing.T, what string, phase spec.Phase, read func() (*spec.Status, error)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var last string
	for time.Now().Before(deadline) {
		st, err := read()
		switch {
		case err != nil:
			last = err.Error()
		case st == nil:
			last = "no status"
		case st.Phase == phase:
			return
		default:
			last = "phase " + string(st.Phase)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reached phase %s; last: %s", what, phase, last)
}

func manifestStatus(path string) func() (*spec.Status, error) {
	return func() (*spec.Status, error) {
		m, err := spec.Load(path)
		if err != nil {
			return nil, err
		}
		return m.Status, nil
	}
}

func stateStatus(opts Options, name string) func() (*spec.Status, error) {
	return func() (*spec.Status, error) {
		return spec.ReadStatusFile(filepath.Join(opts.StateDir, "vms", name, "status.yaml"))
	}
}

// writeManifest writes a manifest by renaming a temp file over it, so that
// the daemon never reads it half written.
func writeManifest(t *testing.T, path, name string, desired spec.DesiredState) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	replaceFile(t, path, fmt.Sprintf(testManifest, name, desired))
}

func TestRunSecondDaemonFailsAtOnce(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	first := startDaemon(t, opts)
	writeManifest(t, filepath.Join(opts.Dir, "web.yaml"), "web", spec.Running)
	waitStatus(t, "web", spec.PhaseRunning, manifestStatus(filepath.Join(opts.Dir, "web.yaml")))

	err := Run(t.Context(), opts)
	if !errors.Is(err, ErrStateLocked) {
		t.Fatalf("second Run error = %v, want ErrStateLocked", err)
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), pid) {
		t.Errorf("second Run error = %q, want the holder's pid %s", err, pid)
	}
	if err := first.stop(t); err != nil {
		t.Errorf("first daemon returned %v, want nil", err)
	}
}

func TestRunRejectsDeepStateFolder(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	opts.StateDir = filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	err := Run(t.Context(), opts)
	if !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("Run error = %v, want ErrSocketPathTooLong", err)
	}
	if _, statErr := os.Stat(opts.StateDir); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("Run created the state folder it rejected: %v", statErr)
	}
}

func TestRunRejectsHostLockInMissingFolder(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	opts.HostLock = filepath.Join(t.TempDir(), "missing", "host.lock")
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := Run(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "--host-lock") {
		t.Errorf("Run error = %v, want one naming --host-lock", err)
	}
}

func TestRunReadOnlyManifestStatusInStateFolder(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	path := filepath.Join(opts.Dir, "ro.yaml")
	writeManifest(t, path, "ro", spec.Running)
	must(t, os.Chmod(path, 0o444))
	before, err := os.ReadFile(path)
	must(t, err)

	startDaemon(t, opts)
	waitStatus(t, "status file of ro", spec.PhaseRunning, stateStatus(opts, "ro"))
	after, err := os.ReadFile(path)
	must(t, err)
	if string(after) != string(before) {
		t.Errorf("read-only manifest was rewritten:\n%s", after)
	}
}

// TestRunConfigMapSwap swaps a ConfigMap-style ..data link and expects the
// change reconciled at once: the resync period is an hour.
func TestRunConfigMapSwap(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	dir := opts.Dir
	must(t, os.MkdirAll(dir, 0o755))
	volume(t, dir, "..v1", spec.Running)
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	for _, name := range []string{"a", "b"} {
		must(t, os.Symlink(filepath.Join("..data", name+".yaml"), filepath.Join(dir, name+".yaml")))
	}
	startDaemon(t, opts)
	for _, name := range []string{"a", "b"} {
		waitStatus(t, name, spec.PhaseRunning, stateStatus(opts, name))
	}

	volume(t, dir, "..v2", spec.Stopped)
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	for _, name := range []string{"a", "b"} {
		waitStatus(t, name, spec.PhaseStopped, stateStatus(opts, name))
	}
}

// volume writes read-only manifests a and b into dir/sub, as a ConfigMap
// volume holds them.
func volume(t *testing.T, dir, sub string, desired spec.DesiredState) {
	t.Helper()
	for _, name := range []string{"a", "b"} {
		path := filepath.Join(dir, sub, name+".yaml")
		writeManifest(t, path, name, desired)
		must(t, os.Chmod(path, 0o444))
	}
}

// TestRunShutdownFinishesTransition stops the daemon while a boot is in
// flight: Run returns nil only after the boot ended, and the VM stays up.
func TestRunShutdownFinishesTransition(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{Boot: 300 * time.Millisecond})
	trace := filepath.Join(opts.StateDir, "sim-trace")
	d := startDaemon(t, opts)
	writeManifest(t, filepath.Join(opts.Dir, "slow.yaml"), "slow", spec.Running)
	waitTraceBegins(t, trace)

	if err := d.stop(t); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	rt, err := sim.New(sim.Options{StateRoot: opts.StateDir, TraceFile: filepath.Join(t.TempDir(), "trace")})
	must(t, err)
	defer rt.Close()
	obs, err := rt.Observe(t.Context(), "slow")
	must(t, err)
	if obs.State != vmruntime.StateRunning {
		t.Errorf("VM state after shutdown = %s, want Running (boot finished, VM left up)", obs.State)
	}
}

// waitTraceBegins waits until the sim trace records an operation.
func waitTraceBegins(t *testing.T, trace string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(trace); err == nil && strings.Contains(string(data), `"begin"`) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no operation began")
}

// TestRunAdoptsRunningVMs restarts the daemon: the VM booted by the first
// is adopted by the second, not booted again.
func TestRunAdoptsRunningVMs(t *testing.T) {
	opts := newTestOptions(t, sim.Latencies{})
	path := filepath.Join(opts.Dir, "web.yaml")
	d := startDaemon(t, opts)
	writeManifest(t, path, "web", spec.Running)
	waitStatus(t, "web", spec.PhaseRunning, manifestStatus(path))
	must(t, d.stop(t))
	pid := simPID(t, opts, "web")

	startDaemon(t, opts)
	writeManifest(t, filepath.Join(opts.Dir, "other.yaml"), "other", spec.Running)
	waitStatus(t, "other", spec.PhaseRunning, manifestStatus(filepath.Join(opts.Dir, "other.yaml")))
	if got := simPID(t, opts, "web"); got != pid {
		t.Errorf("web's pid after restart = %d, want %d (adopted, not booted again)", got, pid)
	}
}

func simPID(t *testing.T, opts Options, name string) int {
	t.Helper()
	rt, err := sim.New(sim.Options{StateRoot: opts.StateDir, TraceFile: filepath.Join(t.TempDir(), "trace")})
	must(t, err)
	defer rt.Close()
	obs, err := rt.Observe(t.Context(), name)
	must(t, err)
	return obs.PID
}
