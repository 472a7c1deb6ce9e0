package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/spec"
)

// Exit codes of vmlet wait besides 0 (reached).
const (
	waitTimedOut = 1
	waitUsage    = 2
)

// waitPollInterval is how often vmlet wait reads the status again.
const waitPollInterval = 100 * time.Millisecond

var phases = []spec.Phase{
	spec.PhasePending, spec.PhaseStarting, spec.PhaseRunning, spec.PhaseSuspending,
	spec.PhaseSuspended, spec.PhaseResuming, spec.PhaseStopping, spec.PhaseStopped, spec.PhaseFailed,
}

func newWaitCommand(opts *globalOptions) *cobra.Command {
	var forSpec string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait NAME --for phase=PHASE|condition=TYPE[=STATUS]",
		Short: "Wait until a VM reaches a phase or a condition",
		Long: "Wait until the VM's status, written for the manifest's current spec,\n" +
			"shows the phase or condition (STATUS defaults to True). A Failed phase\n" +
			"on the way is printed but does not end the wait: the daemon restarts\n" +
			"the VM. Exits 0 when reached, 1 on timeout (printing the last phase and\n" +
			"message), 2 for a usage error or a VM that is not in the folder.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if forSpec == "" {
				return &exitError{code: waitUsage, err: errors.New("missing --for (use phase=PHASE or condition=TYPE[=STATUS])")}
			}
			target, err := parseWaitFor(forSpec)
			if err != nil {
				return &exitError{code: waitUsage, err: err}
			}
			if timeout <= 0 {
				return &exitError{code: waitUsage, err: fmt.Errorf("invalid --timeout %s (use a positive duration)", timeout)}
			}
			w := &waiter{dir: opts.dir, stateDir: opts.stateDir, name: args[0], target: target, stderr: cmd.ErrOrStderr()}
			return w.run(cmd.Context(), cmd.OutOrStdout(), timeout)
		},
	}
	cmd.Flags().StringVar(&forSpec, "for", "", "phase=PHASE, or condition=TYPE[=STATUS] with STATUS True, False or Unknown")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: waitUsage, err: err}
	})
	return cmd
}

// usageArgs makes an argument error exit with the usage code.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{code: waitUsage, err: err}
		}
		return nil
	}
}

// waitTarget is the goal of vmlet wait: a phase, or a condition type with
// a status.
type waitTarget struct {
	phase     spec.Phase
	condition string
	status    spec.ConditionStatus
}

func (t waitTarget) String() string {
	if t.phase != "" {
		return "phase " + string(t.phase)
	}
	return fmt.Sprintf("condition %s=%s", t.condition, t.status)
}

// parseWaitFor parses the --for value. Phase and status names match
// without regard to case.
func parseWaitFor(s string) (waitTarget, error) {
	kind, value, _ := strings.Cut(s, "=")
	switch kind {
	case "phase":
		for _, p := range phases {
			if strings.EqualFold(value, string(p)) {
				return waitTarget{phase: p}, nil
			}
		}
		return waitTarget{}, fmt.Errorf("invalid --for %q: unknown phase %q (use one of %v)", s, value, phases)
	case "condition":
		return parseCondition(s, value)
	}
	return waitTarget{}, fmt.Errorf("invalid --for %q (use phase=PHASE or condition=TYPE[=STATUS])", s)
}

func parseCondition(s, value string) (waitTarget, error) {
	condition, status, hasStatus := strings.Cut(value, "=")
	if condition == "" {
		return waitTarget{}, fmt.Errorf("invalid --for %q: missing condition type", s)
	}
	t := waitTarget{condition: condition, status: spec.ConditionTrue}
	if !hasStatus {
		return t, nil
	}
	for _, cs := range []spec.ConditionStatus{spec.ConditionTrue, spec.ConditionFalse, spec.ConditionUnknown} {
		if strings.EqualFold(status, string(cs)) {
			t.status = cs
			return t, nil
		}
	}
	return waitTarget{}, fmt.Errorf("invalid --for %q: status %q is not True, False or Unknown", s, status)
}

// waiter polls one VM's status.
type waiter struct {
	dir, stateDir, name string
	target              waitTarget
	stderr              io.Writer
	path                string // the manifest's file, once found
	lastFailure         string
}

// observation is the result of one poll.
type observation struct {
	phase   spec.Phase
	message string
	current bool // the status was written for the file's current spec
	reached bool
}

func (w *waiter) run(ctx context.Context, stdout io.Writer, timeout time.Duration) error {
	m, err := findManifest(w.dir, w.name)
	if errors.Is(err, errVMNotFound) {
		return &exitError{code: waitUsage, err: err}
	}
	if err != nil {
		return err
	}
	w.path = m.Path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last observation
	for {
		last = w.poll()
		if last.reached {
			fmt.Fprintf(stdout, "virtualmachine/%s %s\n", w.name, w.target)
			return nil
		}
		select {
		case <-ctx.Done():
			return &exitError{code: waitTimedOut, err: w.timeoutError(timeout, last)}
		case <-time.After(waitPollInterval):
		}
	}
}

func (w *waiter) timeoutError(timeout time.Duration, last observation) error {
	phase := string(last.phase)
	if phase == "" {
		phase = "none"
	}
	if !last.current {
		phase += " (status not yet written for the current spec)"
	}
	return fmt.Errorf("timed out after %s waiting for %s of %q: last phase %s: %s",
		timeout, w.target, w.name, phase, last.message)
}

// poll reads the manifest and its status once.
func (w *waiter) poll() observation {
	m := w.load()
	if m == nil {
		return observation{message: "manifest not found"}
	}
	st := m.CurrentStatus(w.stateDir)
	if m.VM == nil {
		return observation{message: m.FirstError()}
	}
	if st == nil {
		return observation{message: "no status yet"}
	}
	obs := observation{phase: st.Phase, message: statusMessage(st)}
	obs.current = st.ObservedSpecHash == m.VM.SpecHash()
	if !obs.current {
		return obs
	}
	w.reportFailure(obs)
	obs.reached = w.target.matches(st)
	return obs
}

// load reads the manifest's file again, and searches the folder again
// when the file no longer holds the VM.
func (w *waiter) load() *spec.Manifest {
	m, err := spec.Load(w.path)
	if err == nil && m.Name == w.name {
		return m
	}
	m, err = findManifest(w.dir, w.name)
	if err != nil {
		return nil
	}
	w.path = m.Path
	return m
}

// reportFailure prints each new message of a Failed phase once.
func (w *waiter) reportFailure(obs observation) {
	if obs.phase != spec.PhaseFailed || obs.message == w.lastFailure {
		return
	}
	w.lastFailure = obs.message
	fmt.Fprintf(w.stderr, "vmlet: %s failed (the daemon restarts it): %s\n", w.name, obs.message)
}

func (t waitTarget) matches(st *spec.Status) bool {
	if t.phase != "" {
		return st.Phase == t.phase
	}
	for _, c := range st.Conditions {
		if c.Type == t.condition {
			return c.Status == t.status
		}
	}
	return false
}

// statusMessage is the message that best explains the status: the Ready
// condition's, else the first condition message there is.
func statusMessage(st *spec.Status) string {
	for _, c := range st.Conditions {
		if c.Type == spec.ConditionReady && c.Message != "" {
			return c.Message
		}
	}
	for _, c := range st.Conditions {
		if c.Message != "" {
			return c.Message
		}
	}
	return ""
}
