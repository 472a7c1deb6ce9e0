package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    channel
		wantErr string
	}{
		{name: "serial", cmdline: "console=ttyS0 vmlet.agent=serial quiet\n", want: channel{Serial: true}},
		{name: "vsock", cmdline: "console=hvc0 vmlet.agent=vsock:5000", want: channel{VsockPort: 5000}},
		{name: "last wins", cmdline: "vmlet.agent=serial vmlet.agent=vsock:7", want: channel{VsockPort: 7}},
		{name: "missing", cmdline: "console=ttyS0 quiet", wantErr: "no vmlet.agent= parameter"},
		{name: "prefix only", cmdline: "vmlet.agentx=serial", wantErr: "no vmlet.agent= parameter"},
		{name: "unknown channel", cmdline: "vmlet.agent=tcp:1", wantErr: `"tcp:1": invalid channel`},
		{name: "port zero", cmdline: "vmlet.agent=vsock:0", wantErr: "invalid vsock port"},
		{name: "port not a number", cmdline: "vmlet.agent=vsock:x", wantErr: "invalid vsock port"},
		{name: "port too large", cmdline: "vmlet.agent=vsock:4294967296", wantErr: "invalid vsock port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCmdline(tt.cmdline)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseCmdline(%q): err = %v, want one containing %q", tt.cmdline, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCmdline(%q): %v", tt.cmdline, err)
			}
			if got != tt.want {
				t.Errorf("parseCmdline(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	f, err := os.Open("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts, err := parseMountinfo(f)
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	if len(mounts) != 7 {
		t.Fatalf("parsed %d mounts, want 7: %+v", len(mounts), mounts)
	}
	want := []mount{
		{Point: "/data", FSType: "ext4", Source: "/dev/vda", Options: "rw,relatime"},
		{Point: "/mnt/with space", FSType: "ext4", Source: "/dev/vdb", Options: "ro,relatime"},
		{Point: "/mnt/work", FSType: "9p", Source: "workspace", Options: "rw,relatime"},
	}
	if got := mounts[4:]; !slices.Equal(got, want) {
		t.Errorf("mounts[4:] = %+v, want %+v", got, want)
	}
	if mounts[4].readOnly() {
		t.Errorf("%q: readOnly() = true, want false", mounts[4].Point)
	}
	if !mounts[5].readOnly() {
		t.Errorf("%q: readOnly() = false, want true", mounts[5].Point)
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "/data", want: "/data"},
		{name: "space", in: `/a\040b`, want: "/a b"},
		{name: "backslash", in: `/a\134b`, want: `/a\b`},
		{name: "short escape at end", in: `/a\04`, want: `/a\04`},
		{name: "not octal", in: `/a\09x`, want: `/a\09x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unescapeOctal(tt.in); got != tt.want {
				t.Errorf("unescapeOctal(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIsBlank(t *testing.T) {
	withByteAt := func(size, at int) []byte {
		b := make([]byte, size)
		b[at] = 0x53
		return b
	}
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{name: "zero disk", data: make([]byte, 4<<20), want: true},
		{name: "short zero disk", data: make([]byte, 1000), want: true},
		{name: "empty", data: nil, want: true},
		{name: "ext4 magic", data: withByteAt(4<<20, 0x438), want: false},
		{name: "last byte of the first MiB", data: withByteAt(4<<20, blankPrefix-1), want: false},
		{name: "data after the first MiB", data: withByteAt(4<<20, blankPrefix), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := isBlank(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatalf("isBlank: %v", err)
			}
			if got != tt.want {
				t.Errorf("isBlank = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAvailableModules(t *testing.T) {
	dep := "kernel/arch/x86/crypto/crc32c-intel.ko:\n" +
		"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n" +
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.xz: kernel/net/vmw_vsock/vsock.ko\n" +
		"kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko\n"
	got := availableModules(dep, wantedModules)
	want := []string{"crc32c-intel", "virtio_pci", "vmw_vsock_virtio_transport", "virtiofs"}
	if !slices.Equal(got, want) {
		t.Errorf("availableModules = %q, want %q", got, want)
	}
}

func TestIsPowerPress(t *testing.T) {
	event := func(typ, code uint16, value int32) []byte {
		ev := make([]byte, inputEventSize)
		binary.LittleEndian.PutUint16(ev[16:], typ)
		binary.LittleEndian.PutUint16(ev[18:], code)
		binary.LittleEndian.PutUint32(ev[20:], uint32(value))
		return ev
	}
	tests := []struct {
		name string
		ev   []byte
		want bool
	}{
		{name: "power press", ev: event(evKey, keyPower, 1), want: true},
		{name: "power release", ev: event(evKey, keyPower, 0)},
		{name: "power repeat", ev: event(evKey, keyPower, 2)},
		{name: "other key", ev: event(evKey, 115, 1)},
		{name: "sync event", ev: event(0, 0, 0)},
		{name: "short", ev: event(evKey, keyPower, 1)[:20]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isPowerPress(tt.ev); got != tt.want {
				t.Errorf("isPowerPress = %v, want %v", got, tt.want)
			}
		})
	}
}
