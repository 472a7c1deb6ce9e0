package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/vmlet/vmlet/vmruntime"
)

// helperEnv selects the helper process mode of the test binary.
const helperEnv = "VMLET_SIM_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// runHelper runs one helper process mode over the state folder and trace
// of the HELPER_ROOT and HELPER_TRACE variables and returns its exit code.
//
//	boot       boots the VM "child" at zero latency
//	boot-held  begins booting "child", prints "begun", and finishes the
//	           boot when a line arrives on stdin
func runHelper(mode string) int {
	clk := testingclock.NewFakeClock(time.Now())
	r, err := New(Options{
		StateRoot: os.Getenv("HELPER_ROOT"), TraceFile: os.Getenv("HELPER_TRACE"),
		Clock: clk, Latency: Latencies{Boot: time.Second},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer r.Close()
	switch mode {
	case "boot":
		r.opts.Latency.Boot = 0
		err = r.Boot(context.Background(), machine("child"))
	case "boot-held":
		err = bootHeld(r, clk)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// bootHeld boots "child", holding the boot in flight until stdin has a line.
func bootHeld(r *Runtime, clk *testingclock.FakeClock) error {
	done := make(chan error, 1)
	go func() { done <- r.Boot(context.Background(), machine("child")) }()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("begun")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	clk.Step(time.Second)
	return <-done
}

// helper returns a command that runs the test binary in a helper mode over
// its own state folder, sharing trace.
func helper(t *testing.T, mode, trace string) (*exec.Cmd, string) {
	t.Helper()
	root := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_ROOT="+root, "HELPER_TRACE="+trace)
	cmd.Stderr = os.Stderr
	return cmd, root
}

// heldRuntime returns a Runtime whose operations each take a second of a
// fake clock, sharing trace.
func heldRuntime(t *testing.T, trace string) (*Runtime, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Now())
	second := time.Second
	r := newRuntime(t, Options{
		TraceFile: trace, Clock: clk,
		Latency: Latencies{second, second, second, second, second, second, second, second},
	})
	return r, clk
}

// waitForWaiters waits until n operations sleep on clk.
func waitForWaiters(t *testing.T, clk *testingclock.FakeClock, n int) {
	t.Helper()
	for clk.Waiters() < n {
		if t.Context().Err() != nil {
			t.Fatalf("%d operations sleep on the clock, want %d", clk.Waiters(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// inFlight starts op in a goroutine, waits until it sleeps on clk, and
// returns the channel its error arrives on once clk is stepped.
func inFlight(t *testing.T, clk *testingclock.FakeClock, op func() error) <-chan error {
	t.Helper()
	waiting := clk.Waiters()
	done := make(chan error, 1)
	go func() { done <- op() }()
	waitForWaiters(t, clk, waiting+1)
	return done
}

// overlaps returns the overlaps recorded in trace.
func overlaps(t *testing.T, trace string) []Overlap {
	t.Helper()
	found, err := Overlaps(trace)
	if err != nil {
		t.Fatalf("Overlaps: %v", err)
	}
	return found
}

// corrupted reports whether the VM was marked corrupted.
func corrupted(t *testing.T, root, name string) bool {
	t.Helper()
	got, err := Corrupted(root, name)
	if err != nil {
		t.Fatalf("Corrupted(%q): %v", name, err)
	}
	return got
}

// hazardCase is a pair of operations on two VMs, each with its setup.
type hazardCase struct {
	name          string
	setupA, setup func(r *Runtime) error
	opA, opB      func(ctx context.Context, r *Runtime) error
}

// hazardCases pairs operations the way a missing serialization would.
func hazardCases(t *testing.T) []hazardCase {
	a, b := machine("a"), machine("b")
	none := func(*Runtime) error { return nil }
	bootA := func(r *Runtime) error { return r.Boot(t.Context(), a) }
	bootB := func(r *Runtime) error { return r.Boot(t.Context(), b) }
	return []hazardCase{
		{
			name: "boot during boot", setupA: none, setup: none,
			opA: func(ctx context.Context, r *Runtime) error { return r.Boot(ctx, a) },
			opB: func(ctx context.Context, r *Runtime) error { return r.Boot(ctx, b) },
		},
		{
			name: "pause during stop", setupA: bootA, setup: bootB,
			opA: func(ctx context.Context, r *Runtime) error { return r.Stop(ctx, a) },
			opB: func(ctx context.Context, r *Runtime) error { return r.Pause(ctx, b.Name) },
		},
		{
			name: "kill during connect", setupA: bootA, setup: bootB,
			opA: func(ctx context.Context, r *Runtime) error { _, err := r.Connect(ctx, a); return err },
			opB: func(ctx context.Context, r *Runtime) error { return r.Kill(ctx, b.Name) },
		},
		{
			name: "save during resume",
			setupA: func(r *Runtime) error {
				return errors.Join(bootA(r), r.Pause(t.Context(), a.Name))
			},
			setup: func(r *Runtime) error {
				return errors.Join(bootB(r), r.Pause(t.Context(), b.Name))
			},
			opA: func(ctx context.Context, r *Runtime) error { return r.Resume(ctx, a.Name) },
			opB: func(ctx context.Context, r *Runtime) error {
				_, err := r.Save(ctx, b, filepath.Join(t.TempDir(), "checkpoint"))
				return err
			},
		},
	}
}

// setUp runs the case's setups at zero latency on r's clock.
func (hc hazardCase) setUp(t *testing.T, r *Runtime) {
	t.Helper()
	latency := r.opts.Latency
	r.opts.Latency = Latencies{}
	defer func() { r.opts.Latency = latency }()
	if err := errors.Join(hc.setupA(r), hc.setup(r)); err != nil {
		t.Fatalf("setup: %v", err)
	}
}

func TestHazardDetectsConcurrentOperations(t *testing.T) {
	for _, hc := range hazardCases(t) {
		t.Run(hc.name, func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "trace")
			r, clk := heldRuntime(t, trace)
			hc.setUp(t, r)

			doneA := inFlight(t, clk, func() error { return hc.opA(t.Context(), r) })
			doneB := inFlight(t, clk, func() error { return hc.opB(t.Context(), r) })
			clk.Step(time.Second)
			// A handshake with a corrupted guest fails, as it should.
			for _, err := range []error{<-doneA, <-doneB} {
				if err != nil && !errors.Is(err, syscall.EIO) {
					t.Fatalf("operation: %v", err)
				}
			}

			found := overlaps(t, trace)
			if len(found) != 1 {
				t.Fatalf("overlaps = %v, want one", found)
			}
			if found[0].InFlight.VM != "a" || found[0].Began.VM != "b" {
				t.Errorf("overlap = %v, want b beginning while a was in flight", found[0])
			}
			for _, name := range []string{"a", "b"} {
				if !corrupted(t, r.opts.StateRoot, name) {
					t.Errorf("%s not marked corrupted", name)
				}
			}
		})
	}
}

func TestHazardQuietWhenSequential(t *testing.T) {
	for _, hc := range hazardCases(t) {
		t.Run(hc.name, func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "trace")
			r, clk := heldRuntime(t, trace)
			hc.setUp(t, r)

			doneA := inFlight(t, clk, func() error { return hc.opA(t.Context(), r) })
			clk.Step(time.Second)
			if err := <-doneA; err != nil {
				t.Fatalf("operation on a: %v", err)
			}
			doneB := inFlight(t, clk, func() error { return hc.opB(t.Context(), r) })
			clk.Step(time.Second)
			if err := <-doneB; err != nil {
				t.Fatalf("operation on b: %v", err)
			}

			if found := overlaps(t, trace); len(found) != 0 {
				t.Errorf("overlaps = %v, want none", found)
			}
			for _, name := range []string{"a", "b"} {
				if corrupted(t, r.opts.StateRoot, name) {
					t.Errorf("%s marked corrupted", name)
				}
			}
		})
	}
}

func TestHazardIgnoresOperationsOnSameVM(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	first, clk := heldRuntime(t, trace)
	// A second Runtime over another state folder has its own VM "a".
	second := newRuntime(t, Options{TraceFile: trace})

	done := inFlight(t, clk, func() error { return first.Boot(t.Context(), machine("a")) })
	// The same VM is busy; the runtime rejects a second operation on it
	// without tracing it.
	if err := first.Kill(t.Context(), "a"); !errors.Is(err, ErrBusy) {
		t.Errorf("Kill during Boot: error = %v, want ErrBusy", err)
	}
	if err := second.Boot(t.Context(), machine("a")); err != nil {
		t.Fatalf("Boot in second runtime: %v", err)
	}
	clk.Step(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Boot: %v", err)
	}

	found := overlaps(t, trace)
	if len(found) != 1 {
		t.Fatalf("overlaps = %v, want one: same name, other state folder", found)
	}
	if found[0].Began.StateRoot != second.opts.StateRoot {
		t.Errorf("overlap began in %q, want %q", found[0].Began.StateRoot, second.opts.StateRoot)
	}
}

func TestCorruptedCheckpointFailsHandshake(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	r, clk := heldRuntime(t, trace)
	a, b := machine("a"), machine("b")
	hazardCase{
		setupA: func(r *Runtime) error {
			return errors.Join(r.Boot(t.Context(), a), r.Pause(t.Context(), a.Name))
		},
		setup: func(*Runtime) error { return nil },
	}.setUp(t, r)

	path := filepath.Join(t.TempDir(), "checkpoint")
	var info vmruntime.CheckpointInfo
	saved := inFlight(t, clk, func() error {
		var err error
		info, err = r.Save(t.Context(), a, path)
		return err
	})
	booted := inFlight(t, clk, func() error { return r.Boot(t.Context(), b) })
	clk.Step(time.Second)
	if err := errors.Join(<-saved, <-booted); err != nil {
		t.Fatalf("operations: %v", err)
	}

	r.opts.Latency = Latencies{}
	if _, err := r.Connect(t.Context(), b); !errors.Is(err, syscall.EIO) {
		t.Errorf("Connect to b: error = %v, want EIO", err)
	}
	if err := r.Kill(t.Context(), a.Name); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(r.Restore(t.Context(), a, path, info), r.Resume(t.Context(), a.Name)); err != nil {
		t.Fatalf("restoring a: %v", err)
	}
	if _, err := r.Connect(t.Context(), a); !errors.Is(err, syscall.EIO) {
		t.Errorf("Connect to restored a: error = %v, want EIO", err)
	}

	// A cold boot brings a healthy guest.
	if err := errors.Join(r.Kill(t.Context(), a.Name), r.Boot(t.Context(), a)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connect(t.Context(), a); err != nil {
		t.Errorf("Connect after cold boot: %v", err)
	}
}

func TestHazardAcrossProcesses(t *testing.T) {
	t.Run("helper begins while parent in flight", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "trace")
		r, clk := heldRuntime(t, trace)
		done := inFlight(t, clk, func() error { return r.Boot(t.Context(), machine("a")) })
		cmd, childRoot := helper(t, "boot", trace)
		if err := cmd.Run(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		clk.Step(time.Second)
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		found := overlaps(t, trace)
		if len(found) != 1 {
			t.Fatalf("overlaps = %v, want one", found)
		}
		if found[0].InFlight.PID != os.Getpid() || found[0].Began.PID != cmd.Process.Pid {
			t.Errorf("overlap = %v, want the helper beginning while this process was in flight", found[0])
		}
		if !corrupted(t, r.opts.StateRoot, "a") || !corrupted(t, childRoot, "child") {
			t.Errorf("corrupted a = %v, child = %v; want both", corrupted(t, r.opts.StateRoot, "a"),
				corrupted(t, childRoot, "child"))
		}
	})

	t.Run("parent begins while helper in flight", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "trace")
		r := newRuntime(t, Options{TraceFile: trace})
		cmd, stdin := startHeld(t, trace)
		if err := r.Boot(t.Context(), machine("a")); err != nil {
			t.Fatal(err)
		}
		finishHeld(t, cmd, stdin)

		found := overlaps(t, trace)
		if len(found) != 1 {
			t.Fatalf("overlaps = %v, want one", found)
		}
		if found[0].InFlight.PID != cmd.Process.Pid || found[0].Began.PID != os.Getpid() {
			t.Errorf("overlap = %v, want this process beginning while the helper was in flight", found[0])
		}
	})

	t.Run("one after another", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "trace")
		r := newRuntime(t, Options{TraceFile: trace})
		cmd, _ := helper(t, "boot", trace)
		if err := cmd.Run(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		if err := r.Boot(t.Context(), machine("a")); err != nil {
			t.Fatal(err)
		}
		if found := overlaps(t, trace); len(found) != 0 {
			t.Errorf("overlaps = %v, want none", found)
		}
	})

	t.Run("helper died in flight", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "trace")
		r := newRuntime(t, Options{TraceFile: trace})
		cmd, _ := startHeld(t, trace)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if err := r.Boot(t.Context(), machine("a")); err != nil {
			t.Fatal(err)
		}
		if found := overlaps(t, trace); len(found) != 0 {
			t.Errorf("overlaps = %v, want none: the helper's boot ended with it", found)
		}
	})
}

