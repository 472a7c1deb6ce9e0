package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// Bounds beyond the manifest's own timeouts.
const (
	// stopMargin is added to a VM's stopTimeout: Stop kills the process when
	// stopTimeout passes, and the kill itself takes a moment.
	stopMargin = 10 * time.Second
	// cleanupTimeout bounds the steps that undo a failed transition (resume
	// and thaw after a failed save, kill after a failed restore). They run
	// after the transition's own deadline, so a transition holds the host
	// lock for at most its bound plus this.
	cleanupTimeout = 30 * time.Second
)

// note is the outcome of a transition that status shows in the Ready
// condition while the VM stays in phase.
type note struct {
	phase   spec.Phase
	reason  string
	message string
}

// hold runs fn under the host lock, with a deadline of bound from the
// moment the lock is taken. Waiting for the lock is bounded by ctx only.
func (r *Reconciler) hold(ctx context.Context, bound time.Duration, fn func(ctx context.Context) error) error {
	if r.cfg.HostLock != nil {
		unlock, err := r.cfg.HostLock.Lock(ctx)
		if err != nil {
			return fmt.Errorf("taking the host lock: %w", err)
		}
		defer unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	return fn(ctx)
}

// cleanupContext returns a context for undoing a failed step: it survives
// the cancellation of ctx but has a bound of its own.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// startBound is the time limit of a cold boot up to the agent's handshake.
func startBound(t *target) time.Duration { return t.readyTimeout }

// boot cold-boots the VM and waits for its agent, under the host lock.
func (r *Reconciler) boot(ctx context.Context, v *vmView, t *target) (*note, error) {
	err := r.hold(ctx, startBound(t), func(ctx context.Context) error {
		return r.bootLocked(ctx, v, t)
	})
	return nil, err
}

// bootLocked records the machine, boots it and connects to its agent. On
// failure it kills the VM and stores the reason in the record.
func (r *Reconciler) bootLocked(ctx context.Context, v *vmView, t *target) error {
	rec := r.startRecord(v, t)
	if err := r.writeRecord(v.name, rec); err != nil {
		return err
	}
	err := r.cfg.Runtime.Boot(ctx, t.machine)
	if err == nil {
		err = r.connect(ctx, t.machine)
	}
	if err != nil {
		return r.failStart(ctx, v.name, rec, err)
	}
	return nil
}

// startRecord returns the record of a VM about to start from t's machine.
// A start after a crash counts as a restart.
func (r *Reconciler) startRecord(v *vmView, t *target) *record {
	rec := &record{}
	if v.rec != nil {
		*rec = *v.rec
	}
	if rec.Failure != nil && rec.Failure.Reason == ReasonCrashed {
		rec.Restarts++
	}
	rec.Machine = *t.machine
	rec.SpecHash = t.specHash
	rec.Manifest = t.m.Path
	rec.Started = true
	rec.StartedAt = r.cfg.Clock.Now()
	rec.Failure = nil
	return rec
}

// connect waits for the agent's handshake and thaws the guest, which a
// resumed guest needs after the quiesce before its save and a booted one
// ignores. A VM without an agent is ready once it runs.
func (r *Reconciler) connect(ctx context.Context, m *vmruntime.Machine) error {
	if m.AgentPort == 0 {
		return nil
	}
	if _, err := r.cfg.Runtime.Connect(ctx, m); err != nil {
		return fmt.Errorf("waiting for the agent of %q: %w", m.Name, err)
	}
	return nil
}

// failStart kills what a failed start left and records the failure.
func (r *Reconciler) failStart(ctx context.Context, name string, rec *record, err error) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if kerr := r.killIfAlive(cctx, name); kerr != nil {
		err = errors.Join(err, kerr)
	}
	rec.Started = false
	rec.Failure = &failure{Reason: startFailureReason(err), Message: err.Error()}
	if werr := r.writeRecord(name, rec); werr != nil {
		err = errors.Join(err, werr)
	}
	return err
}

func startFailureReason(err error) string {
	switch {
	case errors.Is(err, vmruntime.ErrMissingFile):
		return ReasonMissingFile
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonAgentTimeout
	case errors.Is(err, errAgent):
		return ReasonAgentFailed
	}
	return ReasonBootFailed
}

// errAgent marks a failed agent call.
var errAgent = errors.New("agent failed")

