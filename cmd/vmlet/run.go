package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/controller"
	"github.com/vmlet/vmlet/reconcile"
	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/qemu"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

// runOptions are the flags of vmlet run.
type runOptions struct {
	runtime    string
	resync     time.Duration
	status     string
	verbosity  int
	logFormat  string
	qemuAccel  string
	simLatency string
	simFaults  string
	simTrace   string
}

func newRunCommand(opts *globalOptions) *cobra.Command {
	ro := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: watch the manifest folder and reconcile its VMs",
		Long: "Run the daemon. It watches the manifest folder, drives each VM to its\n" +
			"manifest's desiredState one transition at a time, and writes status back.\n" +
			"SIGINT or SIGTERM stops it; the VMs keep running and the next daemon\n" +
			"adopts them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkSimFlags(cmd, ro); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, opts, ro, cmd.ErrOrStderr())
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&ro.runtime, "runtime", "auto", "backend: auto, sim, qemu or vz (auto is vz on macOS 14+ on Apple silicon, else qemu)")
	flags.DurationVar(&ro.resync, "resync", controller.DefaultResync, "period of full re-reads of the manifest folder")
	flags.StringVar(&ro.status, "status", "inline", "where status goes: inline (into each manifest) or state (into the state folder)")
	flags.IntVarP(&ro.verbosity, "v", "v", 0, "log verbosity: 0 logs transitions and errors, 1 adds events and queue decisions")
	flags.StringVar(&ro.logFormat, "log-format", "text", "log format: text or json")
	flags.StringVar(&ro.qemuAccel, "qemu-accel", "auto", "qemu acceleration: auto, kvm, hvf or tcg")
	flags.StringVar(&ro.simLatency, "sim-latency", os.Getenv("VMLET_SIM_LATENCY"),
		"sim operation latencies, such as boot=200ms,save=500ms (env VMLET_SIM_LATENCY)")
	flags.StringVar(&ro.simFaults, "sim-faults", os.Getenv("VMLET_SIM_FAULTS"),
		"sim faults to inject, such as save-fail=web,hang-agent=ci (env VMLET_SIM_FAULTS)")
	flags.StringVar(&ro.simTrace, "sim-trace", os.Getenv("VMLET_SIM_TRACE"),
		"the sim's hazard trace, shared by every sim daemon that should see the others' overlaps (default <state>/sim-trace; env VMLET_SIM_TRACE)")
	return cmd
}

// checkSimFlags rejects a sim flag given on the command line for another
// runtime, which would otherwise be ignored without a word. The variables
// behind them may stay set in the environment.
func checkSimFlags(cmd *cobra.Command, ro *runOptions) error {
	if ro.runtime == "sim" {
		return nil
	}
	for _, name := range []string{"sim-latency", "sim-faults", "sim-trace"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s applies to --runtime sim only, not %q", name, ro.runtime)
		}
	}
	return nil
}

// runDaemon checks the flags, sets up logging on stderr and runs the
// daemon until ctx ends.
func runDaemon(ctx context.Context, opts *globalOptions, ro *runOptions, stderr io.Writer) error {
	log, err := newLogger(stderr, ro.logFormat, ro.verbosity)
	if err != nil {
		return err
	}
	daemonOpts, err := daemonOptions(opts, ro)
	if err != nil {
		return err
	}
	return controller.Run(logr.NewContext(ctx, log), daemonOpts)
}

// daemonOptions turns the flags into the daemon's options.
func daemonOptions(opts *globalOptions, ro *runOptions) (controller.Options, error) {
	mode, err := statusMode(ro.status)
	if err != nil {
		return controller.Options{}, err
	}
	newRuntime, err := runtimeFactory(ro)
	if err != nil {
		return controller.Options{}, err
	}
	return controller.Options{
		Dir:        opts.dir,
		StateDir:   opts.stateDir,
		HostLock:   opts.hostLock,
		NewRuntime: newRuntime,
		StatusMode: mode,
		Resync:     ro.resync,
	}, nil
}

func statusMode(s string) (reconcile.StatusMode, error) {
	switch s {
	case "inline":
		return reconcile.StatusInline, nil
	case "state":
		return reconcile.StatusState, nil
	}
	return 0, fmt.Errorf("invalid --status %q (use inline or state)", s)
}

// runtimeFactory checks the backend flags now and returns the function
// that builds the backend once the daemon holds the state folder.
func runtimeFactory(ro *runOptions) (func(string) (vmruntime.Runtime, error), error) {
	switch ro.runtime {
	case "sim":
		return simFactory(ro)
	case "qemu":
		return qemuFactory(ro), nil
	case "vz":
		return newVZRuntime, nil
	case "auto":
		if vzPreferred() {
			return newVZRuntime, nil
		}
		return qemuFactory(ro), nil
	}
	return nil, fmt.Errorf("invalid --runtime %q (use auto, sim, qemu or vz)", ro.runtime)
}

func qemuFactory(ro *runOptions) func(string) (vmruntime.Runtime, error) {
	return func(string) (vmruntime.Runtime, error) {
		return qemu.New(qemu.Options{Accel: ro.qemuAccel})
	}
}

func simFactory(ro *runOptions) (func(string) (vmruntime.Runtime, error), error) {
	latency, err := sim.ParseLatencies(ro.simLatency)
	if err != nil {
		return nil, fmt.Errorf("invalid --sim-latency: %w", err)
	}
	faults, err := sim.ParseFaults(ro.simFaults)
	if err != nil {
		return nil, fmt.Errorf("invalid --sim-faults: %w", err)
	}
	return func(stateDir string) (vmruntime.Runtime, error) {
		rt, err := sim.New(sim.Options{StateRoot: stateDir, Latency: latency, TraceFile: ro.simTrace})
		if err != nil {
			return nil, err
		}
		for _, f := range faults {
			if err := rt.Inject(f); err != nil {
				return nil, err
			}
		}
		return rt, nil
	}, nil
}

// newLogger returns a logr.Logger over log/slog writing to w. V(n) maps to
// slog level -n, so verbosity v shows V(0) to V(v).
func newLogger(w io.Writer, format string, verbosity int) (logr.Logger, error) {
	if verbosity < 0 {
		return logr.Logger{}, fmt.Errorf("invalid -v %d (use 0 or more)", verbosity)
	}
	handlerOpts := &slog.HandlerOptions{Level: slog.Level(-verbosity), ReplaceAttr: verbosityLevel}
	switch format {
	case "text":
		return logr.FromSlogHandler(slog.NewTextHandler(w, handlerOpts)), nil
	case "json":
		return logr.FromSlogHandler(slog.NewJSONHandler(w, handlerOpts)), nil
	}
	return logr.Logger{}, fmt.Errorf("invalid --log-format %q (use text or json)", format)
}

// verbosityLevel writes the levels below Info as the logr verbosity they
// come from (V1, V2), where slog would write DEBUG+3, DEBUG+2.
func verbosityLevel(groups []string, a slog.Attr) slog.Attr {
	if a.Key != slog.LevelKey || len(groups) > 0 {
		return a
	}
	level, ok := a.Value.Any().(slog.Level)
	if ok && level < slog.LevelInfo && level > slog.LevelDebug-4 {
		a.Value = slog.StringValue(fmt.Sprintf("V%d", -level))
	}
	return a
}