// startHeld starts a helper whose boot stays in flight until finishHeld.
func startHeld(t *testing.T, trace string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd, _ := helper(t, "boot-held", trace)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "begun\n" {
		t.Fatalf("helper printed %q, %v; want begun", line, err)
	}
	return cmd, stdin
}

// finishHeld lets a helper's boot finish and waits for it to exit.
func finishHeld(t *testing.T, cmd *exec.Cmd, stdin io.WriteCloser) {
	t.Helper()
	if _, err := io.WriteString(stdin, "\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func TestHazardSurvivesUnfinishedTraceLine(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	// A writer that died mid-record left a line without its newline.
	if err := os.WriteFile(trace, []byte(`{"event":"begin","id":"1-1","operat`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, clk := heldRuntime(t, trace)
	other := newRuntime(t, Options{TraceFile: trace})

	done := inFlight(t, clk, func() error { return r.Boot(t.Context(), machine("a")) })
	if err := other.Boot(t.Context(), machine("b")); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := other.Boot(t.Context(), machine("c")); err != nil {
		t.Fatal(err)
	}

	found := overlaps(t, trace)
	if len(found) != 1 {
		t.Fatalf("overlaps = %v, want one", found)
	}
	if found[0].InFlight.VM != "a" || found[0].Began.VM != "b" {
		t.Errorf("overlap = %v, want b beginning while a was in flight", found[0])
	}
}
