package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmlet/vmlet/vmruntime"
)

// diskPoll is how often Configure looks for a disk that has not appeared.
const diskPoll = 50 * time.Millisecond

// mkfsArgs are the mkfs.ext4 options for a blank disk. The journal is
// zeroed (mke2fs's default, not lazy_journal_init) because only the first
// MiB is known to be zero, and stale blocks in a journal could be replayed.
var mkfsArgs = []string{"-q"}

// Configure formats the blank disks and mounts the disks and shares at the
// mount paths cfg specifies. It is idempotent because after a restore the
// host sends the same cfg again: a mount already in place is left alone.
// It first thaws what an earlier Quiesce froze, since a handshake starts a
// new connection, and a host that died after Quiesce never sent the Thaw.
// It tries every disk and share and returns all errors.
func (g *guest) Configure(ctx context.Context, cfg vmruntime.GuestConfig) error {
	g.mu.Lock()
	defer g.mu.Unlock()

	if err := g.thaw(); err != nil {
		return err
	}
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range cfg.Disks {
		errs = append(errs, configureDisk(ctx, mounts, d))
	}
	for _, s := range cfg.Shares {
		errs = append(errs, mountShare(mounts, s))
	}
	return errors.Join(errs...)
}

// configureDisk formats the disk with serial d.Serial when it is blank and
// mounts it at d.MountPath when that is set. A disk already mounted there
// is not read again, which keeps the handshake after a restore short.
func configureDisk(ctx context.Context, mounts []mount, d vmruntime.GuestDisk) error {
	dev, err := waitForDisk(ctx, d.Serial)
	if err != nil {
		return err
	}
	if d.MountPath != "" && isMounted(mounts, dev, d.MountPath, "ext4") {
		return nil
	}
	if err := formatIfBlank(ctx, dev, d); err != nil {
		return err
	}
	if d.MountPath == "" {
		return nil
	}
	var flags uintptr
	if d.ReadOnly {
		flags = unix.MS_RDONLY
	}
	return mountOnce(mounts, dev, d.MountPath, "ext4", flags, "")
}

// waitForDisk returns the /dev path of the virtio block device whose
// serial is serial, waiting until it appears or ctx ends.
func waitForDisk(ctx context.Context, serial string) (string, error) {
	for {
		dev, err := findDisk(serial)
		if err == nil {
			return dev, nil
		}
		if !sleep(ctx, diskPoll) {
			return "", fmt.Errorf("waiting for disk with serial %q: %w", serial, ctx.Err())
		}
	}
}

// findDisk returns /dev/vdX for the disk whose /sys/block/vdX/serial is
// serial.
func findDisk(serial string) (string, error) {
	paths, err := filepath.Glob("/sys/block/vd*/serial")
	if err != nil {
		return "", err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(data)) == serial {
			return "/dev/" + filepath.Base(filepath.Dir(p)), nil
		}
	}
	return "", fmt.Errorf("disk with serial %q: %w", serial, os.ErrNotExist)
}

// formatIfBlank runs mkfs.ext4 on dev when its first MiB is all zero.
func formatIfBlank(ctx context.Context, dev string, d vmruntime.GuestDisk) error {
	blank, err := deviceBlank(dev)
	if err != nil || !blank {
		return err
	}
	if d.ReadOnly {
		return fmt.Errorf("disk %q (%s) is blank and read-only, so it cannot be formatted", d.Serial, dev)
	}
	args := append(append([]string{}, mkfsArgs...), dev)
	if _, err := runChild(ctx, "mkfs.ext4", args...); err != nil {
		return fmt.Errorf("formatting disk %q (%s): %w", d.Serial, dev, err)
	}
	return nil
}

// deviceBlank reports whether the first MiB of dev is all zero.
func deviceBlank(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, fmt.Errorf("opening %q: %w", dev, err)
	}
	defer f.Close()
	blank, err := isBlank(f)
	if err != nil {
		return false, fmt.Errorf("reading %q: %w", dev, err)
	}
	return blank, nil
}

// shareOptions are the mount options for each share filesystem type.
var shareOptions = map[string]string{
	"9p":       "trans=virtio,version=9p2000.L",
	"virtiofs": "",
}

// mountShare mounts the share with tag s.Tag at s.MountPath.
func mountShare(mounts []mount, s vmruntime.GuestShare) error {
	data, ok := shareOptions[s.FSType]
	if !ok {
		return fmt.Errorf("share %q: unknown filesystem type %q (use 9p or virtiofs)", s.Tag, s.FSType)
	}
	var flags uintptr
	if s.ReadOnly {
		flags = unix.MS_RDONLY
	}
	return mountOnce(mounts, s.Tag, s.MountPath, s.FSType, flags, data)
}

// isMounted reports whether source is mounted at target as fstype.
func isMounted(mounts []mount, source, target, fstype string) bool {
	return slices.ContainsFunc(mounts, func(m mount) bool {
		return m.Point == target && m.Source == source && m.FSType == fstype
	})
}

// mountOnce mounts source at target unless source is already mounted
// there. Another filesystem mounted at target is an error.
func mountOnce(mounts []mount, source, target, fstype string, flags uintptr, data string) error {
	if isMounted(mounts, source, target, fstype) {
		return nil
	}
	for _, m := range mounts {
		if m.Point == target {
			return fmt.Errorf("mounting %q on %q: %q is mounted there already", source, target, m.Source)
		}
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mounting %s %q on %q: %w", fstype, source, target, err)
	}
	return nil
}
