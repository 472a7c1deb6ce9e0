package reconcile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/go-logr/logr"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// maxSteps bounds the repairs and the transition of one reconcile.
const maxSteps = 4

// target is the desired state and machine of the manifest that owns a name.
type target struct {
	// m is the manifest that owns the name; nil when none does.
	m *spec.Manifest
	// machine is derived from a valid manifest; nil for an invalid one.
	machine      *vmruntime.Machine
	desired      spec.DesiredState
	specHash     string
	readyTimeout time.Duration
}

// targetFor derives what m asks for, once per parse of m's file: the
// machine and the two hashes cost more than the rest of a reconcile that
// has nothing to do.
func (r *Reconciler) targetFor(name string, m *spec.Manifest) *target {
	r.mu.Lock()
	mm := r.memoLocked(name)
	if m != nil && mm.targetOf == m {
		t := *mm.target
		r.mu.Unlock()
		return &t
	}
	r.mu.Unlock()

	t := r.deriveTarget(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	cached := *t
	mm.target, mm.targetOf = &cached, m
	return t
}

func (r *Reconciler) deriveTarget(m *spec.Manifest) *target {
	t := &target{m: m}
	if m == nil || m.Err != nil || m.VM == nil {
		return t
	}
	t.machine = r.machineFor(m)
	t.desired = m.VM.Spec.DesiredState
	t.specHash = m.VM.SpecHash()
	t.readyTimeout = m.VM.Spec.ReadyTimeoutOrDefault()
	return t
}

// vmView is a VM as found: the runtime's observation and its state folder.
// Its record is shared with the memo and must not be changed.
type vmView struct {
	name string
	obs  vmruntime.Observation
	rec  *record
	meta *checkpointMeta
	temp bool
}

func (r *Reconciler) observe(ctx context.Context, name string) (*vmView, error) {
	obs, err := r.cfg.Runtime.Observe(ctx, name)
	if err != nil {
		return nil, err
	}
	v := &vmView{name: name, obs: obs}
	if v.rec, err = r.cachedRecord(name); err != nil {
		return nil, err
	}
	if v.meta, err = r.readCheckpoint(name); err != nil {
		return nil, err
	}
	_, err = os.Lstat(r.checkpointTempPath(name))
	v.temp = err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return v, nil
}

// situate gathers what decide looks at.
func (r *Reconciler) situate(v *vmView, t *target) situation {
	s := situation{
		Process:        v.obs.State,
		Checkpoint:     v.meta != nil,
		TempCheckpoint: v.temp,
		Manifest:       t.m != nil,
		Valid:          t.machine != nil,
		Desired:        t.desired,
		Record:         v.rec != nil,
	}
	if v.rec != nil {
		s.Started = v.rec.Started
		s.BackoffLeft = r.backoffLeft(v.rec)
	}
	if t.machine != nil {
		_, s.Stale = r.staleness(v.meta, t.machine)
		s.NotSuspendable = r.notSuspendable(t.machine)
		s.AgentLost = r.agentLost(v, t)
	}
	return s
}

// agentLost reports whether v runs with an agent that the runtime holds no
// connection to.
func (r *Reconciler) agentLost(v *vmView, t *target) bool {
	if v.obs.State != vmruntime.StateRunning || r.runningMachine(v, t).AgentPort == 0 {
		return false
	}
	_, err := r.cfg.Runtime.Agent(v.name)
	return errors.Is(err, vmruntime.ErrNoAgent)
}

// backoffLeft returns how long a crashed VM still waits for its restart.
func (r *Reconciler) backoffLeft(rec *record) time.Duration {
	if rec.Failure == nil || rec.Failure.Reason != ReasonCrashed {
		return 0
	}
	return max(rec.NextBootAt.Sub(r.cfg.Clock.Now()), 0)
}

// staleness returns why the checkpoint cannot be restored into m, as a
// reason and a message, or two empty strings when it can.
func (r *Reconciler) staleness(meta *checkpointMeta, m *vmruntime.Machine) (reason, message string) {
	if meta == nil {
		return "", ""
	}
	if meta.MachineHash != m.MachineHash {
		return ReasonMachineChanged, "the machine changed since the save (checkpoint " +
			meta.MachineHash + ", spec " + m.MachineHash + "); revert the spec or set the VM Stopped"
	}
	cp, err := r.checkpointer()
	if err == nil {
		err = cp.CanRestore(vmruntime.CheckpointInfo{Bytes: meta.Bytes, Runtime: meta.Runtime})
	}
	if err != nil {
		return ReasonRuntimeCannot, err.Error()
	}
	if msg := changedDisk(meta.Disks); msg != "" {
		return ReasonDiskChanged, msg
	}
	return "", ""
}

// notSuspendable returns why m cannot be saved, or "".
func (r *Reconciler) notSuspendable(m *vmruntime.Machine) string {
	cp, err := r.checkpointer()
	if err == nil {
		err = cp.Suspendable(m)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// reconcileVM repairs, runs at most one transition and publishes the
// status of the VM called name.
func (r *Reconciler) reconcileVM(ctx context.Context, name string, m *spec.Manifest) (Result, error) {
	log := logr.FromContextOrDiscard(ctx)
	t := r.targetFor(name, m)
	var res Result
	// settled is the last view when no step followed it, so publish can
	// use it instead of observing again.
	var settled *vmView
	for range maxSteps {
		v, err := r.observe(ctx, name)
		if err != nil {
			return Result{}, err
		}
		s := r.situate(v, t)
		a := decide(s)
		if a == actWait {
			res.RequeueAfter = s.BackoffLeft
		}
		if a == actNone || a == actWait {
			settled = v
			break
		}
		if err := r.step(ctx, log, a, s, v, t); err != nil {
			_, perr := r.publish(ctx, log, name, t, nil)
			return Result{}, errors.Join(err, perr)
		}
		if a == actCrashed {
			res.RequeueAfter = r.backoffLeft(r.mustRecord(name))
		}
		if !a.isRepair() {
			break
		}
	}
	pres, err := r.publish(ctx, log, name, t, settled)
	if pres.RequeueAfter > 0 {
		res = pres
	}
	return res, err
}

func (r *Reconciler) mustRecord(name string) *record {
	rec, _ := r.cachedRecord(name)
	if rec == nil {
		return &record{}
	}
	return rec
}

// step runs one action and logs it in one Info line. A failure is returned
// as a *TransitionError for the caller to log once.
func (r *Reconciler) step(ctx context.Context, log logr.Logger, a action, s situation, v *vmView, t *target) error {
	from, to := string(s.state()), string(targetState(a, s))
	log.V(1).Info("Decided", "action", string(a), "desired", string(t.desired))
	start := r.cfg.Clock.Now()
	p := r.startProgress(log, v.name, t, a)
	n, err := r.run(ctx, a, v, t)
	p.finish()
	if !a.isRepair() {
		r.setNote(v.name, n)
	}
	d := r.cfg.Clock.Since(start)
	if err != nil {
		reason := errorReason(err)
		log.Info("Transition", "from", from, "to", to, "duration", d, "result", "failed", "reason", reason)
		return &TransitionError{From: from, To: to, Reason: reason, Err: err}
	}
	log.Info("Transition", "from", from, "to", to, "duration", d, "result", "ok")
	return nil
}

// run dispatches an action to its transition.
func (r *Reconciler) run(ctx context.Context, a action, v *vmView, t *target) (*note, error) {
	type transition func(context.Context, *vmView, *target) (*note, error)
	table := map[action]transition{
		actRemoveTemp:    r.repairTemp,
		actResumePaused:  r.repairPaused,
		actKillPaused:    r.repairKill,
		actTrashConsumed: r.repairConsumed,
		actBoot:          r.boot,
		actRestore:       r.restore,
		actSuspend:       r.suspend,
		actPrewarm:       r.prewarm,
		actStop:          r.stop,
		actDiscard:       r.discard,
		actCrashed:       r.markCrashed,
		actForget:        r.forgetStarted,
		actRemoved:       r.stopRemoved,
		actCleanRec:      r.forgetRemoved,
		actReconnect:     r.reconnect,
	}
	return table[a](ctx, v, t)
}

// targetState names where an action takes the VM, for the log.
func targetState(a action, s situation) string {
	switch a {
	case actBoot, actRestore, actResumePaused, actTrashConsumed, actReconnect:
		return string(stateRunning)
	case actSuspend, actPrewarm, actKillPaused:
		return string(stateSuspended)
	case actStop, actDiscard, actForget:
		return string(stateStopped)
	case actCrashed:
		return string(spec.PhaseFailed)
	case actRemoved, actCleanRec:
		return "Removed"
	}
	return string(s.state())
}

// TransitionError is a failed transition. Reconcile returns it so that the
// caller logs it once, with its reason.
type TransitionError struct {
	From, To string
	// Reason is a CamelCase word for the kind of failure: MissingFile,
	// Timeout, NotSuspendable, AgentFailed or TransitionFailed.
	Reason string
	Err    error
}

func (e *TransitionError) Error() string {
	return "transition from " + e.From + " to " + e.To + ": " + e.Err.Error()
}

func (e *TransitionError) Unwrap() error { return e.Err }

// Reason returns the reason of a *TransitionError in err's chain, or "" when
// there is none.
func Reason(err error) string {
	var te *TransitionError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

// errorReason classifies a transition error.
func errorReason(err error) string {
	switch {
	case errors.Is(err, vmruntime.ErrMissingFile):
		return ReasonMissingFile
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	case errors.Is(err, vmruntime.ErrNotSuspendable):
		return ReasonNotSuspendable
	case errors.Is(err, errAgent):
		return ReasonAgentFailed
	}
	return "TransitionFailed"
}
