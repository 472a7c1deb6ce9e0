// Package sim is an in-process vmruntime backend for tests and benchmarks.
// It needs no kernel, disk or hypervisor, yet behaves like one where the
// controller can tell:
//
//   - Every lifecycle operation takes the latency its Options give it, slept
//     through the injected clock, so operations really overlap when nothing
//     serializes them.
//   - It enforces Virtualization.framework's rules: Save only from Paused,
//     Restore only into a Stopped machine, which comes back Paused.
//   - Each VM keeps its state (process state, fake pid, boot id, guest
//     memory) in StateRoot/vms/<name>/sim.json, so a Runtime over the same
//     state folder finds the VMs an earlier daemon left running and Adopt
//     takes them over, the way real VM processes outlive their daemon.
//   - Save writes a real checkpoint file (a header naming the VM, the
//     guest's boot id and memory counter, then the guest's memory), so the
//     caller's fsync, rename and trash handling run on real files.
//   - Faults are injected from tests with Inject, or from a command line
//     with ParseFaults: fail the next save or restore, crash a VM, hang an
//     agent.
//
// The hazard detector models the reason vmlet serializes lifecycle
// operations: on Virtualization.framework, an operation that runs while a
// sibling VM's operation is in flight can corrupt both guests. Every
// lifecycle operation (Boot, Connect, Pause, Resume, Save, Restore, Stop,
// Kill) records its begin and end in a trace file shared by every process
// on the host, under flock(2). An operation that begins while another VM's
// operation is in flight is an overlap: the detector records it in the trace
// and marks both guests corrupted. A corrupted guest fails its agent
// handshake with an I/O error, as a real one does, including after a
// restore from a checkpoint saved while it was corrupted. Overlaps and
// Corrupted read the detector's findings back.
//
// Observe and Agent may be called from any goroutine at any time. Lifecycle
// operations on different VMs may run concurrently, and the detector catches
// them. A second lifecycle operation on a VM whose previous one is still in
// flight fails with ErrBusy.
package sim
