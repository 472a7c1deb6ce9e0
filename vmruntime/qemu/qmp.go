package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// QMPError is an error reply from QEMU's monitor.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

// Error returns the command and QEMU's description of the failure.
func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// qmpMessage is any line QEMU's monitor sends: a greeting, a reply or an
// event.
type qmpMessage struct {
	Greeting json.RawMessage `json:"QMP"`
	Return   json.RawMessage `json:"return"`
	Error    *QMPError       `json:"error"`
	Event    string          `json:"event"`
	ID       *uint64         `json:"id"`
}

// errInvalidMessage marks a line from QEMU that is not a JSON object.
var errInvalidMessage = errors.New("invalid qmp message")

type qmpRequest struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// monitor is a QMP client on one connection. Its methods are safe for
// concurrent use: commands are sent one at a time and matched to their
// replies by id, so a reply left unread by a timed-out command is skipped.
// Events are read and dropped.
type monitor struct {
	mu     sync.Mutex
	conn   net.Conn
	reader *bufio.Reader
	nextID uint64
}

// dialMonitor connects to the QMP socket at path, reads the greeting and
// leaves capabilities negotiation mode.
func dialMonitor(ctx context.Context, path string) (*monitor, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to qmp socket %q: %w", path, err)
	}
	mon, err := newMonitor(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp socket %q: %w", path, err)
	}
	return mon, nil
}

// newMonitor takes over conn, reads QEMU's greeting and sends
// qmp_capabilities.
func newMonitor(ctx context.Context, conn net.Conn) (*monitor, error) {
	mon := &monitor{conn: conn, reader: bufio.NewReader(conn)}
	if err := mon.readGreeting(ctx); err != nil {
		return nil, err
	}
	if err := mon.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		return nil, err
	}
	return mon, nil
}

func (m *monitor) readGreeting(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.bound(ctx)()

	msg, err := m.readMessage()
	if err != nil {
		return fmt.Errorf("reading qmp greeting: %w", ctxErr(ctx, err))
	}
	if msg.Greeting == nil {
		return errors.New("reading qmp greeting: first message is not a greeting")
	}
	return nil
}

// close closes the connection; commands in flight fail.
func (m *monitor) close() error { return m.conn.Close() }

// execute runs command with args and decodes its return value into out,
// which may be nil.
func (m *monitor) execute(ctx context.Context, command string, args, out any) error {
	return m.executeWithFile(ctx, command, args, out, nil)
}

// executeWithFile runs command like execute and passes file's descriptor
// along with it (SCM_RIGHTS), as QMP's getfd and add-fd expect.
func (m *monitor) executeWithFile(ctx context.Context, command string, args, out any, file *os.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.bound(ctx)()

	m.nextID++
	id := m.nextID
	if err := m.send(qmpRequest{Execute: command, Arguments: args, ID: id}, file); err != nil {
		return fmt.Errorf("sending qmp %s: %w", command, ctxErr(ctx, err))
	}
	reply, err := m.awaitReply(id)
	if err != nil {
		return fmt.Errorf("awaiting qmp %s: %w", command, ctxErr(ctx, err))
	}
	return decodeReply(command, reply, out)
}

func (m *monitor) send(req qmpRequest, file *os.File) error {
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if file == nil {
		_, err = m.conn.Write(line)
		return err
	}
	unixConn, ok := m.conn.(*net.UnixConn)
	if !ok {
		return errors.New("passing a file needs a unix socket")
	}
	_, _, err = unixConn.WriteMsgUnix(line, syscall.UnixRights(int(file.Fd())), nil)
	return err
}

// awaitReply reads until the reply to id, skipping events, stale replies
// and the rest of a line that a timed-out read cut.
func (m *monitor) awaitReply(id uint64) (qmpMessage, error) {
	for {
		msg, err := m.readMessage()
		if errors.Is(err, errInvalidMessage) {
			continue
		}
		if err != nil {
			return msg, err
		}
		if msg.Event != "" || msg.ID == nil || *msg.ID != id {
			continue
		}
		return msg, nil
	}
}

func (m *monitor) readMessage() (qmpMessage, error) {
	var msg qmpMessage
	line, err := m.reader.ReadBytes('\n')
	if err != nil {
		return msg, err
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &msg); err != nil {
		return msg, fmt.Errorf("%w %q: %w", errInvalidMessage, line, err)
	}
	return msg, nil
}

func decodeReply(command string, reply qmpMessage, out any) error {
	if reply.Error != nil {
		reply.Error.Command = command
		return reply.Error
	}
	if out == nil || reply.Return == nil {
		return nil
	}
	if err := json.Unmarshal(reply.Return, out); err != nil {
		return fmt.Errorf("decoding qmp %s reply: %w", command, err)
	}
	return nil
}

// bound applies ctx's deadline and cancellation to the connection until the
// returned function is called. That function waits for a cancellation in
// flight, so that it cannot cut short the next command.
func (m *monitor) bound(ctx context.Context) func() {
	deadline, _ := ctx.Deadline()
	m.conn.SetDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		m.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
		}
	}
}

// ctxErr prefers the context's error over the I/O error it caused. The
// connection's deadline is the context's, and may fire a moment before the
// context reports it.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}
