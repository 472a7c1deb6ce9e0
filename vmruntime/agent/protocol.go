package agent

import (
	"errors"
	"fmt"

	"github.com/vmlet/vmlet/vmruntime"
)

// Operations a Request names.
const (
	OpHello     = "hello"
	OpConfigure = "configure"
	OpPing      = "ping"
	OpQuiesce   = "quiesce"
	OpThaw      = "thaw"
	OpShutdown  = "shutdown"
	OpExec      = "exec"
)

// Limits of the protocol, the same on both sides.
const (
	// MaxLine is the maximum length of one message in bytes. A longer line
	// is skipped whole.
	MaxLine = 8 << 20
	// MaxOutput is the maximum number of bytes of stdout, and separately of
	// stderr, that an exec returns. Output past it is dropped and the
	// result is marked truncated.
	MaxOutput = 1 << 20
	// MaxStdin is the maximum size of the stdin an exec request may carry.
	MaxStdin = 1 << 20
)

// Version is the protocol and agent version the guest reports in its hello.
const Version = "vmlet-agent/1"

// Request is one message from the host to the agent. Config is set for
// configure and Exec for exec.
type Request struct {
	ID     uint64                 `json:"id"`
	Op     string                 `json:"op"`
	Config *vmruntime.GuestConfig `json:"config,omitempty"`
	Exec   *ExecRequest           `json:"exec,omitempty"`
}

// ExecRequest is the command an exec request runs in the guest.
type ExecRequest struct {
	Argv  []string `json:"argv"`
	Stdin []byte   `json:"stdin,omitempty"`
	// TimeoutMillis bounds the command's run time in milliseconds. When it
	// passes, the agent kills the command and responds with an error and
	// the output so far. Zero means no bound.
	TimeoutMillis int64 `json:"timeoutMs,omitempty"`
}

// Response is the agent's reply to the request with the same ID. Error is
// empty on success. Hello is set for hello, and Exec for an exec whose
// command started, even when Error reports that it timed out.
type Response struct {
	ID    uint64                `json:"id"`
	Error string                `json:"error,omitempty"`
	Hello *vmruntime.Hello      `json:"hello,omitempty"`
	Exec  *vmruntime.ExecResult `json:"exec,omitempty"`
}

// Errors that callers classify with errors.Is.
var (
	// ErrClosed means the connection to the agent is closed or broken.
	ErrClosed = errors.New("agent connection closed")
	// ErrLineTooLong means a message was longer than MaxLine.
	ErrLineTooLong = errors.New("message longer than the maximum line length")
)

// RemoteError is an error the agent reported for a request.
type RemoteError struct {
	Op      string
	Message string
}

// Error returns the operation and the agent's message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("agent %s: %s", e.Op, e.Message)
}
