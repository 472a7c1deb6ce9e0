package reconcile

import (
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// vmState is the state of a VM, from the runtime's observation and the
// files in its state folder.
type vmState string

const (
	stateStopped   vmState = "Stopped"
	stateRunning   vmState = "Running"
	statePaused    vmState = "Paused"
	stateSuspended vmState = "Suspended"
)

// action is the one step a reconcile takes.
type action string

// Repairs put right what an interrupted transition left; a reconcile may
// run a repair before its transition.
const (
	// actRemoveTemp deletes a temp checkpoint: the save did not finish and
	// the VM process still holds the memory.
	actRemoveTemp action = "RemoveTempCheckpoint"
	// actResumePaused resumes and thaws a VM paused by a suspend that did
	// not finish.
	actResumePaused action = "ResumePaused"
	// actKillPaused ends a paused VM whose checkpoint is complete: the
	// suspend stopped between the rename and the kill, or a resume between
	// the restore and the resume. The guest has not run since the save.
	actKillPaused action = "KillPaused"
	// actTrashConsumed moves away the checkpoint of a VM that runs: a
	// resume got past its resume call, so restoring that checkpoint again
	// would fork the guest from its disks.
	actTrashConsumed action = "TrashConsumedCheckpoint"
)

// Transitions.
const (
	actNone     action = ""
	actBoot     action = "Boot"
	actRestore  action = "Restore"
	actSuspend  action = "Suspend"
	actPrewarm  action = "Prewarm"
	actStop     action = "Stop"
	actDiscard  action = "DiscardCheckpoint"
	actCrashed  action = "MarkFailed"
	actForget   action = "ForgetStarted"
	actWait     action = "WaitBackoff"
	actRemoved  action = "StopRemoved"
	actCleanRec action = "ForgetRemoved"
	// actReconnect redoes the agent handshake of a running VM the runtime
	// has no agent connection to, as after a daemon restart adopted it.
	actReconnect action = "ReconnectAgent"
)

// isRepair reports whether a is a repair rather than a transition.
func (a action) isRepair() bool {
	switch a {
	case actRemoveTemp, actResumePaused, actKillPaused, actTrashConsumed:
		return true
	}
	return false
}

// situation is everything decide looks at.
type situation struct {
	Process        vmruntime.State
	Checkpoint     bool
	TempCheckpoint bool
	// Manifest is true when a file owns the name, and Valid when that file
	// parsed and validated.
	Manifest bool
	Valid    bool
	Desired  spec.DesiredState
	// Started is true when the record expects the VM to have a process.
	Started bool
	// Record is true when the state folder records the VM at all.
	Record bool
	// Stale is the reason the checkpoint cannot be restored, or "".
	Stale string
	// NotSuspendable is the reason the machine cannot be saved, or "".
	NotSuspendable string
	// BackoffLeft is how long a crash restart still has to wait.
	BackoffLeft time.Duration
	// AgentLost is true when the VM runs, has an agent, and the runtime
	// holds no connection to it.
	AgentLost bool
}

// state returns the VM's state from the process and the checkpoint.
func (s situation) state() vmState {
	switch {
	case s.Process == vmruntime.StateRunning:
		return stateRunning
	case s.Process == vmruntime.StatePaused:
		return statePaused
	case s.Checkpoint:
		return stateSuspended
	}
	return stateStopped
}

// decide returns the next step for s: a repair when one is due, else the
// transition towards the desired state, else actNone.
func decide(s situation) action {
	if a := repair(s); a != actNone {
		return a
	}
	switch {
	case !s.Manifest:
		return decideRemoved(s)
	case !s.Valid:
		// An invalid manifest leaves the VM as it is, on its last valid spec.
		// NOTE: that includes a VM that crashes meanwhile: it is restarted
		// only once the manifest is valid again.
		return actNone
	}
	switch s.state() {
	case stateRunning:
		return decideRunning(s)
	case stateSuspended:
		return decideSuspended(s)
	}
	return decideStopped(s)
}

func repair(s situation) action {
	switch {
	case s.TempCheckpoint:
		return actRemoveTemp
	case s.Process == vmruntime.StatePaused && s.Checkpoint:
		return actKillPaused
	case s.Process == vmruntime.StatePaused:
		return actResumePaused
	case s.Process == vmruntime.StateRunning && s.Checkpoint:
		return actTrashConsumed
	}
	return actNone
}

func decideRemoved(s situation) action {
	switch {
	case s.state() == stateRunning, s.state() == stateSuspended:
		return actRemoved
	case s.Record:
		return actCleanRec
	}
	return actNone
}

func decideRunning(s situation) action {
	switch {
	case s.Desired == spec.Stopped:
		return actStop
	case s.Desired == spec.Suspended && s.NotSuspendable == "":
		return actSuspend
	case s.Desired == spec.Running && s.AgentLost:
		return actReconnect
	}
	return actNone
}

func decideSuspended(s situation) action {
	switch {
	case s.Desired == spec.Stopped:
		return actDiscard
	case s.Desired == spec.Running && s.Stale == "":
		return actRestore
	}
	return actNone
}

func decideStopped(s situation) action {
	switch {
	case s.Started && s.Desired == spec.Stopped:
		return actForget
	case s.Started:
		return actCrashed
	case s.Desired == spec.Stopped:
		return actNone
	case s.Desired == spec.Suspended && s.NotSuspendable != "":
		return actNone
	case s.BackoffLeft > 0:
		return actWait
	case s.Desired == spec.Suspended:
		return actPrewarm
	}
	return actBoot
}
