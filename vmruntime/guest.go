package vmruntime

import "strconv"

// GuestConfig is the configuration the host sends the agent after its boot handshake:
// which disks to format and mount, and which shares to mount.
type GuestConfig struct {
	Disks  []GuestDisk  `json:"disks,omitempty"`
	Shares []GuestShare `json:"shares,omitempty"`
}

// GuestDisk names a block device by the serial the backend gave it
// ("disk0", "disk1", ...), which the guest reads from /sys/block/*/serial.
// The agent formats it ext4 when it is blank.
type GuestDisk struct {
	Serial    string `json:"serial"`
	MountPath string `json:"mountPath,omitempty"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// GuestShare is a shared folder to mount: FSType is "9p" on qemu and
// "virtiofs" on vz.
type GuestShare struct {
	Tag       string `json:"tag"`
	FSType    string `json:"fsType"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// DiskSerial returns the serial the backend gives the i-th disk.
func DiskSerial(i int) string { return "disk" + strconv.Itoa(i) }

// GuestConfig returns what the agent formats and mounts in m's guest: its
// disks by their serials, and its shares as filesystems of type shareFSType
// ("9p" on qemu, "virtiofs" on vz).
func (m *Machine) GuestConfig(shareFSType string) GuestConfig {
	var cfg GuestConfig
	for i, disk := range m.Disks {
		cfg.Disks = append(cfg.Disks, GuestDisk{
			Serial:    DiskSerial(i),
			MountPath: disk.MountPath,
			ReadOnly:  disk.ReadOnly,
		})
	}
	for _, share := range m.Shares {
		cfg.Shares = append(cfg.Shares, GuestShare{
			Tag:       share.Tag,
			FSType:    shareFSType,
			MountPath: share.MountPath,
			ReadOnly:  share.ReadOnly,
		})
	}
	return cfg
}