// killIfAlive ends the VM process when there is one.
func (r *Reconciler) killIfAlive(ctx context.Context, name string) error {
	obs, err := r.cfg.Runtime.Observe(ctx, name)
	if err != nil || obs.State == vmruntime.StateStopped {
		return err
	}
	return r.cfg.Runtime.Kill(ctx, name)
}

// checkpointer returns the runtime's Checkpointer, or an error wrapping
// ErrNotSuspendable when it has none.
func (r *Reconciler) checkpointer() (vmruntime.Checkpointer, error) {
	cp, ok := r.cfg.Runtime.(vmruntime.Checkpointer)
	if !ok {
		return nil, fmt.Errorf("runtime %q cannot save VMs: %w", r.cfg.Runtime.Name(), vmruntime.ErrNotSuspendable)
	}
	return cp, nil
}

// suspend saves a running VM to its checkpoint and ends its process, under
// the host lock. A failed suspend leaves the VM running and thawed.
func (r *Reconciler) suspend(ctx context.Context, v *vmView, t *target) (*note, error) {
	cp, err := r.checkpointer()
	if err != nil {
		return suspendFailed(err), err
	}
	m := r.runningMachine(v, t)
	err = r.hold(ctx, r.cfg.SaveTimeout, func(ctx context.Context) error {
		return r.suspendLocked(ctx, cp, m)
	})
	if err != nil {
		return suspendFailed(err), err
	}
	return nil, nil
}

// suspendFailed is the note of a failed suspend.
func suspendFailed(err error) *note {
	return &note{phase: spec.PhaseRunning, reason: ReasonSuspendFailed,
		message: "suspend failed, the VM runs on: " + err.Error()}
}

// suspendLocked quiesces, pauses, saves, and kills. Any failure before the
// checkpoint has its final name is undone.
func (r *Reconciler) suspendLocked(ctx context.Context, cp vmruntime.Checkpointer, m *vmruntime.Machine) error {
	name := m.Name
	if err := r.save(ctx, cp, m); err != nil {
		return r.undoSuspend(ctx, m, err)
	}
	if err := r.cfg.Runtime.Kill(ctx, name); err != nil {
		// The checkpoint is durable and the guest paused: the next
		// reconcile kills it as a repair.
		return fmt.Errorf("ending the VM process of %q after its save: %w", name, err)
	}
	return r.markStopped(name)
}

// save runs the steps of a suspend up to the durable, renamed checkpoint.
func (r *Reconciler) save(ctx context.Context, cp vmruntime.Checkpointer, m *vmruntime.Machine) error {
	if err := r.agentCall(ctx, m, vmruntime.Agent.Quiesce); err != nil {
		return fmt.Errorf("quiescing the guest: %w", err)
	}
	if err := r.cfg.Runtime.Pause(ctx, m.Name); err != nil {
		return fmt.Errorf("pausing: %w", err)
	}
	tmp := r.checkpointTempPath(m.Name)
	if err := r.removeTempCheckpoint(m.Name); err != nil {
		return err
	}
	info, err := cp.Save(ctx, m, tmp)
	if err != nil {
		return fmt.Errorf("saving: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("saving: %w", err)
	}
	if err := r.commitCheckpoint(m, info); err != nil {
		return err
	}
	return nil
}

// commitCheckpoint writes the metadata, then gives the checkpoint its final
// name and makes the rename durable.
func (r *Reconciler) commitCheckpoint(m *vmruntime.Machine, info vmruntime.CheckpointInfo) error {
	stamps, err := stampDisks(m.Disks)
	if err != nil {
		return err
	}
	meta := &checkpointMeta{
		Bytes: info.Bytes, SavedAt: r.cfg.Clock.Now().UTC(), MachineHash: m.MachineHash,
		Runtime: info.Runtime, Disks: stamps,
	}
	if err := r.writeCheckpointMeta(m.Name, meta); err != nil {
		return err
	}
	if err := os.Rename(r.checkpointTempPath(m.Name), r.checkpointPath(m.Name)); err != nil {
		return fmt.Errorf("renaming the checkpoint of %q: %w", m.Name, err)
	}
	return syncDir(r.vmDir(m.Name))
}

// undoSuspend removes the temp checkpoint and its metadata, and resumes and
// thaws the guest, so the VM runs on.
func (r *Reconciler) undoSuspend(ctx context.Context, m *vmruntime.Machine, err error) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	errs := []error{fmt.Errorf("suspending %q: %w", m.Name, err)}
	errs = append(errs, r.removeTempCheckpoint(m.Name))
	if rerr := os.Remove(r.checkpointMetaPath(m.Name)); rerr != nil && !os.IsNotExist(rerr) {
		errs = append(errs, rerr)
	}
	errs = append(errs, r.resumePausedLocked(cctx, m))
	return errors.Join(errs...)
}

