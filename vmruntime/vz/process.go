package vz

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// Intervals of the daemon's polling.
const (
	pollInterval = 50 * time.Millisecond
	// readyPollInterval is shorter, because a boot waits on it.
	readyPollInterval = 10 * time.Millisecond
	// killGrace is how long a helper gets to end its machine after a stop
	// request before it is killed.
	killGrace = 10 * time.Second
)

// vm is the daemon's handle on one helper process.
type vm struct {
	name string
	dir  string
	pid  int
	// done is closed when the helper process is gone.
	done chan struct{}

	mu             sync.Mutex
	waitErr        error // the exit status of a helper this process started
	stopRequested  bool  // Stop or Kill ended it, so an exit is no failure
	notSuspendable string
	agent          *agentConn
}

// spawnHelper starts "vmlet vmm" for m, restoring from restorePath when it
// is not empty, in a session of its own so that it outlives the daemon.
func (r *Runtime) spawnHelper(m *vmruntime.Machine, restorePath string) (*vm, error) {
	if err := prepareStateDir(m); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(m.StateDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening helper log: %w", err)
	}
	defer log.Close()

	cmd := exec.Command(r.opts.Executable, r.helperArgs(m.StateDir, restorePath)...)
	cmd.Env = append(os.Environ(), r.opts.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting helper for %q: %w", m.Name, err)
	}
	v := &vm{name: m.Name, dir: m.StateDir, pid: cmd.Process.Pid, done: make(chan struct{})}
	go v.reap(cmd)
	return v, nil
}

func (r *Runtime) helperArgs(dir, restorePath string) []string {
	args := append(append([]string{}, r.opts.Args...), "--vm-dir", dir)
	if restorePath != "" {
		args = append(args, "--restore", restorePath)
	}
	return args
}

// prepareStateDir creates m's state folder, removes what an earlier helper
// left and writes the configuration the helper reads.
func prepareStateDir(m *vmruntime.Machine) error {
	if err := os.MkdirAll(m.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	for _, name := range []string{socketFile, exitFile, pidFile} {
		if err := os.Remove(filepath.Join(m.StateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing stale %q: %w", name, err)
		}
	}
	return writeMachine(m)
}

// reap waits for a helper this process started.
func (v *vm) reap(cmd *exec.Cmd) {
	err := cmd.Wait()
	v.mu.Lock()
	v.waitErr = err
	v.mu.Unlock()
	close(v.done)
}

// watchPID polls an adopted helper, which is not this process's child,
// until it is gone.
func (v *vm) watchPID() {
	for processAlive(v.pid) {
		time.Sleep(pollInterval)
	}
	close(v.done)
}

// processAlive reports whether pid names a live process.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (v *vm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// exitReason returns why the helper ended, read from the reason it
// recorded, else from its exit status.
func (v *vm) exitReason() string {
	b, err := os.ReadFile(filepath.Join(v.dir, exitFile))
	if err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.waitErr != nil {
		return "helper process ended: " + v.waitErr.Error()
	}
	return "helper process ended"
}

// waitGone waits up to d for the helper to end and reports whether it did.
func (v *vm) waitGone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// call sends one request to the helper and returns its response. A
// response that carries an error is returned as an error.
func (v *vm) call(ctx context.Context, req request) (response, error) {
	conn, resp, err := v.open(ctx, req)
	if conn != nil {
		conn.Close()
	}
	return resp, err
}

// open sends req and reads the response, leaving the connection open for
// the caller, who must close it when it is not nil.
func (v *vm) open(ctx context.Context, req request) (*bufferedConn, response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(v.dir, socketFile))
	if err != nil {
		return nil, response{}, fmt.Errorf("connecting to helper of %q: %w", v.name, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	bc := &bufferedConn{Conn: conn, r: bufio.NewReader(conn)}
	resp, err := exchange(bc, req)
	if err != nil {
		return bc, resp, fmt.Errorf("helper of %q: %s: %w", v.name, req.Op, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return bc, resp, nil
}

// exchange writes req and reads the response.
func exchange(c *bufferedConn, req request) (response, error) {
	var resp response
	if err := writeLine(c, req); err != nil {
		return resp, err
	}
	if err := readLine(c.r, &resp); err != nil {
		return resp, err
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// waitReady polls the helper until its socket replies, the helper ends or
// ctx ends. In the last two cases it kills the helper and returns an error.
func (v *vm) waitReady(ctx context.Context) (response, error) {
	for {
		if resp, err := v.call(ctx, request{Op: opState}); err == nil {
			return resp, nil
		}
		select {
		case <-v.done:
			return response{}, fmt.Errorf("helper of %q ended before its machine ran: %s", v.name, v.exitReason())
		case <-ctx.Done():
			v.kill()
			return response{}, fmt.Errorf("waiting for helper of %q: %w", v.name, ctx.Err())
		case <-time.After(readyPollInterval):
		}
	}
}

// kill sends SIGKILL to the helper; the VZ machine ends with its process.
func (v *vm) kill() {
	_ = syscall.Kill(v.pid, syscall.SIGKILL)
}

func (v *vm) markStopRequested() {
	v.mu.Lock()
	v.stopRequested = true
	v.mu.Unlock()
}

func (v *vm) wasStopRequested() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopRequested
}
