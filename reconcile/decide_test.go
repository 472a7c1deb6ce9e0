package reconcile

import (
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

func TestDecide(t *testing.T) {
	const (
		running = vmruntime.StateRunning
		paused  = vmruntime.StatePaused
		stopped = vmruntime.StateStopped
	)
	valid := func(p vmruntime.State, desired spec.DesiredState) situation {
		return situation{Process: p, Manifest: true, Valid: true, Desired: desired, Record: true}
	}
	with := func(s situation, change func(*situation)) situation {
		change(&s)
		return s
	}
	tests := []struct {
		name string
		s    situation
		want action
	}{
		{"stopped to running", valid(stopped, spec.Running), actBoot},
		{"stopped to suspended", valid(stopped, spec.Suspended), actPrewarm},
		{"stopped stays", valid(stopped, spec.Stopped), actNone},
		{"stopped, not suspendable, suspend refused",
			with(valid(stopped, spec.Suspended), func(s *situation) { s.NotSuspendable = "no" }), actNone},
		{"running stays", valid(running, spec.Running), actNone},
		{"running to suspended", valid(running, spec.Suspended), actSuspend},
		{"running, not suspendable",
			with(valid(running, spec.Suspended), func(s *situation) { s.NotSuspendable = "no" }), actNone},
		{"running to stopped", valid(running, spec.Stopped), actStop},
		{"running, agent lost, reconnect",
			with(valid(running, spec.Running), func(s *situation) { s.AgentLost = true }), actReconnect},
		{"agent lost, suspend reconnects itself",
			with(valid(running, spec.Suspended), func(s *situation) { s.AgentLost = true }), actSuspend},
		{"suspended to running",
			with(valid(stopped, spec.Running), func(s *situation) { s.Checkpoint = true }), actRestore},
		{"suspended, stale",
			with(valid(stopped, spec.Running), func(s *situation) { s.Checkpoint, s.Stale = true, "x" }), actNone},
		{"suspended stays",
			with(valid(stopped, spec.Suspended), func(s *situation) { s.Checkpoint = true }), actNone},
		{"suspended to stopped",
			with(valid(stopped, spec.Stopped), func(s *situation) { s.Checkpoint = true }), actDiscard},
		{"suspended and stale to stopped",
			with(valid(stopped, spec.Stopped), func(s *situation) { s.Checkpoint, s.Stale = true, "x" }), actDiscard},
		{"crashed", with(valid(stopped, spec.Running), func(s *situation) { s.Started = true }), actCrashed},
		{"crashed while prewarm asked",
			with(valid(stopped, spec.Suspended), func(s *situation) { s.Started = true }), actCrashed},
		{"gone while set stopped",
			with(valid(stopped, spec.Stopped), func(s *situation) { s.Started = true }), actForget},
		{"crash backoff",
			with(valid(stopped, spec.Running), func(s *situation) { s.BackoffLeft = time.Second }), actWait},
		{"temp checkpoint first",
			with(valid(paused, spec.Running), func(s *situation) { s.TempCheckpoint = true }), actRemoveTemp},
		{"paused with checkpoint",
			with(valid(paused, spec.Running), func(s *situation) { s.Checkpoint = true }), actKillPaused},
		{"paused without checkpoint", valid(paused, spec.Suspended), actResumePaused},
		{"running with checkpoint",
			with(valid(running, spec.Running), func(s *situation) { s.Checkpoint = true }), actTrashConsumed},
		{"invalid running", with(valid(running, spec.Stopped), func(s *situation) { s.Valid = false }), actNone},
		{"invalid, repairs still run",
			with(valid(paused, spec.Running), func(s *situation) { s.Valid = false }), actResumePaused},
		{"removed running", with(valid(running, ""), func(s *situation) { s.Manifest = false }), actRemoved},
		{"removed suspended",
			with(valid(stopped, ""), func(s *situation) { s.Manifest, s.Checkpoint = false, true }), actRemoved},
		{"removed stopped", with(valid(stopped, ""), func(s *situation) { s.Manifest = false }), actCleanRec},
		{"removed, no record",
			with(valid(stopped, ""), func(s *situation) { s.Manifest, s.Record = false, false }), actNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.s); got != tt.want {
				t.Errorf("decide(%+v) = %q, want %q", tt.s, got, tt.want)
			}
		})
	}
}

func TestCrashBackoff(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want time.Duration
	}{
		{"first", 1, time.Second},
		{"second", 2, 2 * time.Second},
		{"fifth", 5, 16 * time.Second},
		{"capped", 20, crashBackoffMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := crashBackoff(tt.n); got != tt.want {
				t.Errorf("crashBackoff(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestTerminal(t *testing.T) {
	if Terminal(nil) != nil {
		t.Error("Terminal(nil) is not nil")
	}
	err := Terminal(errTest)
	if !IsTerminal(err) || IsTerminal(errTest) {
		t.Error("IsTerminal does not tell a terminal error")
	}
	if !IsTerminal(wrap(err)) {
		t.Error("IsTerminal misses a wrapped terminal error")
	}
}
