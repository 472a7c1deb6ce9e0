// Package reconcile is vmlet's state machine. Given one VM's manifest and
// what the runtime observes, a Reconciler repairs what an interrupted
// transition left, runs at most one lifecycle transition, and writes the
// status that results.
//
// Guarantees:
//   - Reconcile is level-based and idempotent: it re-reads the manifest and
//     observes the runtime on every call, and a call with nothing to do
//     writes nothing and logs nothing.
//   - Each lifecycle transition holds the host lock from its first runtime
//     call to its end and runs under a context deadline. So the lock is held
//     at most for the transition's bound, plus 30 s to undo a failed step.
//   - The machine a VM was started with is recorded in its state folder, so
//     an invalid or removed manifest leaves the VM on its last valid spec,
//     also after a daemon restart.
//   - No checkpoint is deleted outright except one a resume has consumed and
//     a temp checkpoint left by an interrupted suspend. Discarded checkpoints
//     go to the trash and stay there for the retention window.
//   - A transition that runs for more than a second first writes its
//     in-between phase (Starting, Suspending, Resuming, Stopping); a quick one
//     writes only its outcome.
//
// A Catalog maps manifest files to VM names and decides which file owns a
// name. Its parses are cached by path and content hash, in memory and in the
// state folder, so a restarted daemon parses only the files that changed. A
// Reconciler is driven by one worker and must not run two Reconcile calls at
// once.
//
// The state folder of a VM, <state>/vms/<name>, holds machine.json (the
// machine it was last started with and its crash history), checkpoint and
// checkpoint.json (a suspended VM's memory and its metadata, 0600),
// checkpoint.tmp while a save runs, and status.yaml where status cannot go
// into the manifest. Discarded checkpoints go to <state>/trash/<time>-<name>.
package reconcile
