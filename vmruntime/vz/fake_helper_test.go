package vz

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// Environment variables that turn the test binary into a fake helper and
// steer its behaviour.
const (
	envFakeHelper     = "VMLET_VZ_FAKE_HELPER"
	envRealHelper     = "VMLET_VZ_REAL_HELPER"
	envNotSuspendable = "VMLET_VZ_FAKE_NOT_SUSPENDABLE"
	envIgnoreStop     = "VMLET_VZ_FAKE_IGNORE_STOP"
	envHalfOpen       = "VMLET_VZ_FAKE_HALF_OPEN"
	envFailStart      = "VMLET_VZ_FAKE_FAIL_START"
)

// callsFile is where the fake helper records each hypervisor call.
const callsFile = "calls.log"

// fakeHelperMain runs the test binary as "vmlet vmm" with a fake
// hypervisor and returns the exit code.
func fakeHelperMain() int {
	fs := flag.NewFlagSet("vmm", flag.ContinueOnError)
	dir := fs.String("vm-dir", "", "")
	restore := fs.String("restore", "", "")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	newHV := func(m *vmruntime.Machine) (hypervisor, error) { return newFakeHypervisor(*dir), nil }
	if err := runHelper(ctx, *dir, *restore, newHV); err != nil {
		fmt.Fprintln(os.Stderr, "fake helper:", err)
		return 1
	}
	return 0
}

// fakeHypervisor models a VZ machine: its state, a boot id that a save
// carries over to a restore, and a guest agent on the other end of
// DialAgent.
type fakeHypervisor struct {
	dir  string
	done chan string

	mu       sync.Mutex
	state    vmruntime.State
	bootID   string
	halfOpen int
	stopped  bool
}

func newFakeHypervisor(dir string) *fakeHypervisor {
	halfOpen, _ := strconv.Atoi(os.Getenv(envHalfOpen))
	return &fakeHypervisor{dir: dir, done: make(chan string, 1), state: vmruntime.StateStopped, halfOpen: halfOpen}
}

func (f *fakeHypervisor) record(call string) {
	file, err := os.OpenFile(filepath.Join(f.dir, callsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer file.Close()
	fmt.Fprintln(file, call)
}

func (f *fakeHypervisor) setState(s vmruntime.State) {
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
}

func (f *fakeHypervisor) Start() error {
	f.record("start")
	if msg := os.Getenv(envFailStart); msg != "" {
		return errors.New(msg)
	}
	f.bootID = newBootID()
	f.setState(vmruntime.StateRunning)
	return nil
}

func (f *fakeHypervisor) Restore(path string) error {
	f.record("restore " + path)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f.bootID = strings.TrimSpace(string(b))
	f.setState(vmruntime.StatePaused)
	return nil
}

func (f *fakeHypervisor) Pause() error {
	f.record("pause")
	f.setState(vmruntime.StatePaused)
	return nil
}

func (f *fakeHypervisor) Resume() error {
	f.record("resume")
	f.setState(vmruntime.StateRunning)
	return nil
}

// RequestStop fails on a paused machine, as VZ's does.
func (f *fakeHypervisor) RequestStop() error {
	f.record("request-stop")
	if f.State() == vmruntime.StatePaused {
		return errors.New("cannot request stop of a paused machine")
	}
	if os.Getenv(envIgnoreStop) == "" {
		f.powerOff("guest powered off")
	}
	return nil
}

func (f *fakeHypervisor) Stop() error {
	f.record("stop")
	f.powerOff("machine stopped by request")
	return nil
}

// powerOff stops the machine once and reports it on Done.
func (f *fakeHypervisor) powerOff(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	f.state = vmruntime.StateStopped
	f.done <- reason
}

func (f *fakeHypervisor) State() vmruntime.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Save fails when path exists, as VZ's does.
func (f *fakeHypervisor) Save(path string) error {
	f.record("save")
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644) // as VZ may, under the umask
	if err != nil {
		return err
	}
	defer file.Close()
	_, err = fmt.Fprintln(file, f.bootID)
	return err
}

func (f *fakeHypervisor) NotSuspendable() string { return os.Getenv(envNotSuspendable) }

func (f *fakeHypervisor) Done() <-chan string { return f.done }

// DialAgent returns a connection to a fake guest agent. The first
// envHalfOpen connections are half-open: they never send the handshake.
func (f *fakeHypervisor) DialAgent(port uint32) (io.ReadWriteCloser, error) {
	f.record(fmt.Sprintf("dial %d", port))
	if f.State() != vmruntime.StateRunning {
		return nil, errors.New("connection refused")
	}
	host, guest := net.Pipe()
	f.mu.Lock()
	halfOpen := f.halfOpen > 0
	f.halfOpen--
	f.mu.Unlock()
	if halfOpen {
		go io.Copy(io.Discard, guest)
		return host, nil
	}
	go f.serveAgent(guest)
	return host, nil
}

// serveAgent speaks the fake agent protocol: "hello BOOTID" first, then
// "ok" for every request line.
func (f *fakeHypervisor) serveAgent(conn net.Conn) {
	defer conn.Close()
	fmt.Fprintf(conn, "hello %s\n", f.bootID)
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		f.record("agent " + sc.Text())
		fmt.Fprintln(conn, "ok")
		if sc.Text() == "shutdown" {
			go f.powerOff("guest powered off")
		}
	}
}

func newBootID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fakeAgent is the daemon's side of the fake agent protocol. It records
// the guest configuration it sent.
type fakeAgent struct {
	rw  io.ReadWriteCloser
	r   *bufio.Reader
	mu  sync.Mutex
	cfg vmruntime.GuestConfig
}

func newFakeAgent(rw io.ReadWriteCloser) AgentClient {
	return &fakeAgent{rw: rw, r: bufio.NewReader(rw)}
}

func (a *fakeAgent) Handshake(ctx context.Context, cfg vmruntime.GuestConfig) (vmruntime.Hello, error) {
	line, err := a.readLine(ctx)
	if err != nil {
		return vmruntime.Hello{}, err
	}
	id, ok := strings.CutPrefix(line, "hello ")
	if !ok {
		return vmruntime.Hello{}, fmt.Errorf("unexpected handshake %q", line)
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return vmruntime.Hello{Version: "fake", BootID: id}, nil
}

// readLine reads one line, giving up when ctx ends.
func (a *fakeAgent) readLine(ctx context.Context) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := a.r.ReadString('\n')
		done <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-ctx.Done():
		a.rw.Close()
		return "", ctx.Err()
	}
}

func (a *fakeAgent) request(ctx context.Context, verb string) error {
	if _, err := fmt.Fprintln(a.rw, verb); err != nil {
		return err
	}
	line, err := a.readLine(ctx)
	if err == nil && line != "ok" {
		err = fmt.Errorf("agent answered %q", line)
	}
	return err
}

func (a *fakeAgent) Ping(ctx context.Context) error     { return a.request(ctx, "ping") }
func (a *fakeAgent) Quiesce(ctx context.Context) error  { return a.request(ctx, "quiesce") }
func (a *fakeAgent) Thaw(ctx context.Context) error     { return a.request(ctx, "thaw") }
func (a *fakeAgent) Shutdown(ctx context.Context) error { return a.request(ctx, "shutdown") }

func (a *fakeAgent) Exec(ctx context.Context, argv []string, stdin []byte) (vmruntime.ExecResult, error) {
	return vmruntime.ExecResult{}, a.request(ctx, "exec "+strings.Join(argv, " "))
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}
