package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// pipeWait bounds how long RunCommand waits for the output pipes to close
// after the command exited, as they stay open while a background child
// holds them.
const pipeWait = time.Second

// RunCommand runs req.Argv, feeding it req.Stdin, and returns its exit code
// and output, each stream cut at MaxOutput bytes. A command killed by a
// signal reports 128 plus the signal number, as a shell does. When
// req.TimeoutMillis passes, the command is killed and RunCommand returns
// the result so far with an error. The result is nil when the command did
// not start.
func RunCommand(ctx context.Context, req ExecRequest) (*vmruntime.ExecResult, error) {
	if len(req.Argv) == 0 {
		return nil, errors.New("empty argv")
	}
	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}

	stdout := &limitedBuffer{limit: MaxOutput}
	stderr := &limitedBuffer{limit: MaxOutput}
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(req.Stdin)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = pipeWait
	if err := cmd.Start(); err != nil {
		return startFailure(req.Argv[0], err)
	}

	waitErr := cmd.Wait()
	res := &vmruntime.ExecResult{
		ExitCode:  exitCode(cmd.ProcessState),
		Stdout:    stdout.buf.Bytes(),
		Stderr:    stderr.buf.Bytes(),
		Truncated: stdout.truncated || stderr.truncated,
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("running %q: %w", req.Argv[0], context.Cause(ctx))
	}
	return res, waitError(req.Argv[0], waitErr)
}

// startFailure turns a command that cannot be started into the exit codes
// a shell gives: 127 when it is not found, 126 when it cannot be executed.
// Other errors are the agent's own.
func startFailure(name string, err error) (*vmruntime.ExecResult, error) {
	code := 0
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		code = 127
	case errors.Is(err, fs.ErrPermission):
		code = 126
	default:
		return nil, fmt.Errorf("starting %q: %w", name, err)
	}
	return &vmruntime.ExecResult{ExitCode: code, Stderr: []byte(err.Error() + "\n")}, nil
}

// waitError keeps the errors of cmd.Wait that are not the command's own
// exit status.
func waitError(name string, err error) error {
	var exitErr *exec.ExitError
	if err == nil || errors.As(err, &exitErr) || errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return fmt.Errorf("running %q: %w", name, err)
}

// exitCode returns the exit status, or 128 plus the signal for a command a
// signal ended.
func exitCode(state *os.ProcessState) int {
	if state == nil {
		return -1
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// limitedBuffer keeps the first limit bytes written to it and drops the
// rest. It reports every write as complete, so the command never gets a
// broken pipe.
type limitedBuffer struct {
	buf       bytes.Buffer
	limit     int
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	room := b.limit - b.buf.Len()
	if len(p) > room {
		b.truncated = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}
