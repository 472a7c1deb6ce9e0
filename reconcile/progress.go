package reconcile

import (
	"errors"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/vmlet/vmlet/spec"
)

// progressDelay is how long a transition runs before its in-between phase
// (Starting, Suspending, Resuming, Stopping) is written to status. A quick
// transition writes only its outcome, so a VM that boots at once costs one
// status write, not two.
const progressDelay = time.Second

// progressPhases maps the slow transitions to their in-between phases.
var progressPhases = map[action]spec.Phase{
	actBoot:    spec.PhaseStarting,
	actPrewarm: spec.PhaseStarting,
	actRestore: spec.PhaseResuming,
	actSuspend: spec.PhaseSuspending,
	actStop:    spec.PhaseStopping,
}

var progressMessages = map[spec.Phase]string{
	spec.PhaseStarting:   "the VM is booting and the agent has not answered yet",
	spec.PhaseResuming:   "the VM is being restored from its checkpoint",
	spec.PhaseSuspending: "the VM is being saved to a checkpoint",
	spec.PhaseStopping:   "the VM is shutting down",
}

// progress writes a transition's in-between phase once the transition has
// run for progressDelay, from a goroutine of its own.
type progress struct {
	r     *Reconciler
	log   logr.Logger
	name  string
	t     *target
	phase spec.Phase
	timer clock.Timer
	stop  chan struct{}
	done  chan struct{}
	// written is the manifest as the in-between write left it; nil when
	// nothing was written into the manifest.
	written *spec.Manifest
}

// startProgress starts the in-between phase's timer for action a, or
// returns nil when a has no such phase.
func (r *Reconciler) startProgress(log logr.Logger, name string, t *target, a action) *progress {
	phase := progressPhases[a]
	if phase == "" || t.m == nil {
		return nil
	}
	p := &progress{
		r: r, log: log, name: name, t: t, phase: phase,
		timer: r.cfg.Clock.NewTimer(progressDelay),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.done)
	defer p.timer.Stop()
	select {
	case <-p.stop:
		return
	case <-p.timer.C():
	}
	p.written = p.r.writeProgress(p.log, p.name, p.t, p.phase)
}

// finish stops the timer, waits for a write in flight, and points the
// target at the manifest as that write left it, so that the final status
// is compared with, and swapped against, what is in the file now.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	if p.written != nil {
		p.t.m = p.written
	}
}

// writeProgress writes the in-between status and returns the manifest as
// the write left it, or nil when it did not write into the manifest. A
// failed write is logged at V(1) only: the outcome's write follows.
func (r *Reconciler) writeProgress(log logr.Logger, name string, t *target, phase spec.Phase) *spec.Manifest {
	m := t.m
	build := func(prev *spec.Status) *spec.Status { return r.progressStatus(prev, t, phase) }
	if r.cfg.StatusMode == StatusInline && m.WellFormed {
		st := build(m.Status)
		out, err := spec.ReplaceStatus(m.Data, st)
		if err == nil {
			err = spec.WriteStatus(m.Path, m.Data, st)
		}
		if err == nil {
			log.V(1).Info("Wrote status", "phase", string(phase), "path", m.Path)
			written := *m
			written.Data, written.Status = out, st
			return &written
		}
		if !errors.Is(err, spec.ErrNotWritable) {
			log.V(1).Info("In-between status not written", "phase", string(phase), "reason", err.Error())
			return nil
		}
	}
	if err := r.writeStateStatus(log, name, build); err != nil {
		log.V(1).Info("In-between status not written", "phase", string(phase), "reason", err.Error())
	}
	return nil
}

// progressStatus is prev with the in-between phase and Ready=False.
func (r *Reconciler) progressStatus(prev *spec.Status, t *target, phase spec.Phase) *spec.Status {
	conds := make(map[string]cond)
	if prev != nil {
		for _, c := range prev.Conditions {
			conds[c.Type] = cond{c.Status, c.Reason, c.Message}
		}
	}
	conds[spec.ConditionReady] = condFalse(string(phase), progressMessage(prev, phase))
	conds[spec.ConditionValid] = validCondition(t.m)
	st := buildStatus(prev, r.cfg.Clock.Now(), phase, conds)
	st.ObservedSpecHash = t.specHash
	if prev != nil {
		st.Checkpoint, st.Restarts = prev.Checkpoint, prev.Restarts
	}
	return st
}

// progressMessage describes the in-between phase and, for a retry after a
// failed attempt, why that attempt failed: otherwise a start that keeps
// failing slowly would show only Starting, and its reason only in the log.
func progressMessage(prev *spec.Status, phase spec.Phase) string {
	message := progressMessages[phase]
	if prev == nil || prev.Phase != spec.PhaseFailed {
		return message
	}
	for _, c := range prev.Conditions {
		if c.Type == spec.ConditionReady && c.Message != "" {
			return message + "; retrying after the last attempt failed: " + c.Message
		}
	}
	return message
}
