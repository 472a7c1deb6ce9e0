package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
)

// Filesystem freeze ioctls from linux/fs.h, _IOWR('X', 119, int) and
// _IOWR('X', 120, int), which golang.org/x/sys/unix does not define. The
// encoding is the same on amd64 and arm64.
const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// bootIDFile holds the kernel's boot id, new on every boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// guest carries out the agent's operations in this Linux guest. It
// implements agent.Handler. Configure, Quiesce, Thaw and Shutdown run one
// at a time, also across vsock connections. Exec runs beside them, so a
// command blocked on a frozen filesystem cannot hold up Thaw.
type guest struct {
	mu sync.Mutex
	// frozen lists the mount points Quiesce froze, for Thaw to thaw.
	frozen []string
	// autoThaw thaws the frozen mounts when no Thaw came in time.
	autoThaw *time.Timer
}

// freezeLimit is how long filesystems stay frozen without a Thaw. A host
// pauses the guest right after Quiesce, and under QEMU a paused guest's
// clock stops. So only a host that died in between leaves the guest frozen
// this long, and without the limit its writes would hang for good.
const freezeLimit = time.Minute

var _ agent.Handler = (*guest)(nil)

// Hello returns the agent's version and the boot id.
func (g *guest) Hello(ctx context.Context) (vmruntime.Hello, error) {
	data, err := os.ReadFile(bootIDFile)
	if err != nil {
		return vmruntime.Hello{}, fmt.Errorf("reading boot id: %w", err)
	}
	return vmruntime.Hello{Version: agent.Version, BootID: strings.TrimSpace(string(data))}, nil
}

// Ping does nothing, because the response itself shows the agent is alive.
func (g *guest) Ping(ctx context.Context) error { return nil }

// Quiesce syncs, flushes every virtio block device and freezes every
// writable ext4 mount. When a freeze fails, it thaws what it froze.
func (g *guest) Quiesce(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()

	unix.Sync()
	if err := flushDisks(); err != nil {
		return err
	}
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.FSType != "ext4" || m.readOnly() || slices.Contains(g.frozen, m.Point) {
			continue
		}
		if err := freeze(m.Point, ioctlFIFREEZE); err != nil && !errors.Is(err, unix.EBUSY) {
			return errors.Join(err, g.thaw())
		}
		g.frozen = append(g.frozen, m.Point)
	}
	g.startAutoThaw(logr.FromContextOrDiscard(ctx))
	return nil
}

// startAutoThaw arms the timer that thaws after freezeLimit. The caller
// holds g.mu.
func (g *guest) startAutoThaw(log logr.Logger) {
	if g.autoThaw != nil || len(g.frozen) == 0 {
		return
	}
	g.autoThaw = time.AfterFunc(freezeLimit, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		log.Info("No thaw after quiesce, thawing", "limit", freezeLimit.String(), "mountPoints", g.frozen)
		if err := g.thaw(); err != nil {
			log.Error(err, "Thawing after the freeze limit")
		}
	})
}

// Thaw thaws the filesystems Quiesce froze.
func (g *guest) Thaw(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.thaw()
}

// thaw thaws the frozen mount points. A mount that is not frozen (EINVAL)
// is fine. The caller holds g.mu.
func (g *guest) thaw() error {
	if g.autoThaw != nil {
		g.autoThaw.Stop()
		g.autoThaw = nil
	}
	var errs []error
	for _, point := range g.frozen {
		if err := freeze(point, ioctlFITHAW); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, err)
		}
	}
	g.frozen = nil
	return errors.Join(errs...)
}

// freeze runs FIFREEZE or FITHAW on the filesystem mounted at point.
func freeze(point string, request uintptr) error {
	fd, err := unix.Open(point, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", point, err)
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), request, 0); errno != 0 {
		return fmt.Errorf("%s %q: %w", freezeName(request), point, errno)
	}
	return nil
}

func freezeName(request uintptr) string {
	if request == ioctlFIFREEZE {
		return "freezing"
	}
	return "thawing"
}

// flushDisks writes out and drops the buffer cache of every virtio block
// device (BLKFLSBUF) and fsyncs it, which sends a flush to the device.
func flushDisks() error {
	devs, err := filepath.Glob("/sys/block/vd*")
	if err != nil {
		return err
	}
	var errs []error
	for _, dev := range devs {
		errs = append(errs, flushDisk("/dev/"+filepath.Base(dev)))
	}
	return errors.Join(errs...)
}

func flushDisk(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("opening %q: %w", dev, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("flushing buffers of %q: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", dev, err)
	}
	return nil
}

// Shutdown syncs, thaws and unmounts every disk and share, newest mount
// first, so the guest can power off cleanly. A mount that stays busy is
// remounted read-only instead, and its error is logged, not returned, so
// that the power-off still happens.
func (g *guest) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()

	log := logr.FromContextOrDiscard(ctx)
	unix.Sync()
	if err := g.thaw(); err != nil {
		log.Error(err, "Thawing before shutdown")
	}
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	for _, m := range slices.Backward(mounts) {
		if err := unmount(m); err != nil {
			log.Error(err, "Unmounting before shutdown", "mountPoint", m.Point)
		}
	}
	unix.Sync()
	return nil
}

// pseudoTypes are filesystems Shutdown leaves mounted: nothing in them
// needs writing back.
var pseudoTypes = []string{"rootfs", "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs"}

// unmount unmounts m, or remounts it read-only when it is busy.
func unmount(m mount) error {
	if slices.Contains(pseudoTypes, m.FSType) {
		return nil
	}
	err := unix.Unmount(m.Point, 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("unmounting %q: %w", m.Point, err)
	}
	if rerr := unix.Mount("", m.Point, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
		return fmt.Errorf("unmounting %q: %w, and remounting it read-only: %w", m.Point, err, rerr)
	}
	return nil
}

// PowerOff powers the guest off. It returns only when that fails.
func (g *guest) PowerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "vmlet-agent: powering off: %v\n", err)
	}
}

// Exec runs a command. The command's exit is collected by os/exec, so the
// reaper is held off while it runs.
func (g *guest) Exec(ctx context.Context, req agent.ExecRequest) (*vmruntime.ExecResult, error) {
	children.RLock()
	defer children.RUnlock()
	return agent.RunCommand(ctx, req)
}

// readMounts returns the mounts of /proc/self/mountinfo.
func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}
