// Command vmlet-agent is the guest agent: a static binary that runs inside
// each VM, usually as PID 1 of the initramfs, and serves the host over the
// channel the kernel command line names.
//
// As PID 1 it mounts /proc, /sys, /dev (devtmpfs), /run and /tmp, loads the
// kernel modules for virtio devices, ext4, 9p, vsock and virtiofs with
// busybox modprobe, and reaps orphaned processes. It then reads the channel
// from /proc/cmdline:
//
//	vmlet.agent=serial      the virtio-serial port named vmlet.agent
//	vmlet.agent=vsock:PORT  AF_VSOCK, listening on PORT
//
// and serves the protocol of package vmruntime/agent there. Over
// virtio-serial there is no connection to accept: the agent keeps reading
// the port across host disconnects, so after a snapshot restore the host
// sends hello again and gets a response. Over vsock it accepts each new
// connection. Without vmlet.agent the agent only acts as init.
package main
