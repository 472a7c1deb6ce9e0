package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/vmlet/vmlet/vmruntime"
)

// Handler carries out the agent's operations in the guest. Serve calls one
// method at a time.
type Handler interface {
	// Hello returns the agent's version and the guest's boot id.
	Hello(ctx context.Context) (vmruntime.Hello, error)
	// Configure formats blank disks and mounts disks and shares. It is
	// called again after every restore, so what is already mounted where
	// cfg says must be left alone.
	Configure(ctx context.Context, cfg vmruntime.GuestConfig) error
	Ping(ctx context.Context) error
	Quiesce(ctx context.Context) error
	Thaw(ctx context.Context) error
	// Shutdown prepares the guest to power off (sync, unmount). Serve
	// answers the request and then calls PowerOff.
	Shutdown(ctx context.Context) error
	// PowerOff ends the guest. It may return, as a test's handler does.
	PowerOff()
	// Exec runs a command. The result is nil when the command did not
	// start; a command that started returns its result even when the error
	// is not nil, for example after a timeout.
	Exec(ctx context.Context, req ExecRequest) (*vmruntime.ExecResult, error)
}

// Serve reads requests from rw and writes one response line for each until
// reading fails, and returns that error (io.EOF when the peer closed the
// stream). A line that does not parse gets an error response with id 0;
// blank lines are skipped. ctx is passed to the handler; to stop Serve,
// close rw.
func Serve(ctx context.Context, rw io.ReadWriter, h Handler) error {
	r := bufio.NewReaderSize(rw, 64<<10)
	for {
		line, err := readLine(r, MaxLine)
		if errors.Is(err, ErrLineTooLong) {
			err = writeResponse(rw, Response{Error: err.Error()})
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := serveLine(ctx, rw, h, line); err != nil {
			return err
		}
	}
}

// serveLine handles one request line and writes its response.
func serveLine(ctx context.Context, w io.Writer, h Handler, line []byte) error {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return writeResponse(w, Response{Error: fmt.Sprintf("invalid request: %v", err)})
	}
	resp := handle(ctx, h, req)
	if err := writeResponse(w, resp); err != nil {
		return err
	}
	if req.Op == OpShutdown && resp.Error == "" {
		h.PowerOff()
	}
	return nil
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