// resumePausedLocked lets a paused guest run again and thaws it.
func (r *Reconciler) resumePausedLocked(ctx context.Context, m *vmruntime.Machine) error {
	obs, err := r.cfg.Runtime.Observe(ctx, m.Name)
	if err != nil {
		return err
	}
	if obs.State == vmruntime.StatePaused {
		if err := r.cfg.Runtime.Resume(ctx, m.Name); err != nil {
			return fmt.Errorf("resuming %q: %w", m.Name, err)
		}
	}
	err = r.agentCall(ctx, m, vmruntime.Agent.Thaw)
	if errors.Is(err, vmruntime.ErrNoAgent) {
		// NOTE: a VM adopted from an earlier daemon may have no agent
		// connection yet. Its guest then stays frozen until an agent call
		// thaws it; retrying here would loop without end.
		return nil
	}
	if err != nil {
		return fmt.Errorf("thawing %q: %w", m.Name, err)
	}
	return nil
}

// agentCall runs one agent verb on a VM that has an agent.
func (r *Reconciler) agentCall(ctx context.Context, m *vmruntime.Machine, verb func(vmruntime.Agent, context.Context) error) error {
	if m.AgentPort == 0 {
		return nil
	}
	ag, err := r.agentOf(ctx, m)
	if err != nil {
		return fmt.Errorf("%w: %w", errAgent, err)
	}
	if err := verb(ag, ctx); err != nil {
		return fmt.Errorf("%w: %w", errAgent, err)
	}
	return nil
}

// agentOf returns the VM's agent connection. Where the runtime has none,
// as for a VM adopted from an earlier daemon, it connects first: the
// handshake is the one a restored guest gets.
func (r *Reconciler) agentOf(ctx context.Context, m *vmruntime.Machine) (vmruntime.Agent, error) {
	ag, err := r.cfg.Runtime.Agent(m.Name)
	if !errors.Is(err, vmruntime.ErrNoAgent) {
		return ag, err
	}
	if _, err := r.cfg.Runtime.Connect(ctx, m); err != nil {
		return nil, err
	}
	return r.cfg.Runtime.Agent(m.Name)
}

// markStopped records that the VM has no process on purpose.
func (r *Reconciler) markStopped(name string) error {
	rec, err := r.cachedRecord(name)
	if err != nil || rec == nil || !rec.Started {
		return err
	}
	next := *rec
	next.Started = false
	return r.writeRecord(name, &next)
}

// runningMachine returns the machine a running VM was started with, with
// the stop timeout of the current spec where there is one.
func (r *Reconciler) runningMachine(v *vmView, t *target) *vmruntime.Machine {
	m := &vmruntime.Machine{Name: v.name, StateDir: r.vmDir(v.name), StopTimeout: spec.DefaultStopTimeout}
	if v.rec != nil {
		cp := v.rec.Machine
		m = &cp
	}
	if t != nil && t.machine != nil {
		m.StopTimeout = t.machine.StopTimeout
		if m.MachineHash == "" || m.MachineHash == t.machine.MachineHash {
			m = t.machine
		}
	}
	return m
}

// stop shuts the VM down, under the host lock.
func (r *Reconciler) stop(ctx context.Context, v *vmView, t *target) (*note, error) {
	m := r.runningMachine(v, t)
	err := r.hold(ctx, m.StopTimeout+stopMargin, func(ctx context.Context) error {
		if err := r.cfg.Runtime.Stop(ctx, m); err != nil {
			return fmt.Errorf("stopping %q: %w", v.name, err)
		}
		return r.markStopped(v.name)
	})
	return nil, err
}

// prewarm boots a stopped VM, waits for its agent and suspends it, all in
// one hold of the host lock. A failed save leaves the booted VM running.
func (r *Reconciler) prewarm(ctx context.Context, v *vmView, t *target) (*note, error) {
	cp, err := r.checkpointer()
	if err != nil {
		return nil, err
	}
	booted := false
	err = r.hold(ctx, startBound(t)+r.cfg.SaveTimeout, func(ctx context.Context) error {
		if err := r.bootLocked(ctx, v, t); err != nil {
			return err
		}
		booted = true
		return r.suspendLocked(ctx, cp, t.machine)
	})
	if err != nil && booted {
		return suspendFailed(err), err
	}
	return nil, err
}
