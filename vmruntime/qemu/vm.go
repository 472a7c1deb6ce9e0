package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// agentConn is a guest agent connection the runtime owns.
type agentConn interface {
	vmruntime.Agent
	Close() error
}

// vm is one QEMU process the runtime started or adopted.
type vm struct {
	name     string
	stateDir string
	// logStart is the size of qemu.log when this process started, so that
	// errors quote only what this process wrote.
	logStart int64

	// dialMu serializes dials of the QMP socket.
	dialMu sync.Mutex

	mu   sync.Mutex
	proc *process
	mon  *monitor
	// agent is the connection Connect made, nil before.
	agent agentConn
	// ending is set by Stop and Kill, so that the process's end is not
	// reported as an unexpected exit.
	ending bool
}

func (v *vm) process() *process {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proc
}

// dialTimeout bounds connecting to QMP and reading its greeting. QEMU
// serves one QMP client at a time, so a second client would wait forever.
const dialTimeout = 5 * time.Second

// monitor returns the QMP connection, dialing it again after an earlier
// one failed or after an adoption whose dial failed. Dials are serialized
// by dialMu, because a second client would wait for QEMU's greeting until
// the first disconnects, but they do not hold mu, so that the process and
// agent stay readable meanwhile.
func (v *vm) monitor(ctx context.Context) (*monitor, error) {
	if mon := v.currentMonitor(); mon != nil {
		return mon, nil
	}
	v.dialMu.Lock()
	defer v.dialMu.Unlock()
	if mon := v.currentMonitor(); mon != nil {
		return mon, nil
	}

	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	mon, err := dialMonitor(ctx, filepath.Join(v.stateDir, qmpSocket))
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.mon = mon
	v.mu.Unlock()
	return mon, nil
}

func (v *vm) currentMonitor() *monitor {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mon
}

// execute runs a QMP command. A connection that failed is dropped, so the
// next command dials again, but an error reply from QEMU keeps it.
func (v *vm) execute(ctx context.Context, command string, args, out any) error {
	mon, err := v.monitor(ctx)
	if err != nil {
		return err
	}
	err = mon.execute(ctx, command, args, out)
	var qmpErr *QMPError
	if err != nil && !errors.As(err, &qmpErr) {
		v.dropMonitor(mon)
	}
	return err
}

func (v *vm) dropMonitor(mon *monitor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mon == mon {
		v.mon = nil
	}
	mon.close()
}

// status returns QEMU's run state, such as "running", "paused" or
// "postmigrate".
func (v *vm) status(ctx context.Context) (string, error) {
	var reply struct {
		Status string `json:"status"`
	}
	if err := v.execute(ctx, "query-status", nil, &reply); err != nil {
		return "", err
	}
	return reply.Status, nil
}

// setAgent replaces the agent connection, closing the previous one.
func (v *vm) setAgent(conn agentConn) {
	v.mu.Lock()
	old := v.agent
	v.agent = conn
	v.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (v *vm) currentAgent() agentConn {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.agent
}

func (v *vm) setEnding() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ending = true
}

// release closes the connections of a VM whose process is gone and removes
// the files that only a live process needs or writes.
func (v *vm) release() {
	v.mu.Lock()
	mon, conn := v.mon, v.agent
	v.mon, v.agent = nil, nil
	v.mu.Unlock()
	if mon != nil {
		mon.close()
	}
	if conn != nil {
		conn.Close()
	}
	for _, name := range []string{pidFile, qmpSocket, agentSocket} {
		os.Remove(filepath.Join(v.stateDir, name))
	}
	// Only a live QEMU writes a partial checkpoint, so one left in the
	// state folder, by a daemon killed during a save, is garbage now.
	partials, _ := filepath.Glob(filepath.Join(v.stateDir, ".*.partial"))
	for _, partial := range partials {
		os.Remove(partial)
	}
}

// exitMessage describes an end of the process that neither Stop nor Kill
// caused, with the last lines QEMU and the guest console wrote.
func (v *vm) exitMessage() string {
	v.mu.Lock()
	ending, proc := v.ending, v.proc
	v.mu.Unlock()
	if ending {
		return ""
	}
	parts := []string{proc.exitReason()}
	if tail := tailFile(filepath.Join(v.stateDir, qemuLogFile), v.logStart); tail != "" {
		parts = append(parts, "qemu log: "+tail)
	}
	if tail := tailFile(filepath.Join(v.stateDir, vmruntime.ConsoleLogFile), 0); tail != "" {
		parts = append(parts, "console: "+tail)
	}
	return strings.Join(parts, "; ")
}

// tailSize is how much of a log's end an error message quotes.
const tailSize = 512

// tailFile returns the last lines of a log after offset start, at most
// tailSize bytes, joined with " | ".
func tailFile(path string, start int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	offset := max(info.Size()-tailSize, start, 0)
	buf := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(buf, offset); err != nil && err != io.EOF {
		return ""
	}
	text := strings.ReplaceAll(string(buf), "\r", "")
	return strings.Join(strings.Split(strings.TrimSpace(text), "\n"), " | ")
}

// errorWithLog adds the end of what this QEMU process logged to err.
func (v *vm) errorWithLog(err error) error {
	tail := tailFile(filepath.Join(v.stateDir, qemuLogFile), v.logStart)
	if tail == "" {
		return err
	}
	return fmt.Errorf("%w (qemu log: %s)", err, tail)
}
