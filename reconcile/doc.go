// Package reconcile is vmlet's state machine. Given one VM's manifest and
// what the runtime observes, a Reconciler runs at most one lifecycle
// transition and writes the status that results.
//
// Guarantees:
//   - Reconcile is level-based and idempotent: it re-reads the manifest and
//     observes the runtime on every call, and a call with nothing to do
//     writes nothing and logs nothing.
//   - Each lifecycle transition holds the host lock from its first runtime
//     call to its end and runs under a context deadline, so the lock is never
//     held past the transition's bound.
//   - The machine a VM was started with is recorded in its state folder, so
//     an invalid or removed manifest leaves the VM on its last valid spec,
//     also after a daemon restart.
//   - Nothing is deleted outright except a checkpoint a resume has consumed
//     and a temp checkpoint left by an interrupted suspend: discarded
//     checkpoints go to the trash and stay there for the retention window.
//
// A Catalog maps manifest files to VM names and decides which file owns a
// name; a Reconciler is driven by one worker and is not meant to run two
// Reconcile calls at once.
package reconcile
