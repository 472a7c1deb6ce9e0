package vz

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// hypervisor is the one machine a helper owns. The darwin build implements
// it with VZ; the tests implement it with a fake.
type hypervisor interface {
	// Start cold-boots the machine; Restore loads a checkpoint into the
	// stopped machine, which comes back paused.
	Start() error
	Restore(path string) error
	Pause() error
	Resume() error
	// RequestStop requests that the guest power off. Stop ends the machine
	// at once.
	RequestStop() error
	Stop() error
	State() vmruntime.State
	// Save writes the paused machine's state to path, which must not exist.
	Save(path string) error
	// NotSuspendable returns why the machine cannot be saved, or "".
	NotSuspendable() string
	// DialAgent makes one attempt to connect to the guest's vsock port.
	DialAgent(port uint32) (io.ReadWriteCloser, error)
	// Done receives, once, why the machine stopped.
	Done() <-chan string
}

// Timeouts of the helper's vsock connection to the agent.
const (
	// agentAttemptTimeout bounds one connection attempt. VZ's connect does
	// not call back when the guest does not listen yet, so an attempt that
	// passes it is abandoned and tried again.
	agentAttemptTimeout = 3 * time.Second
	agentRetryInterval  = 200 * time.Millisecond
	maxAgentTimeout     = 10 * time.Minute
)

// helper serves one machine's command socket.
type helper struct {
	dir string
	hv  hypervisor
	// mu serializes lifecycle operations; state and agent requests do not
	// take it.
	mu sync.Mutex

	exitMu sync.Mutex
	exit   string // the reason the machine stopped, once it has
}

// runHelper builds the machine described by dir's configuration file with
// newHypervisor, boots it (or restores it from restorePath when that is not
// empty), serves its command socket and returns when the machine stops or
// ctx ends. It writes the reason the machine stopped to the exit file and
// returns nil once the machine has stopped, or the error that kept it from
// running.
func runHelper(ctx context.Context, dir, restorePath string, newHypervisor func(*vmruntime.Machine) (hypervisor, error)) error {
	m, err := readMachine(dir)
	if err != nil {
		return err
	}
	hv, err := newHypervisor(m)
	if err != nil {
		return writeExit(dir, fmt.Errorf("configuring machine %q: %w", m.Name, err))
	}
	if err := startMachine(hv, restorePath); err != nil {
		return writeExit(dir, err)
	}
	ln, err := listenHelper(dir)
	if err != nil {
		_ = hv.Stop()
		return writeExit(dir, err)
	}
	defer ln.Close()

	h := &helper{dir: dir, hv: hv}
	go h.serve(ln)
	return h.wait(ctx)
}

// startMachine boots hv, or restores it from restorePath.
func startMachine(hv hypervisor, restorePath string) error {
	if restorePath == "" {
		if err := hv.Start(); err != nil {
			return fmt.Errorf("starting machine: %w", err)
		}
		return nil
	}
	path, err := canonicalPath(restorePath)
	if err != nil {
		return err
	}
	if err := hv.Restore(path); err != nil {
		return fmt.Errorf("restoring machine from %q: %w", path, err)
	}
	return nil
}

// listenHelper opens the command socket and then writes the pid file, so
// that a pid file always names a helper whose socket exists.
func listenHelper(dir string) (net.Listener, error) {
	sock := filepath.Join(dir, socketFile)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listening on helper socket: %w", err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := writeFileAtomic(filepath.Join(dir, pidFile), pid, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// wait returns when the machine stops on its own or through a request, or
// when ctx ends, which stops the machine.
func (h *helper) wait(ctx context.Context) error {
	var reason string
	select {
	case reason = <-h.hv.Done():
	case <-ctx.Done():
		_ = h.hv.Stop()
		reason = "helper was signalled to exit"
	}
	h.exitMu.Lock()
	h.exit = reason
	h.exitMu.Unlock()
	_ = os.Remove(filepath.Join(h.dir, pidFile))
	_ = writeExit(h.dir, errors.New(reason))
	return nil
}

// writeExit records why the helper ends, for the daemon's Observe, and
// returns err.
func writeExit(dir string, err error) error {
	_ = writeFileAtomic(filepath.Join(dir, exitFile), []byte(err.Error()+"\n"), 0o600)
	return err
}

// serve accepts connections until ln is closed.
func (h *helper) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go h.handle(conn)
	}
}

// handle serves one request. An agent request turns the connection into
// a relay, which then owns it.
func (h *helper) handle(conn net.Conn) {
	r := bufio.NewReader(conn)
	var req request
	if err := readLine(r, &req); err != nil {
		conn.Close()
		return
	}
	if req.Op == opAgent {
		h.relayAgent(&bufferedConn{Conn: conn, r: r}, req)
		return
	}
	defer conn.Close()
	_ = writeLine(conn, h.dispatch(req))
}

