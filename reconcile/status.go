package reconcile

import (
	"time"

	"github.com/vmlet/vmlet/spec"
)

// Condition reasons vmlet writes.
const (
	ReasonAgentReady        = "AgentReady"
	ReasonAgentDisconnected = "AgentDisconnected"
	ReasonRunning           = "Running"
	ReasonPaused            = "Paused"
	ReasonSuspended         = "Suspended"
	ReasonStopped           = "Stopped"
	ReasonCrashed           = "Crashed"
	ReasonBootFailed        = "BootFailed"
	ReasonAgentTimeout      = "AgentTimeout"
	ReasonAgentFailed       = "AgentFailed"
	ReasonMissingFile       = "MissingFile"
	ReasonSuspendFailed     = "SuspendFailed"
	ReasonColdBooted        = "ColdBootedAfterFailedResume"
	ReasonSpecValid         = "SpecValid"
	ReasonInvalidSpec       = "InvalidSpec"
	ReasonDuplicateName     = "DuplicateName"
	ReasonSupported         = "Supported"
	ReasonNotSuspendable    = "NotSuspendable"
	ReasonUnknown           = "Unknown"
	ReasonMachineChanged    = "MachineChanged"
	ReasonMachineCurrent    = "MachineCurrent"
	ReasonNoCheckpoint      = "NoCheckpoint"
	ReasonCheckpointCurrent = "CheckpointCurrent"
	ReasonDiskChanged       = "DiskChanged"
	ReasonRuntimeCannot     = "RuntimeIncompatible"
)

// conditionTypes is the order conditions appear in a status.
var conditionTypes = []string{
	spec.ConditionReady,
	spec.ConditionValid,
	spec.ConditionSuspendable,
	spec.ConditionRestartRequired,
	spec.ConditionCheckpointStale,
}

// cond is a condition without its transition time.
type cond struct {
	Status  spec.ConditionStatus
	Reason  string
	Message string
}

func condTrue(reason, message string) cond  { return cond{spec.ConditionTrue, reason, message} }
func condFalse(reason, message string) cond { return cond{spec.ConditionFalse, reason, message} }

// buildStatus assembles a status from conds, keyed by condition type. A
// condition keeps its lastTransitionTime from prev while its status is the
// same; otherwise it gets now.
func buildStatus(prev *spec.Status, now time.Time, phase spec.Phase, conds map[string]cond) *spec.Status {
	st := &spec.Status{Phase: phase}
	for _, t := range conditionTypes {
		c, ok := conds[t]
		if !ok {
			continue
		}
		st.Conditions = append(st.Conditions, withTime(prev, now, t, c))
	}
	return st
}

func withTime(prev *spec.Status, now time.Time, typ string, c cond) spec.Condition {
	out := spec.Condition{Type: typ, Status: c.Status, Reason: c.Reason, Message: c.Message}
	out.LastTransitionTime = spec.Time{Time: now.UTC().Truncate(time.Second)}
	if old := findCondition(prev, typ); old != nil && old.Status == c.Status {
		out.LastTransitionTime = old.LastTransitionTime
	}
	return out
}

func findCondition(st *spec.Status, typ string) *spec.Condition {
	if st == nil {
		return nil
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

// statusEqual reports whether two statuses hold the same values, times
// compared as instants at the one-second precision a status is written in.
func statusEqual(a, b *spec.Status) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Phase != b.Phase || a.ObservedSpecHash != b.ObservedSpecHash || a.Restarts != b.Restarts {
		return false
	}
	if !checkpointEqual(a.Checkpoint, b.Checkpoint) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		if !conditionEqual(&a.Conditions[i], &b.Conditions[i]) {
			return false
		}
	}
	return true
}

func conditionEqual(a, b *spec.Condition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason &&
		a.Message == b.Message && timeEqual(a.LastTransitionTime, b.LastTransitionTime)
}

func checkpointEqual(a, b *spec.Checkpoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Bytes == b.Bytes && a.MachineHash == b.MachineHash && a.Runtime == b.Runtime &&
		timeEqual(a.SavedAt, b.SavedAt)
}

func timeEqual(a, b spec.Time) bool {
	return a.UTC().Truncate(time.Second).Equal(b.UTC().Truncate(time.Second))
}
