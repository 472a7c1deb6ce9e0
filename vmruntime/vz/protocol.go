package vz

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// Operations the helper accepts, one request per connection.
const (
	opState       = "state"
	opPause       = "pause"
	opResume      = "resume"
	opRequestStop = "request-stop"
	opStop        = "stop"
	opSave        = "save"
	opAgent       = "agent"
)

// request is one command from the daemon to the helper, sent as one line
// of JSON.
type request struct {
	Op string `json:"op"`
	// Path is the checkpoint file for opSave.
	Path string `json:"path,omitempty"`
	// Port is the guest's vsock port for opAgent.
	Port uint32 `json:"port,omitempty"`
	// Timeout bounds the helper's vsock connection retries for opAgent.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// response is the helper's reply, one line of JSON. After a successful
// opAgent response the connection carries the agent's bytes both ways.
type response struct {
	Error string          `json:"error,omitempty"`
	State vmruntime.State `json:"state,omitempty"`
	PID   int             `json:"pid,omitempty"`
	// NotSuspendable is the hypervisor's reason why this machine cannot be
	// saved; empty when it can.
	NotSuspendable string `json:"notSuspendable,omitempty"`
	// Exit is the reason the machine stopped, once it has.
	Exit string `json:"exit,omitempty"`
}

// maxLine bounds one protocol line, so a confused peer cannot make the
// other side buffer without end.
const maxLine = 64 << 10

// writeLine sends v as one line of JSON.
func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// readLine reads one line of JSON from r into v.
func readLine(r *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return fmt.Errorf("protocol line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return json.Unmarshal(line, v)
		}
	}
}

// bufferedConn is a connection whose first bytes were read into a
// bufio.Reader. Reads drain that buffer first, so the bytes that followed
// the protocol line are not lost when the connection becomes an agent relay.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
