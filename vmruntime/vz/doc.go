// Package vz runs virtual machines on Apple's Virtualization.framework
// through github.com/Code-Hex/vz/v3.
//
// Each VM lives in a helper process of its own, started as "vmlet vmm",
// that owns one VZ machine and takes commands from the daemon over a unix
// socket in the VM's state folder. The helper runs in a session of its own,
// so a daemon restart does not end it: Runtime.Adopt finds it again through
// its pid file and socket. A crash in one helper ends only its own VM.
//
// The daemon's side (the command protocol, its client, process management
// and adoption) is portable Go and is tested on Linux against a fake
// helper. The helper's VZ side needs darwin and cgo. Save and restore need
// macOS 14 on Apple silicon, so on an Intel Mac every VM reports that it
// cannot be suspended.
//
// The guest agent is reached over vsock: the helper connects to the guest
// port and relays the bytes over its unix socket, so the daemon speaks to
// the agent as if it were connected directly.
package vz
