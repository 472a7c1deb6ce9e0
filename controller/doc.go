// Package controller is vmlet's daemon: it watches the manifest folder,
// queues the VMs whose manifests changed, and reconciles them one at a time
// with a single worker.
//
// Guarantees:
//   - Within one daemon, reconciles never run concurrently: the work queue
//     has exactly one worker, and a key is never handed out twice at once.
//   - Across daemons on one host, lifecycle transitions are serialized by
//     the host lock (HostLock), an flock(2) on a file they share.
//   - One daemon per state folder: Run fails at once, naming the holder's
//     pid, when another daemon holds <state>/vmlet.lock.
//   - A missed or coalesced filesystem event costs latency, not
//     correctness: the folder is re-listed at start, on inotify overflow,
//     on a swap of a dot-entry that is a symlink or a folder, and
//     periodically.
//   - On shutdown the transition in flight finishes and every VM is left as
//     it is, to be adopted by the next daemon.
//
// The daemon's local API on <state>/vmlet.sock lets `vmlet exec` and `vmlet
// logs` reach the guests through the agent connections the daemon holds.
package controller
