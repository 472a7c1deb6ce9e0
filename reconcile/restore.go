package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// Crash-restart backoff: the first restart waits crashBackoffBase, each
// further one twice as long up to crashBackoffMax. A VM that ran for
// crashResetAfter before it crashed starts the count over.
const (
	crashBackoffBase = time.Second
	crashBackoffMax  = 5 * time.Minute
	crashResetAfter  = 10 * time.Minute
)

// crashBackoff returns how long to wait before the restart after the n-th
// consecutive crash (n >= 1).
func crashBackoff(n int) time.Duration {
	d := crashBackoffBase
	for i := 1; i < n && d < crashBackoffMax; i++ {
		d *= 2
	}
	return min(d, crashBackoffMax)
}

// restore resumes a suspended VM from its checkpoint, under the host lock.
// A failed resume moves the checkpoint to the trash and cold-boots.
func (r *Reconciler) restore(ctx context.Context, v *vmView, t *target) (*note, error) {
	cp, err := r.checkpointer()
	if err != nil {
		return nil, err
	}
	var n *note
	bound := r.cfg.SaveTimeout + 2*startBound(t)
	err = r.hold(ctx, bound, func(ctx context.Context) error {
		rerr := r.restoreLocked(ctx, cp, v, t)
		if rerr == nil {
			return nil
		}
		n = &note{phase: spec.PhaseRunning, reason: ReasonColdBooted,
			message: "resume failed, the checkpoint went to the trash and the VM booted cold: " + rerr.Error()}
		return r.coldBootAfter(ctx, v, t, rerr)
	})
	return n, err
}

// restoreLocked restores, resumes, connects and thaws, then deletes the
// consumed checkpoint. The restore and resume are bounded by SaveTimeout,
// the agent by readyTimeout.
func (r *Reconciler) restoreLocked(ctx context.Context, cp vmruntime.Checkpointer, v *vmView, t *target) error {
	rec := r.startRecord(v, t)
	if err := r.writeRecord(v.name, rec); err != nil {
		return err
	}
	if err := r.restoreAndResume(ctx, cp, v, t.machine); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, startBound(t))
	defer cancel()
	if err := r.connect(actx, t.machine); err != nil {
		return err
	}
	if err := r.agentCall(actx, t.machine, vmruntime.Agent.Thaw); err != nil {
		return fmt.Errorf("thawing %q: %w", v.name, err)
	}
	return r.deleteCheckpoint(v.name)
}

func (r *Reconciler) restoreAndResume(ctx context.Context, cp vmruntime.Checkpointer, v *vmView, m *vmruntime.Machine) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SaveTimeout)
	defer cancel()
	info := vmruntime.CheckpointInfo{Bytes: v.meta.Bytes, Runtime: v.meta.Runtime}
	if err := cp.Restore(ctx, m, r.checkpointPath(v.name), info); err != nil {
		return fmt.Errorf("restoring %q: %w", v.name, err)
	}
	if err := r.cfg.Runtime.Resume(ctx, v.name); err != nil {
		return fmt.Errorf("resuming %q: %w", v.name, err)
	}
	return nil
}

// coldBootAfter ends what a failed resume left, moves the checkpoint to
// the trash and boots the VM cold.
func (r *Reconciler) coldBootAfter(ctx context.Context, v *vmView, t *target, cause error) error {
	cctx, cancel := cleanupContext(ctx)
	err := r.killIfAlive(cctx, v.name)
	cancel()
	if err != nil {
		return errors.Join(cause, err)
	}
	if err := r.trashCheckpoint(v.name); err != nil {
		return errors.Join(cause, err)
	}
	fresh := *v
	fresh.rec, err = r.cachedRecord(v.name)
	if err != nil {
		return errors.Join(cause, err)
	}
	return r.bootLocked(ctx, &fresh, t)
}

// discard moves the checkpoint of a suspended VM set Stopped to the trash.
func (r *Reconciler) discard(_ context.Context, v *vmView, _ *target) (*note, error) {
	return nil, r.trashCheckpoint(v.name)
}

// markCrashed records that a VM which should run has no process: Failed
// now, and a restart once the backoff has passed.
func (r *Reconciler) markCrashed(ctx context.Context, v *vmView, _ *target) (*note, error) {
	rec := *v.rec
	now := r.cfg.Clock.Now()
	if now.Sub(rec.StartedAt) >= crashResetAfter {
		rec.Crashes = 0
	}
	rec.Crashes++
	rec.Started = false
	rec.NextBootAt = now.Add(crashBackoff(rec.Crashes))
	msg := v.obs.Exit
	if msg == "" {
		msg = "the VM process ended without a stop"
	}
	rec.Failure = &failure{Reason: ReasonCrashed, Message: msg}
	return nil, r.writeRecord(v.name, &rec)
}

// forgetStarted records that a VM set Stopped has no process any more.
func (r *Reconciler) forgetStarted(_ context.Context, v *vmView, _ *target) (*note, error) {
	return nil, r.markStopped(v.name)
}

// stopRemoved stops the VM of a removed manifest and moves its checkpoint
// to the trash.
func (r *Reconciler) stopRemoved(ctx context.Context, v *vmView, t *target) (*note, error) {
	if v.obs.State != vmruntime.StateStopped {
		if _, err := r.stop(ctx, v, t); err != nil {
			return nil, err
		}
	}
	if v.meta != nil {
		if err := r.trashCheckpoint(v.name); err != nil {
			return nil, err
		}
	}
	return r.forgetRemoved(ctx, v, t)
}

// forgetRemoved deletes the record of a VM whose manifest is gone.
func (r *Reconciler) forgetRemoved(_ context.Context, v *vmView, _ *target) (*note, error) {
	r.forget(v.name)
	return nil, r.removeRecord(v.name)
}

// Repairs.

func (r *Reconciler) repairTemp(_ context.Context, v *vmView, _ *target) (*note, error) {
	return nil, r.removeTempCheckpoint(v.name)
}

func (r *Reconciler) repairPaused(ctx context.Context, v *vmView, t *target) (*note, error) {
	m := r.runningMachine(v, t)
	return nil, r.hold(ctx, cleanupTimeout, func(ctx context.Context) error {
		return r.resumePausedLocked(ctx, m)
	})
}

func (r *Reconciler) repairKill(ctx context.Context, v *vmView, _ *target) (*note, error) {
	err := r.hold(ctx, cleanupTimeout, func(ctx context.Context) error {
		if err := r.cfg.Runtime.Kill(ctx, v.name); err != nil {
			return fmt.Errorf("ending the paused VM %q: %w", v.name, err)
		}
		return r.markStopped(v.name)
	})
	return nil, err
}

func (r *Reconciler) repairConsumed(_ context.Context, v *vmView, _ *target) (*note, error) {
	return nil, r.trashCheckpoint(v.name)
}

// reconnect redoes the agent handshake of a running VM, under the host lock
// because the handshake of a guest restored by an earlier daemon may be the
// first after its restore.
func (r *Reconciler) reconnect(ctx context.Context, v *vmView, t *target) (*note, error) {
	m := r.runningMachine(v, t)
	return nil, r.hold(ctx, t.readyTimeout, func(ctx context.Context) error {
		return r.connect(ctx, m)
	})
}
