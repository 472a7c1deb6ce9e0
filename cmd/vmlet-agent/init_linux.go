package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// guestPath is the PATH of the agent and of the commands it runs. The
// initramfs keeps busybox's applets in /bin and mkfs.ext4 in /sbin.
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// children is held for reading by every call that starts a child process
// and waits for it, and for writing by the reaper, so that the reaper never
// collects a child before os/exec's Wait does. The reaper only tries the
// lock, so a long command does not make new ones wait behind it.
var children sync.RWMutex

// runChild runs a command to completion under the children lock.
func runChild(ctx context.Context, name string, args ...string) ([]byte, error) {
	children.RLock()
	defer children.RUnlock()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, oneLine(out))
	}
	return out, nil
}

// oneLine returns out as one line for an error message.
func oneLine(out []byte) string {
	return strings.Join(strings.Fields(string(out)), " ")
}

// initSystem prepares the initramfs as PID 1: it ignores the signals that
// would otherwise end PID 1 (and panic the kernel), mounts the pseudo
// filesystems, starts the reaper and loads the modules.
func initSystem(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx)
	signal.Ignore(unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGPIPE)
	os.Setenv("PATH", guestPath)
	if err := mountPseudo(); err != nil {
		log.Error(err, "Mounting pseudo filesystems")
	}
	go reapChildren()
	start := time.Now()
	if err := loadModules(ctx); err != nil {
		log.Error(err, "Loading kernel modules")
	}
	log.Info("Loaded kernel modules", "duration", time.Since(start).String())
}

// pseudoMounts are the filesystems PID 1 mounts, in order.
var pseudoMounts = []struct {
	target, fstype, data string
	flags                uintptr
}{
	{"/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"/dev", "devtmpfs", "mode=0755", unix.MS_NOSUID},
	{"/dev/pts", "devpts", "mode=0620,ptmxmode=0666", unix.MS_NOSUID | unix.MS_NOEXEC},
	{"/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
	{"/tmp", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV},
}

// mountPseudo mounts /proc, /sys, /dev, /dev/pts, /run and /tmp. EBUSY, a
// filesystem already mounted there, is not an error.
func mountPseudo() error {
	var errs []error
	for _, m := range pseudoMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s on %q: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// reapInterval is how often the reaper tries again while commands run.
const reapInterval = time.Second

// reapChildren collects orphaned processes that were reparented to PID 1,
// when SIGCHLD arrives and every reapInterval, at times when no command is
// running. It runs for the life of the agent.
func reapChildren() {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	tick := time.NewTicker(reapInterval)
	for {
		select {
		case <-sigchld:
		case <-tick.C:
		}
		if children.TryLock() {
			reapAll()
			children.Unlock()
		}
	}
}

// reapAll collects every exited child. The caller holds children.
func reapAll() {
	for {
		var status unix.WaitStatus
		pid, err := unix.Wait4(-1, &status, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// loadModules loads the wanted modules that modules.dep lists with one
// busybox modprobe call.
func loadModules(ctx context.Context) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("reading kernel release: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	dep, err := os.ReadFile(filepath.Join("/lib/modules", release, "modules.dep"))
	if err != nil {
		return fmt.Errorf("reading modules.dep: %w", err)
	}
	names := availableModules(string(dep), wantedModules)
	if len(names) == 0 {
		return nil
	}
	_, err = runChild(ctx, "modprobe", append([]string{"-a"}, names...)...)
	return err
}
