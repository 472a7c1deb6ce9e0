//go:build darwin

package vz

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/Code-Hex/vz/v3"

	"github.com/vmlet/vmlet/vmruntime"
)

// configStep adds one group of devices to a configuration.
type configStep func(*vz.VirtualMachineConfiguration, *vmruntime.Machine) error

// buildConfig returns m's VZ configuration: a Linux boot loader, cpus and
// memory, a generic platform with the stored machine identifier, virtio
// block disks, VirtioFS shares, NAT networking when m.Network is nat, a
// virtio socket for the agent, a virtio console into the console log and an
// entropy device. It returns VZ's validation error when VZ rejects it.
func buildConfig(m *vmruntime.Machine) (*vz.VirtualMachineConfiguration, error) {
	boot, err := vz.NewLinuxBootLoader(m.Kernel, bootOptions(m)...)
	if err != nil {
		return nil, fmt.Errorf("configuring boot loader: %w", err)
	}
	config, err := vz.NewVirtualMachineConfiguration(boot, uint(m.CPUs), uint64(m.MemoryMiB)<<20)
	if err != nil {
		return nil, fmt.Errorf("configuring machine: %w", err)
	}
	steps := []configStep{setPlatform, setDisks, setShares, setNetwork, setSocket, setConsole, setEntropy}
	for _, step := range steps {
		if err := step(config, m); err != nil {
			return nil, err
		}
	}
	if _, err := config.Validate(); err != nil {
		return nil, fmt.Errorf("invalid machine configuration: %w", err)
	}
	return config, nil
}

func bootOptions(m *vmruntime.Machine) []vz.LinuxBootLoaderOption {
	opts := []vz.LinuxBootLoaderOption{vz.WithCommandLine(kernelCmdline(m))}
	if m.Initrd != "" {
		opts = append(opts, vz.WithInitrd(m.Initrd))
	}
	return opts
}

func setPlatform(c *vz.VirtualMachineConfiguration, m *vmruntime.Machine) error {
	id, err := loadMachineID(m.StateDir)
	if err != nil {
		return err
	}
	platform, err := vz.NewGenericPlatformConfiguration(vz.WithGenericMachineIdentifier(id))
	if err != nil {
		return fmt.Errorf("configuring platform: %w", err)
	}
	c.SetPlatformVirtualMachineConfiguration(platform)
	return nil
}

// setDisks adds m's disks as virtio block devices whose identifiers are
// the serials the agent looks for. VZ sets identifiers from macOS 12.3 on;
// before that the disks have none.
func setDisks(c *vz.VirtualMachineConfiguration, m *vmruntime.Machine) error {
	var devices []vz.StorageDeviceConfiguration
	for i, d := range m.Disks {
		attachment, err := vz.NewDiskImageStorageDeviceAttachment(d.Path, d.ReadOnly)
		if err != nil {
			return fmt.Errorf("attaching disk %q: %w", d.Path, err)
		}
		dev, err := vz.NewVirtioBlockDeviceConfiguration(attachment)
		if err != nil {
			return fmt.Errorf("configuring disk %q: %w", d.Path, err)
		}
		err = dev.SetBlockDeviceIdentifier(vmruntime.DiskSerial(i))
		if err != nil && !errors.Is(err, vz.ErrUnsupportedOSVersion) {
			return fmt.Errorf("naming disk %q: %w", d.Path, err)
		}
		devices = append(devices, dev)
	}
	c.SetStorageDevicesVirtualMachineConfiguration(devices)
	return nil
}

func setShares(c *vz.VirtualMachineConfiguration, m *vmruntime.Machine) error {
	var devices []vz.DirectorySharingDeviceConfiguration
	for _, s := range m.Shares {
		dir, err := vz.NewSharedDirectory(s.Path, s.ReadOnly)
		if err != nil {
			return fmt.Errorf("sharing %q: %w", s.Path, err)
		}
		share, err := vz.NewSingleDirectoryShare(dir)
		if err != nil {
			return fmt.Errorf("sharing %q: %w", s.Path, err)
		}
		dev, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return fmt.Errorf("configuring share %q: %w", s.Tag, err)
		}
		dev.SetDirectoryShare(share)
		devices = append(devices, dev)
	}
	c.SetDirectorySharingDevicesVirtualMachineConfiguration(devices)
	return nil
}

// setNetwork adds a NAT network device with m's derived MAC address when
// m.Network is nat.
func setNetwork(c *vz.VirtualMachineConfiguration, m *vmruntime.Machine) error {
	if m.Network != vmruntime.NetworkNAT {
		return nil
	}
	attachment, err := vz.NewNATNetworkDeviceAttachment()
	if err != nil {
		return fmt.Errorf("configuring NAT: %w", err)
	}
	dev, err := vz.NewVirtioNetworkDeviceConfiguration(attachment)
	if err != nil {
		return fmt.Errorf("configuring network device: %w", err)
	}
	mac, err := vz.NewMACAddress(m.MAC)
	if err != nil {
		return fmt.Errorf("setting MAC address %q: %w", m.MAC, err)
	}
	dev.SetMACAddress(mac)
	c.SetNetworkDevicesVirtualMachineConfiguration([]*vz.VirtioNetworkDeviceConfiguration{dev})
	return nil
}

func setSocket(c *vz.VirtualMachineConfiguration, _ *vmruntime.Machine) error {
	dev, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return fmt.Errorf("configuring virtio socket: %w", err)
	}
	c.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{dev})
	return nil
}

// setConsole sends the guest's hvc0 console to the console log, appending.
func setConsole(c *vz.VirtualMachineConfiguration, m *vmruntime.Machine) error {
	path := filepath.Join(m.StateDir, vmruntime.ConsoleLogFile)
	attachment, err := vz.NewFileSerialPortAttachment(path, true)
	if err != nil {
		return fmt.Errorf("opening console log %q: %w", path, err)
	}
	dev, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(attachment)
	if err != nil {
		return fmt.Errorf("configuring console: %w", err)
	}
	c.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{dev})
	return nil
}

func setEntropy(c *vz.VirtualMachineConfiguration, _ *vmruntime.Machine) error {
	dev, err := vz.NewVirtioEntropyDeviceConfiguration()
	if err != nil {
		return fmt.Errorf("configuring entropy device: %w", err)
	}
	c.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{dev})
	return nil
}
