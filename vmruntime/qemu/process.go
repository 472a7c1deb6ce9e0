package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pollInterval is how often a process is checked while waiting for it.
const pollInterval = 10 * time.Millisecond

// process is a QEMU process, either a child of this daemon or one adopted
// from an earlier daemon. For a child, done closes when it has been reaped;
// an adopted one is polled through its pid.
type process struct {
	pid      int
	stateDir string
	done     chan struct{}
	// exitErr is the result of Wait for a child, set before done closes.
	exitErr error
}

// startProcess starts binary with args in a session of its own, so that
// it outlives the daemon, with its output appended to logPath.
func startProcess(binary string, args []string, stateDir, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening qemu log: %w", err)
	}
	defer logFile.Close()

	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %q: %w", binary, err)
	}
	p := &process{pid: cmd.Process.Pid, stateDir: stateDir, done: make(chan struct{})}
	go p.reap(cmd)
	return p, nil
}

// reap waits for a child process so it does not linger as a zombie.
func (p *process) reap(cmd *exec.Cmd) {
	p.exitErr = cmd.Wait()
	close(p.done)
}

// adoptProcess returns the process with pid if it is alive and is the QEMU
// of stateDir.
func adoptProcess(pid int, stateDir string) (*process, bool) {
	p := &process{pid: pid, stateDir: stateDir}
	return p, p.alive()
}

// alive reports whether the process still exists. For an adopted process
// it also checks that the pid still belongs to the QEMU of this state
// folder, since a pid may be reused once the process is gone.
func (p *process) alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	if err := syscall.Kill(p.pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return ownsStateDir(p.pid, p.stateDir)
}

// ownsStateDir reports whether the command line of pid names QEMU and the
// QMP socket in stateDir. Where /proc is missing (macOS) it trusts the pid.
func ownsStateDir(pid int, stateDir string) bool {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if errors.Is(err, os.ErrNotExist) {
		_, procErr := os.Stat("/proc/self")
		return procErr != nil
	}
	if err != nil {
		return false
	}
	args := bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0})
	if len(args) == 0 || !strings.Contains(filepath.Base(string(args[0])), "qemu") {
		return false
	}
	return bytes.Contains(raw, []byte(filepath.Join(stateDir, qmpSocket)))
}

// exitReason describes how the process ended: the exit status or signal of
// a child, or "vanished" for an adopted process, whose status is lost.
func (p *process) exitReason() string {
	if p.done == nil {
		return fmt.Sprintf("qemu process %d vanished", p.pid)
	}
	if p.exitErr == nil {
		return fmt.Sprintf("qemu process %d exited with status 0", p.pid)
	}
	return fmt.Sprintf("qemu process %d ended: %v", p.pid, p.exitErr)
}

// signal sends sig unless the process is gone already.
func (p *process) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	err := syscall.Kill(p.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// wait returns once the process is gone, or with ctx's error.
func (p *process) wait(ctx context.Context) error {
	if p.done != nil {
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for p.alive() {
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// exited returns a channel that closes when a child exits; for an adopted
// process it never closes.
func (p *process) exited() <-chan struct{} {
	return p.done
}

// readPidFile reads the pid QEMU wrote to path.
func readPidFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("invalid pid file %q: %q", path, raw)
	}
	return pid, nil
}
