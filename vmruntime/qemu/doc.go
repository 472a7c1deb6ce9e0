// Package qemu runs vmlet VMs as QEMU processes on Linux and macOS.
//
// Each VM is one QEMU process in a session of its own, so it outlives the
// daemon that started it. Its files live in the VM's state folder: the pid
// file, the QMP socket, the agent socket, QEMU's own output (qemu.log) and
// the serial console log. A later daemon adopts the process through the pid
// file and the QMP socket.
//
// The guest agent talks over vsock where the host has /dev/vhost-vsock and
// over a virtio-serial port named vmlet.agent otherwise. Disks are
// virtio-blk devices whose serial is vmruntime.DiskSerial of their index,
// shares are virtio-9p, and network nat is QEMU's user-mode network.
//
// A checkpoint is QEMU's migration stream of a paused guest, written to a
// temporary file through a descriptor passed over QMP, fsynced and renamed.
// It records the QEMU version and the pinned machine type. CanRestore
// follows QEMU's own compatibility promise for versioned machine types: a
// checkpoint restores when this binary has the recorded machine type and
// its version is the recorded one or newer. Migrating from a newer QEMU to
// an older one is not supported upstream, so such checkpoints are rejected.
//
// A VM with shares cannot be suspended: QEMU blocks migration while a 9p
// share is mounted.
package qemu
