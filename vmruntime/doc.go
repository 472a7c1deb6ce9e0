// Package vmruntime defines the interface between the reconciler and the
// hypervisor backends (qemu, vz, sim), the machine configuration they take,
// and the guest agent protocol.
package vmruntime
