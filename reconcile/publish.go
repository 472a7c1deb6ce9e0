package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// statusFile is the file in a VM's state folder that holds its status
// where the manifest cannot, or in StatusState mode.
const statusFile = "status.yaml"

// conflictRequeue is the delay before a VM is reconciled again after its
// status write lost a race with a user's edit.
const conflictRequeue = 100 * time.Millisecond

// publish writes the VM's status where it changed, from v, or from a new
// observation when v is nil. A removed manifest has no status to write.
func (r *Reconciler) publish(ctx context.Context, log logr.Logger, name string, t *target, v *vmView) (Result, error) {
	if t.m == nil {
		return Result{}, nil
	}
	r.logInvalid(log, name, t.m)
	if v == nil {
		var err error
		if v, err = r.observe(ctx, name); err != nil {
			return Result{}, err
		}
	}
	build := func(prev *spec.Status) *spec.Status { return r.statusFor(v, t, prev) }
	return r.writeStatus(log, name, t.m, build)
}

// logInvalid logs a manifest's error once, until the error changes.
func (r *Reconciler) logInvalid(log logr.Logger, name string, m *spec.Manifest) {
	msg := ""
	if m.Err != nil {
		msg = m.FirstError()
	}
	r.mu.Lock()
	mm := r.memoLocked(name)
	changed := mm.logged != msg
	mm.logged = msg
	r.mu.Unlock()
	if changed && msg != "" {
		log.Error(m.Err, "Invalid manifest; the VM stays on its last valid spec", "reason", ReasonInvalidSpec, "path", m.Path)
	}
}

// writeStatus writes the status that build returns into the manifest. It
// writes into the VM's state folder instead in StatusState mode, for a
// manifest that is not well-formed YAML, and where the manifest cannot be
// written. It writes nothing where the status is unchanged.
func (r *Reconciler) writeStatus(log logr.Logger, name string, m *spec.Manifest, build func(*spec.Status) *spec.Status) (Result, error) {
	if r.cfg.StatusMode == StatusInline && m.WellFormed {
		st := build(m.Status)
		if statusEqual(m.Status, st) {
			return Result{}, nil
		}
		err := spec.WriteStatus(m.Path, m.Data, st)
		switch {
		case err == nil:
			log.V(1).Info("Wrote status", "phase", string(st.Phase), "path", m.Path)
			return Result{}, nil
		case errors.Is(err, spec.ErrConflict):
			log.V(1).Info("Status write raced an edit; queued again", "path", m.Path)
			return Result{RequeueAfter: conflictRequeue}, nil
		case !errors.Is(err, spec.ErrNotWritable):
			// Some statuses cannot go into some files (one that would pass
			// the size limit, an anchor in the old status that the rest of
			// the file refers to). Retrying cannot change that, so the
			// status goes to the state folder, where vmlet get finds it.
			log.V(1).Info("Status not written into the manifest; writing it to the state folder",
				"path", m.Path, "reason", err.Error())
		}
	}
	return Result{}, r.writeStateStatus(log, name, build)
}

// writeStateStatus writes <state>/vms/<name>/status.yaml where it changed.
func (r *Reconciler) writeStateStatus(log logr.Logger, name string, build func(*spec.Status) *spec.Status) error {
	prev, err := r.stateStatus(name)
	if err != nil {
		return err
	}
	st := build(prev)
	if statusEqual(prev, st) {
		return nil
	}
	if err := ensureDir(r.vmDir(name)); err != nil {
		return err
	}
	path := filepath.Join(r.vmDir(name), statusFile)
	if err := spec.WriteStatusFile(path, st); err != nil {
		return fmt.Errorf("writing the status of %q: %w", name, err)
	}
	log.V(1).Info("Wrote status", "phase", string(st.Phase), "path", path)
	r.mu.Lock()
	defer r.mu.Unlock()
	mm := r.memoLocked(name)
	mm.stateStatus, mm.stateLoaded = st, true
	return nil
}