// dispatch runs one request other than opAgent.
func (h *helper) dispatch(req request) response {
	var err error
	switch req.Op {
	case opState:
		return h.stateResponse()
	case opPause:
		err = h.locked(h.hv.Pause)
	case opResume:
		err = h.locked(h.hv.Resume)
	case opRequestStop:
		err = h.locked(h.hv.RequestStop)
	case opStop:
		err = h.locked(h.hv.Stop)
	case opSave:
		err = h.locked(func() error { return saveCheckpoint(h.hv, req.Path) })
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return response{Error: err.Error()}
	}
	return h.stateResponse()
}

func (h *helper) stateResponse() response {
	h.exitMu.Lock()
	defer h.exitMu.Unlock()
	return response{
		State:          h.hv.State(),
		PID:            os.Getpid(),
		NotSuspendable: h.hv.NotSuspendable(),
		Exit:           h.exit,
	}
}

func (h *helper) locked(op func() error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return op()
}

// saveCheckpoint saves the paused machine into a temp file beside path,
// fsyncs it, renames it to path and fsyncs the folder, so that path either
// does not exist or holds a complete checkpoint.
func saveCheckpoint(hv hypervisor, path string) error {
	if reason := hv.NotSuspendable(); reason != "" {
		return fmt.Errorf("%w: %s", vmruntime.ErrNotSuspendable, reason)
	}
	if s := hv.State(); s != vmruntime.StatePaused {
		return fmt.Errorf("saving needs a paused machine, it is %s", s)
	}
	path, err := canonicalPath(path)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("checkpoint %q already exists", path)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale temp file: %w", err)
	}
	if err := hv.Save(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving machine state to %q: %w", tmp, err)
	}
	// The checkpoint holds the guest's memory, secrets included.
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restricting %q: %w", tmp, err)
	}
	if err := commitFile(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// relayAgent connects to the guest agent's vsock port, retrying until
// req.Timeout passes. It then sends the response and copies bytes both
// ways until either side closes.
func (h *helper) relayAgent(conn *bufferedConn, req request) {
	guest, err := h.dialAgent(req)
	if err != nil {
		_ = writeLine(conn, response{Error: err.Error()})
		conn.Close()
		return
	}
	if err := writeLine(conn, h.stateResponse()); err != nil {
		conn.Close()
		guest.Close()
		return
	}
	relay(conn, guest)
}

// dialAgent retries hv.DialAgent: the guest agent may not listen yet after
// a boot, and the first connection after a restore can be refused.
func (h *helper) dialAgent(req request) (io.ReadWriteCloser, error) {
	timeout := min(max(req.Timeout, agentAttemptTimeout), maxAgentTimeout)
	deadline := time.Now().Add(timeout)
	for {
		conn, err := h.dialAgentOnce(req.Port)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connecting to guest vsock port %d: %w", req.Port, err)
		}
		time.Sleep(agentRetryInterval)
	}
}

// errAttemptTimedOut reports a vsock connection attempt that VZ did not
// complete in agentAttemptTimeout.
var errAttemptTimedOut = errors.New("connection attempt timed out")

// dialResult is the outcome of one vsock connection attempt.
type dialResult struct {
	conn io.ReadWriteCloser
	err  error
}

// dialAgentOnce makes one attempt bounded by agentAttemptTimeout.
func (h *helper) dialAgentOnce(port uint32) (io.ReadWriteCloser, error) {
	done := make(chan dialResult, 1)
	go h.dialInto(port, done)
	select {
	case r := <-done:
		return r.conn, r.err
	case <-time.After(agentAttemptTimeout):
		// NOTE: the abandoned attempt's goroutine ends only if VZ calls back;
		// a connection it returns late is closed by closeLate.
		go closeLate(done)
		return nil, errAttemptTimedOut
	}
}

func (h *helper) dialInto(port uint32, done chan<- dialResult) {
	conn, err := h.hv.DialAgent(port)
	done <- dialResult{conn, err}
}

// closeLate closes a connection that arrives after its attempt timed out.
func closeLate(done <-chan dialResult) {
	if r := <-done; r.conn != nil {
		r.conn.Close()
	}
}

// relay copies between a and b until either direction ends, then closes
// both.
func relay(a, b io.ReadWriteCloser) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() { a.Close(); b.Close() })
	}
	go copyThenClose(a, b, closeBoth)
	copyThenClose(b, a, closeBoth)
}

func copyThenClose(dst io.Writer, src io.Reader, closeBoth func()) {
	_, _ = io.Copy(dst, src)
	closeBoth()
}

// readMachine reads the machine configuration the daemon wrote into dir.
func readMachine(dir string) (*vmruntime.Machine, error) {
	path := filepath.Join(dir, configFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading machine configuration: %w", err)
	}
	var m vmruntime.Machine
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing machine configuration %q: %w", path, err)
	}
	return &m, nil
}
