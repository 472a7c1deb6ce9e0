package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmlet/vmlet/vmruntime"
)

// Handler carries out the agent's operations in the guest. Serve calls its
// methods concurrently, one goroutine per request, so the handler
// serializes what must not overlap (quiesce and thaw, say).
type Handler interface {
	// Hello returns the agent's version and the guest's boot id.
	Hello(ctx context.Context) (vmruntime.Hello, error)
	// Configure formats blank disks and mounts disks and shares. It is
	// called again after every restore, so a mount already in place must
	// be left alone.
	Configure(ctx context.Context, cfg vmruntime.GuestConfig) error
	Ping(ctx context.Context) error
	Quiesce(ctx context.Context) error
	Thaw(ctx context.Context) error
	// Shutdown prepares the guest to power off (sync, unmount). Serve
	// sends the response and then calls PowerOff.
	Shutdown(ctx context.Context) error
	// PowerOff ends the guest. It may return, as a test's handler does.
	PowerOff()
	// Exec runs a command. The result is nil when the command did not
	// start. A command that started returns its result even when the
	// error is not nil, for example after a timeout.
	Exec(ctx context.Context, req ExecRequest) (*vmruntime.ExecResult, error)
}

// maxInFlight bounds the requests Serve handles at once. Past it, Serve
// stops reading until one finishes.
const maxInFlight = 8

// Serve reads requests from rw and writes one response line for each until
// reading or writing fails, and returns that error (io.EOF when the peer
// closed the stream). Each request runs in a goroutine of its own, so that
// a command that blocks, for example on a frozen filesystem, does not keep
// the thaw behind it from being read. Responses are written whole, in the
// order the requests finish. A line that does not parse gets an error
// response with id 0, and blank lines are skipped. ctx is passed to the
// handler. To stop Serve, close rw; it returns once the requests in flight
// have finished.
func Serve(ctx context.Context, rw io.ReadWriter, h Handler) error {
	s := &server{h: h, w: rw, slots: make(chan struct{}, maxInFlight)}
	defer s.inFlight.Wait()

	r := bufio.NewReaderSize(rw, 64<<10)
	for {
		line, err := readLine(r, MaxLine)
		if errors.Is(err, ErrLineTooLong) {
			s.write(Response{Error: err.Error()})
			continue
		}
		if err != nil {
			return err
		}
		if err := s.writeError(); err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		s.slots <- struct{}{}
		s.inFlight.Go(func() { s.serveLine(ctx, line) })
	}
}

// server is the state of one Serve call.
type server struct {
	h        Handler
	slots    chan struct{} // one token per request in flight
	inFlight sync.WaitGroup

	mu       sync.Mutex // serializes writes to w
	w        io.Writer
	writeErr error // the first write error
}

// serveLine handles one request line and writes its response.
func (s *server) serveLine(ctx context.Context, line []byte) {
	defer func() { <-s.slots }()
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		s.write(Response{Error: fmt.Sprintf("invalid request: %v", err)})
		return
	}
	resp := handle(ctx, s.h, req)
	if s.write(resp) && req.Op == OpShutdown && resp.Error == "" {
		s.h.PowerOff()
	}
}

// write writes resp as one line and reports whether it succeeded. After a
// failed write, nothing more is written.
func (s *server) write(resp Response) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return false
	}
	s.writeErr = writeResponse(s.w, resp)
	return s.writeErr == nil
}

func (s *server) writeError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeErr
}

// handle runs req on h and returns the response. A panic in the handler
// becomes an error response, because in the guest the agent is PID 1 and
// its exit would panic the kernel.
func handle(ctx context.Context, h Handler, req Request) (resp Response) {
	resp = Response{ID: req.ID}
	defer func() {
		if r := recover(); r != nil {
			resp = Response{ID: req.ID, Error: fmt.Sprintf("agent panic during %s: %v", req.Op, r)}
		}
	}()
	var err error
	switch req.Op {
	case OpHello:
		resp.Hello, err = handleHello(ctx, h)
	case OpConfigure:
		err = handleConfigure(ctx, h, req.Config)
	case OpPing:
		err = h.Ping(ctx)
	case OpQuiesce:
		err = h.Quiesce(ctx)
	case OpThaw:
		err = h.Thaw(ctx)
	case OpShutdown:
		err = h.Shutdown(ctx)
	case OpExec:
		resp.Exec, err = handleExec(ctx, h, req.Exec)
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		resp.Error = err.Error()
	}
	return resp
}

func handleHello(ctx context.Context, h Handler) (*vmruntime.Hello, error) {
	hello, err := h.Hello(ctx)
	if err != nil {
		return nil, err
	}
	return &hello, nil
}

func handleConfigure(ctx context.Context, h Handler, cfg *vmruntime.GuestConfig) error {
	if cfg == nil {
		return errors.New("configure request has no config")
	}
	return h.Configure(ctx, *cfg)
}

func handleExec(ctx context.Context, h Handler, req *ExecRequest) (*vmruntime.ExecResult, error) {
	if req == nil || len(req.Argv) == 0 {
		return nil, errors.New("exec request has no argv")
	}
	return h.Exec(ctx, *req)
}

// writeResponse writes resp as one line.
func writeResponse(w io.Writer, resp Response) error {
	data, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	_, err = w.Write(append(data, '\n'))
	return err
}