// stateStatus returns the status in the VM's status.yaml, read once.
func (r *Reconciler) stateStatus(name string) (*spec.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mm := r.memoLocked(name)
	if mm.stateLoaded {
		return mm.stateStatus, nil
	}
	st, err := spec.ReadStatusFile(filepath.Join(r.vmDir(name), statusFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the status of %q: %w", name, err)
	}
	mm.stateStatus, mm.stateLoaded = st, true
	return st, nil
}

// statusFor derives the status of a VM from what was found.
func (r *Reconciler) statusFor(v *vmView, t *target, prev *spec.Status) *spec.Status {
	machine := t.machine
	if machine == nil && v.rec != nil {
		machine = &v.rec.Machine
	}
	phase, ready := r.phaseAndReady(v, t)
	conds := map[string]cond{
		spec.ConditionReady:           ready,
		spec.ConditionValid:           validCondition(t.m),
		spec.ConditionSuspendable:     r.suspendableCondition(machine),
		spec.ConditionRestartRequired: restartCondition(v, t),
		spec.ConditionCheckpointStale: r.staleCondition(v, machine),
	}
	st := buildStatus(prev, r.cfg.Clock.Now(), phase, conds)
	st.ObservedSpecHash = t.specHash
	if t.machine == nil && prev != nil {
		st.ObservedSpecHash = prev.ObservedSpecHash
	}
	st.Checkpoint = v.meta.status()
	if v.rec != nil {
		st.Restarts = v.rec.Restarts
	}
	return st
}

// phaseAndReady returns the phase and the Ready condition.
func (r *Reconciler) phaseAndReady(v *vmView, t *target) (spec.Phase, cond) {
	switch {
	case v.obs.State == vmruntime.StateRunning:
		return spec.PhaseRunning, r.runningReady(v, t)
	case v.obs.State == vmruntime.StatePaused:
		return spec.PhaseRunning, condFalse(ReasonPaused, "the guest is paused")
	case v.meta != nil:
		return spec.PhaseSuspended, condFalse(ReasonSuspended, "the memory is saved to a checkpoint and the VM process is gone")
	}
	if f := failureOf(v, t); f != nil {
		return spec.PhaseFailed, condFalse(f.Reason, f.Message)
	}
	return spec.PhaseStopped, condFalse(ReasonStopped, "the VM is stopped")
}

func (r *Reconciler) runningReady(v *vmView, t *target) cond {
	if n := r.noteOf(v.name); n != nil && n.phase == spec.PhaseRunning {
		return condTrue(n.reason, n.message)
	}
	m := t.machine
	if v.rec != nil {
		m = &v.rec.Machine
	}
	if m != nil && m.AgentPort == 0 {
		return condTrue(ReasonRunning, "the VM runs; it has no agent")
	}
	if _, err := r.cfg.Runtime.Agent(v.name); errors.Is(err, vmruntime.ErrNoAgent) {
		return condFalse(ReasonAgentDisconnected, "no connection to the guest agent; reconnecting")
	}
	return condTrue(ReasonAgentReady, "guest agent answered the boot handshake")
}

// failureOf returns the failure a stopped VM shows (a failed start or a
// crash) while its desired state is not Stopped.
func failureOf(v *vmView, t *target) *failure {
	if v.rec == nil || t.desired == spec.Stopped {
		return nil
	}
	if v.rec.Started {
		return &failure{Reason: ReasonCrashed, Message: "the VM process ended without a stop"}
	}
	return v.rec.Failure
}

func validCondition(m *spec.Manifest) cond {
	if m.Err != nil {
		return condFalse(ReasonInvalidSpec, m.FirstError())
	}
	return condTrue(ReasonSpecValid, "the spec parsed and validated")
}

func (r *Reconciler) suspendableCondition(m *vmruntime.Machine) cond {
	if m == nil {
		return cond{spec.ConditionUnknown, ReasonUnknown, "no valid spec yet"}
	}
	if msg := r.notSuspendable(m); msg != "" {
		return condFalse(ReasonNotSuspendable, msg)
	}
	return condTrue(ReasonSupported, "the runtime can save this VM")
}

func restartCondition(v *vmView, t *target) cond {
	running := v.obs.State != vmruntime.StateStopped
	if running && t.machine != nil && v.rec != nil && v.rec.Machine.MachineHash != t.machine.MachineHash {
		return condTrue(ReasonMachineChanged, "the spec changed the machine since the VM started (started "+
			v.rec.Machine.MachineHash+", spec "+t.machine.MachineHash+"); stop and start the VM to apply it")
	}
	return condFalse(ReasonMachineCurrent, "")
}

func (r *Reconciler) staleCondition(v *vmView, m *vmruntime.Machine) cond {
	if v.meta == nil {
		return condFalse(ReasonNoCheckpoint, "")
	}
	if m == nil {
		return cond{spec.ConditionUnknown, ReasonUnknown, "no valid spec yet"}
	}
	if reason, msg := r.staleness(v.meta, m); reason != "" {
		return condTrue(reason, msg)
	}
	return condFalse(ReasonCheckpointCurrent, "")
}

// markDuplicates writes Valid=False, reason DuplicateName, into each file
// that claims the name of another.
func (r *Reconciler) markDuplicates(ctx context.Context, name string, e entry) error {
	log := logr.FromContextOrDiscard(ctx)
	var errs []error
	for _, d := range e.Duplicates {
		c := condFalse(ReasonDuplicateName, fmt.Sprintf("name %q belongs to %q", name, filepath.Base(e.Owner.Path)))
		errs = append(errs, r.writeOwnStatus(log, d, c))
	}
	return errors.Join(errs...)
}

// reconcileFile handles a manifest whose name cannot be read. It writes the
// error into the file's status where the file is well-formed YAML.
func (r *Reconciler) reconcileFile(ctx context.Context, path string) (Result, error) {
	m := r.cfg.Catalog.lookup(path).Owner
	if m == nil {
		r.forget(path)
		return Result{}, nil
	}
	log := logr.FromContextOrDiscard(ctx)
	r.logInvalid(log, path, m)
	return Result{}, r.writeOwnStatus(log, m, validCondition(m))
}

// writeOwnStatus writes a status of one Valid condition into a file that
// no VM is acted on for. Such a file has no state folder, so the status
// is written only into the file itself.
func (r *Reconciler) writeOwnStatus(log logr.Logger, m *spec.Manifest, valid cond) error {
	if !m.WellFormed || r.cfg.StatusMode == StatusState {
		return nil
	}
	st := buildStatus(m.Status, r.cfg.Clock.Now(), "", map[string]cond{spec.ConditionValid: valid})
	if m.VM != nil && m.Err == nil {
		st.ObservedSpecHash = m.VM.SpecHash()
	}
	if statusEqual(m.Status, st) {
		return nil
	}
	err := spec.WriteStatus(m.Path, m.Data, st)
	if errors.Is(err, spec.ErrConflict) || errors.Is(err, spec.ErrNotWritable) {
		log.V(1).Info("Status not written", "path", m.Path, "reason", err.Error())
		return nil
	}
	return err
}
