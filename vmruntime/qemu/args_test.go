package qemu

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/vmruntime"
)

func baseMachine() *vmruntime.Machine {
	return &vmruntime.Machine{
		Name:      "builder",
		CPUs:      2,
		MemoryMiB: 512,
		Kernel:    "/img/vmlinuz",
		Initrd:    "/img/initrd.img",
		Cmdline:   "quiet",
		Network:   vmruntime.NetworkNone,
		StateDir:  "/state/vms/builder",
	}
}

// hasPair reports whether flag is directly followed by value in args.
func hasPair(args []string, flag, value string) bool {
	for i := range len(args) - 1 {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

func TestLaunchArgs(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	tests := []struct {
		name   string
		change func(*vmruntime.Machine, *launch)
		want   [][2]string // flag and value pairs that must appear
		absent []string    // substrings no argument may contain
	}{{
		name:   "no agent",
		change: func(*vmruntime.Machine, *launch) {},
		want: [][2]string{
			{"-machine", "pc-i440fx-7.2"}, {"-smp", "2"}, {"-m", "512"},
			{"-display", "none"}, {"-nic", "none"},
			{"-accel", "tcg"}, {"-cpu", "max"},
			{"-kernel", "/img/vmlinuz"}, {"-initrd", "/img/initrd.img"},
			{"-append", "console=ttyS0 quiet"},
			{"-pidfile", "/state/vms/builder/qemu.pid"},
			{"-qmp", "unix:/state/vms/builder/qmp.sock,server=on,wait=off"},
			{"-chardev", "file,id=console,append=on,path=/state/vms/builder/console.log"},
			{"-serial", "chardev:console"},
		},
		absent: []string{"vmlet.agent", "-incoming", "virtio-serial"},
	}, {
		name:   "agent over virtio-serial",
		change: func(m *vmruntime.Machine, _ *launch) { m.AgentPort = 5000 },
		want: [][2]string{
			{"-append", "console=ttyS0 vmlet.agent=serial quiet"},
			{"-chardev", "socket,id=agent,server=on,wait=off,path=/state/vms/builder/agent.sock"},
			{"-device", "virtserialport,bus=vmlet-serial.0,chardev=agent,name=vmlet.agent"},
		},
		absent: []string{"vhost-vsock"},
	}, {
		name: "agent over vsock",
		change: func(m *vmruntime.Machine, l *launch) {
			m.AgentPort = 5000
			l.vsock = true
		},
		want:   [][2]string{{"-append", "console=ttyS0 vmlet.agent=vsock:5000 quiet"}},
		absent: []string{"virtserialport"},
	}, {
		name: "disks",
		change: func(m *vmruntime.Machine, _ *launch) {
			m.Disks = []vmruntime.Disk{{Path: "/d/a.img"}, {Path: "/d/b,c.img", ReadOnly: true}}
		},
		want: [][2]string{
			{"-drive", "if=none,format=raw,id=disk0,file=/d/a.img"},
			{"-device", "virtio-blk-pci,drive=disk0,serial=disk0"},
			{"-drive", "if=none,format=raw,id=disk1,file=/d/b,,c.img,readonly=on"},
			{"-device", "virtio-blk-pci,drive=disk1,serial=disk1"},
		},
	}, {
		name: "shares",
		change: func(m *vmruntime.Machine, _ *launch) {
			m.Shares = []vmruntime.Share{{Tag: "work", Path: "/srv/work", ReadOnly: true}}
		},
		want: [][2]string{
			{"-fsdev", "local,security_model=none,id=share0,path=/srv/work,readonly=on"},
			{"-device", "virtio-9p-pci,fsdev=share0,mount_tag=work"},
		},
	}, {
		name: "nat",
		change: func(m *vmruntime.Machine, _ *launch) {
			m.Network = vmruntime.NetworkNAT
			m.MAC = mac
		},
		want: [][2]string{
			{"-netdev", "user,id=net0"},
			{"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"},
		},
		absent: []string{"-nic"},
	}, {
		name:   "incoming",
		change: func(_ *vmruntime.Machine, l *launch) { l.incoming = true },
		want:   [][2]string{{"-incoming", "defer"}},
	}, {
		name:   "kvm",
		change: func(_ *vmruntime.Machine, l *launch) { l.accel = AccelKVM },
		want:   [][2]string{{"-accel", "kvm"}, {"-cpu", "host"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseMachine()
			l := launch{machine: m, machineType: "pc-i440fx-7.2", accel: AccelTCG}
			tt.change(m, &l)
			args := l.args()
			for _, pair := range tt.want {
				if !hasPair(args, pair[0], pair[1]) {
					t.Errorf("args lack %s %q: %q", pair[0], pair[1], args)
				}
			}
			for _, text := range tt.absent {
				if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, text) }) {
					t.Errorf("args contain %q: %q", text, args)
				}
			}
		})
	}
}

func TestLaunchArgsIncomingStartsPaused(t *testing.T) {
	l := launch{machine: baseMachine(), machineType: "pc-i440fx-7.2", accel: AccelTCG, incoming: true}
	if !slices.Contains(l.args(), "-S") {
		t.Error("incoming args lack -S, so QEMU would run the guest as soon as it arrives")
	}
	l.incoming = false
	if slices.Contains(l.args(), "-S") {
		t.Error("boot args contain -S")
	}
}

func TestGuestCIDAvoidsReserved(t *testing.T) {
	for _, name := range []string{"", "a", "builder", "vm-0", "vm-1"} {
		if cid := guestCID(name); cid < 3 {
			t.Errorf("guestCID(%q) = %d, want 3 or more", name, cid)
		}
	}
}

func TestGuestConfig(t *testing.T) {
	m := baseMachine()
	m.Disks = []vmruntime.Disk{{Path: "/a", MountPath: "/work"}, {Path: "/b", ReadOnly: true}}
	m.Shares = []vmruntime.Share{{Tag: "src", Path: "/s", MountPath: "/mnt/src", ReadOnly: true}}
	cfg := m.GuestConfig("9p")
	wantDisks := []vmruntime.GuestDisk{{Serial: "disk0", MountPath: "/work"}, {Serial: "disk1", ReadOnly: true}}
	if !slices.Equal(cfg.Disks, wantDisks) {
		t.Errorf("disks = %+v, want %+v", cfg.Disks, wantDisks)
	}
	wantShares := []vmruntime.GuestShare{{Tag: "src", FSType: "9p", MountPath: "/mnt/src", ReadOnly: true}}
	if !slices.Equal(cfg.Shares, wantShares) {
		t.Errorf("shares = %+v, want %+v", cfg.Shares, wantShares)
	}
}
