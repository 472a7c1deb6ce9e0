package qemu

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vmlet/vmlet/vmruntime"
)

// launch holds the inputs of one QEMU command line.
type launch struct {
	machine     *vmruntime.Machine
	machineType string
	accel       string
	// vsock selects vhost-vsock for the agent instead of virtio-serial.
	vsock bool
	// incoming starts QEMU paused, waiting for migrate-incoming.
	incoming bool
}

// args returns QEMU's arguments, without the binary.
func (l launch) args() []string {
	m := l.machine
	args := []string{
		"-name", m.Name,
		"-machine", l.machineType,
		"-smp", strconv.Itoa(m.CPUs),
		"-m", strconv.FormatInt(m.MemoryMiB, 10),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-no-reboot",
		"-pidfile", filepath.Join(m.StateDir, pidFile),
		"-qmp", "unix:" + escape(filepath.Join(m.StateDir, qmpSocket)) + ",server=on,wait=off",
	}
	args = append(args, accelArgs(l.accel)...)
	args = append(args, l.kernelArgs()...)
	args = append(args, consoleArgs(m)...)
	args = append(args, l.agentArgs()...)
	args = append(args, diskArgs(m.Disks)...)
	args = append(args, shareArgs(m.Shares)...)
	args = append(args, networkArgs(m)...)
	if l.incoming {
		args = append(args, "-S", "-incoming", "defer")
	}
	return args
}

func (l launch) kernelArgs() []string {
	m := l.machine
	args := []string{"-kernel", m.Kernel}
	if m.Initrd != "" {
		args = append(args, "-initrd", m.Initrd)
	}
	return append(args, "-append", l.cmdline())
}

// cmdline returns the kernel command line: the serial console, the agent's
// channel, then the machine's own arguments.
func (l launch) cmdline() string {
	parts := []string{"console=" + serialConsole()}
	if channel := l.agentChannel(); channel != "" {
		parts = append(parts, "vmlet.agent="+channel)
	}
	if l.machine.Cmdline != "" {
		parts = append(parts, l.machine.Cmdline)
	}
	return strings.Join(parts, " ")
}

// serialConsole returns the kernel's name for the first serial port.
// NOTE: the arm64 values here and in probe.go (ttyAMA0, the virt machine)
// have not been run on an arm64 host.
func serialConsole() string {
	if runtime.GOARCH == "arm64" {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// agentChannel returns the value of vmlet.agent= on the kernel command
// line, or "" for a VM without an agent.
func (l launch) agentChannel() string {
	switch {
	case l.machine.AgentPort == 0:
		return ""
	case l.vsock:
		return "vsock:" + strconv.FormatUint(uint64(l.machine.AgentPort), 10)
	}
	return "serial"
}

// consoleArgs sends the first serial port to the console log, appending so
// that the log of a restored VM follows the one it was saved from.
func consoleArgs(m *vmruntime.Machine) []string {
	path := filepath.Join(m.StateDir, vmruntime.ConsoleLogFile)
	return []string{
		"-chardev", "file,id=console,append=on,path=" + escape(path),
		"-serial", "chardev:console",
	}
}

func (l launch) agentArgs() []string {
	m := l.machine
	switch {
	case m.AgentPort == 0:
		return nil
	case l.vsock:
		return []string{"-device", fmt.Sprintf("vhost-vsock-pci,guest-cid=%d", guestCID(m.Name))}
	}
	path := filepath.Join(m.StateDir, agentSocket)
	return []string{
		"-device", "virtio-serial-pci,id=vmlet-serial",
		"-chardev", "socket,id=agent,server=on,wait=off,path=" + escape(path),
		"-device", "virtserialport,bus=vmlet-serial.0,chardev=agent,name=" + vmruntime.AgentSerialPort,
	}
}

// guestCID derives a vsock context id from the VM's name. CIDs 0 to 2 are
// reserved.
// NOTE: two names can hash to one CID; QEMU then fails to start the second
// VM with "unable to set guest cid".
func guestCID(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()%(1<<31-3) + 3
}

func diskArgs(disks []vmruntime.Disk) []string {
	var args []string
	for i, disk := range disks {
		id := vmruntime.DiskSerial(i)
		drive := "if=none,format=raw,id=" + id + ",file=" + escape(disk.Path)
		if disk.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args,
			"-drive", drive,
			"-device", "virtio-blk-pci,drive="+id+",serial="+id)
	}
	return args
}

// shareArgs exports each share over virtio-9p. security_model=none keeps
// the files exactly as the guest writes them, owned by the user running
// QEMU, so the host reads them without xattr translation.
func shareArgs(shares []vmruntime.Share) []string {
	var args []string
	for i, share := range shares {
		id := "share" + strconv.Itoa(i)
		fsdev := "local,security_model=none,id=" + id + ",path=" + escape(share.Path)
		if share.ReadOnly {
			fsdev += ",readonly=on"
		}
		args = append(args,
			"-fsdev", fsdev,
			"-device", "virtio-9p-pci,fsdev="+id+",mount_tag="+escape(share.Tag))
	}
	return args
}

func networkArgs(m *vmruntime.Machine) []string {
	if m.Network != vmruntime.NetworkNAT {
		return []string{"-nic", "none"}
	}
	device := "virtio-net-pci,netdev=net0"
	if len(m.MAC) > 0 {
		device += ",mac=" + m.MAC.String()
	}
	return []string{"-netdev", "user,id=net0", "-device", device}
}

// escape doubles commas, which separate options in QEMU's arguments.
func escape(value string) string {
	return strings.ReplaceAll(value, ",", ",,")
}
