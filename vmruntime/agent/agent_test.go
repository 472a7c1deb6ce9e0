package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// fakeHandler records the operations Serve calls and runs exec for real.
type fakeHandler struct {
	mu         sync.Mutex
	calls      []string
	configs    []vmruntime.GuestConfig
	bootID     string
	pingGate   chan struct{} // when set, Ping waits for it
	helloGate  chan struct{} // when set, Hello waits for it
	quiesceErr error
	poweredOff chan struct{}
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{bootID: "fresh", poweredOff: make(chan struct{})}
}

func (h *fakeHandler) record(op string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, op)
}

func (h *fakeHandler) recorded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func (h *fakeHandler) Hello(ctx context.Context) (vmruntime.Hello, error) {
	h.record(OpHello)
	if h.helloGate != nil {
		<-h.helloGate
	}
	return vmruntime.Hello{Version: Version, BootID: h.bootID}, nil
}

func (h *fakeHandler) Configure(ctx context.Context, cfg vmruntime.GuestConfig) error {
	h.record(OpConfigure)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.configs = append(h.configs, cfg)
	return nil
}

func (h *fakeHandler) Ping(ctx context.Context) error {
	h.record(OpPing)
	if h.pingGate != nil {
		<-h.pingGate
	}
	return nil
}

func (h *fakeHandler) Quiesce(ctx context.Context) error {
	h.record(OpQuiesce)
	return h.quiesceErr
}

func (h *fakeHandler) Thaw(ctx context.Context) error {
	h.record(OpThaw)
	return nil
}

func (h *fakeHandler) Shutdown(ctx context.Context) error {
	h.record(OpShutdown)
	return nil
}

func (h *fakeHandler) PowerOff() {
	h.record("poweroff")
	close(h.poweredOff)
}

func (h *fakeHandler) Exec(ctx context.Context, req ExecRequest) (*vmruntime.ExecResult, error) {
	h.record(OpExec)
	return RunCommand(ctx, req)
}

// agentConn is the agent's end of the pipe. It drops the first drop
// responses, and writes stale in front of the first response it sends.
type agentConn struct {
	net.Conn
	mu    sync.Mutex
	drop  int
	stale string
}

func (a *agentConn) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drop > 0 {
		a.drop--
		return len(p), nil
	}
	if a.stale != "" {
		data := append([]byte(a.stale), p...)
		a.stale = ""
		_, err := a.Conn.Write(data)
		return len(p), err
	}
	return a.Conn.Write(p)
}

// startAgent serves h on one end of a pipe and returns a Client on the
// other end and the client's raw connection.
func startAgent(t testing.TB, h Handler, conn *agentConn) (*Client, net.Conn) {
	t.Helper()
	clientEnd, agentEnd := net.Pipe()
	if conn == nil {
		conn = &agentConn{}
	}
	conn.Conn = agentEnd
	served := make(chan error, 1)
	go func() { served <- Serve(context.Background(), conn, h) }()
	c := NewClient(clientEnd)
	t.Cleanup(func() {
		c.Close()
		agentEnd.Close()
		<-served
	})
	return c, clientEnd
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeConfigures(t *testing.T) {
	h := newFakeHandler()
	c, _ := startAgent(t, h, nil)
	cfg := vmruntime.GuestConfig{
		Disks:  []vmruntime.GuestDisk{{Serial: "disk0", MountPath: "/data"}},
		Shares: []vmruntime.GuestShare{{Tag: "src", FSType: "9p", MountPath: "/src"}},
	}

	hello, err := c.Handshake(withTimeout(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if hello.BootID != "fresh" || hello.Version != Version {
		t.Errorf("hello = %+v, want boot id %q and version %q", hello, "fresh", Version)
	}
	if got, want := h.recorded(), []string{OpHello, OpConfigure}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if len(h.configs) != 1 || h.configs[0].Disks[0].MountPath != "/data" || h.configs[0].Shares[0].Tag != "src" {
		t.Errorf("configs = %+v, want one with disk /data and share src", h.configs)
	}
}

func TestHandshakeStaleBytes(t *testing.T) {
	tests := []struct {
		name string
		// staleID returns the id of the stale hello answer, given the
		// id the client's first hello will use.
		staleID    func(next uint64) uint64
		wantBootID string
	}{
		{name: "earlier ids", staleID: func(next uint64) uint64 { return next - 3 }, wantBootID: "fresh"},
		{name: "id zero", staleID: func(uint64) uint64 { return 0 }, wantBootID: "fresh"},
		// Negative control: a stale answer that carries the id of the
		// pending hello is taken, which shows the stale bytes do reach
		// the client and only the id keeps them out.
		{name: "colliding id", staleID: func(next uint64) uint64 { return next }, wantBootID: "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHandler()
			conn := &agentConn{}
			c, raw := startAgent(t, h, conn)
			next := c.nextID.Load() + 1
			conn.mu.Lock()
			conn.stale = `{"id":7,"hel` + "\n" + "garbage\n" +
				fmt.Sprintf(`{"id":%d,"hello":{"version":"old","bootId":"stale"}}`+"\n", tt.staleID(next)) +
				`{"id":9,"err`
			conn.mu.Unlock()
			// A torn request left in the channel before the hello.
			if _, err := raw.Write([]byte(`{"id":12,"op":"pi`)); err != nil {
				t.Fatalf("writing torn request: %v", err)
			}

			hello, err := c.Handshake(withTimeout(t, 10*time.Second), vmruntime.GuestConfig{})
			if err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			if hello.BootID != tt.wantBootID {
				t.Errorf("boot id = %q, want %q", hello.BootID, tt.wantBootID)
			}
			if err := c.Ping(withTimeout(t, 10*time.Second)); err != nil {
				t.Errorf("Ping after stale bytes: %v", err)
			}
		})
	}
}

func TestHandshakeLostAnswer(t *testing.T) {
	h := newFakeHandler()
	c, _ := startAgent(t, h, &agentConn{drop: 2})

	hello, err := c.Handshake(withTimeout(t, 10*time.Second), vmruntime.GuestConfig{})
	if err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if hello.BootID != "fresh" {
		t.Errorf("boot id = %q, want %q", hello.BootID, "fresh")
	}
	calls := h.recorded()
	if n := strings.Count(strings.Join(calls, " "), OpHello); n != 3 {
		t.Errorf("hello sent %d times, want 3 (two answers dropped); calls %v", n, calls)
	}
	if calls[len(calls)-1] != OpConfigure {
		t.Errorf("last call = %q, want %q", calls[len(calls)-1], OpConfigure)
	}
}

func TestLostAnswerThenNextRequest(t *testing.T) {
	h := newFakeHandler()
	c, _ := startAgent(t, h, &agentConn{drop: 1})

	err := c.Ping(withTimeout(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping with lost answer: err = %v, want %v", err, context.DeadlineExceeded)
	}
	if err := c.Ping(withTimeout(t, 10*time.Second)); err != nil {
		t.Errorf("second Ping: %v", err)
	}
}

func TestContextExpires(t *testing.T) {
	h := newFakeHandler()
	h.pingGate = make(chan struct{})
	h.helloGate = make(chan struct{})
	c, _ := startAgent(t, h, nil)
	t.Cleanup(func() {
		close(h.pingGate)
		close(h.helloGate)
	})

	err := c.Ping(withTimeout(t, 100*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping to a hung agent: err = %v, want %v", err, context.DeadlineExceeded)
	}
	_, err = c.Handshake(withTimeout(t, 300*time.Millisecond), vmruntime.GuestConfig{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Handshake to a hung agent: err = %v, want %v", err, context.DeadlineExceeded)
	}
	if slices.Contains(h.recorded(), OpConfigure) {
		t.Errorf("configure sent without a hello response: calls %v", h.recorded())
	}
}

func TestHungRequestDoesNotBlockThaw(t *testing.T) {
	h := newFakeHandler()
	h.pingGate = make(chan struct{})
	c, _ := startAgent(t, h, nil)
	t.Cleanup(func() { close(h.pingGate) })

	err := c.Ping(withTimeout(t, 100*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping to a hung handler: err = %v, want %v", err, context.DeadlineExceeded)
	}
	if err := c.Thaw(withTimeout(t, 10*time.Second)); err != nil {
		t.Errorf("Thaw while a ping hangs: %v", err)
	}
}

func TestCanceledWhileWaitingTurn(t *testing.T) {
	h := newFakeHandler()
	h.pingGate = make(chan struct{})
	c, _ := startAgent(t, h, nil)
	t.Cleanup(func() { close(h.pingGate) })

	first := make(chan error, 1)
	go func() { first <- c.Ping(withTimeout(t, 500*time.Millisecond)) }()
	for !slices.Contains(h.recorded(), OpPing) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Thaw(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Thaw with canceled context: err = %v, want %v", err, context.Canceled)
	}
	<-first
	if slices.Contains(h.recorded(), OpThaw) {
		t.Errorf("canceled Thaw reached the agent: calls %v", h.recorded())
	}
}

func TestOperations(t *testing.T) {
	h := newFakeHandler()
	h.quiesceErr = errors.New("freezing \"/data\": device busy")
	c, _ := startAgent(t, h, nil)
	ctx := withTimeout(t, 10*time.Second)

	if err := c.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	err := c.Quiesce(ctx)
	var remote *RemoteError
	if !errors.As(err, &remote) || remote.Op != OpQuiesce || !strings.Contains(remote.Message, "device busy") {
		t.Errorf("Quiesce: err = %v, want a RemoteError for %q with the agent's message", err, OpQuiesce)
	}
	if err := c.Thaw(ctx); err != nil {
		t.Errorf("Thaw: %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	<-h.poweredOff
	want := []string{OpPing, OpQuiesce, OpThaw, OpShutdown, "poweroff"}
	if got := h.recorded(); !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

func TestExec(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(plain, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		argv          []string
		stdin         string
		wantCode      int
		wantStdoutLen int
		wantStdout    string
		wantStderr    string
		wantTruncated bool
	}{
		{name: "exit code", argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"},
			wantCode: 3, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "stdin", argv: []string{"cat"}, stdin: "token-123",
			wantStdout: "token-123"},
		{name: "stdout bounded", argv: []string{"head", "-c", "3000000", "/dev/zero"},
			wantStdoutLen: MaxOutput, wantTruncated: true},
		{name: "stderr bounded", argv: []string{"sh", "-c", "head -c 1048577 /dev/zero >&2; echo ok"},
			wantStdout: "ok\n", wantTruncated: true},
		{name: "exactly the bound", argv: []string{"head", "-c", "1048576", "/dev/zero"},
			wantStdoutLen: MaxOutput},
		{name: "signal", argv: []string{"sh", "-c", "kill -9 $$"}, wantCode: 137},
		{name: "command not found", argv: []string{"/nonexistent/cmd"}, wantCode: 127,
			wantStderr: "fork/exec /nonexistent/cmd: no such file or directory\n"},
		{name: "not executable", argv: []string{plain}, wantCode: 126,
			wantStderr: "fork/exec " + plain + ": permission denied\n"},
	}
	h := newFakeHandler()
	c, _ := startAgent(t, h, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Exec(withTimeout(t, 20*time.Second), tt.argv, []byte(tt.stdin))
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code = %d, want %d", res.ExitCode, tt.wantCode)
			}
			if tt.wantStdoutLen > 0 && len(res.Stdout) != tt.wantStdoutLen {
				t.Errorf("stdout has %d bytes, want %d", len(res.Stdout), tt.wantStdoutLen)
			}
			if tt.wantStdoutLen == 0 && string(res.Stdout) != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", res.Stdout, tt.wantStdout)
			}
			if tt.wantStderr != "" && string(res.Stderr) != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", res.Stderr, tt.wantStderr)
			}
			if len(res.Stderr) > MaxOutput {
				t.Errorf("stderr has %d bytes, over the %d byte bound", len(res.Stderr), MaxOutput)
			}
			if res.Truncated != tt.wantTruncated {
				t.Errorf("truncated = %v, want %v", res.Truncated, tt.wantTruncated)
			}
		})
	}
}

func TestExecTimeout(t *testing.T) {
	h := newFakeHandler()
	c, _ := startAgent(t, h, nil)

	res, err := c.Exec(withTimeout(t, 2*time.Second), []string{"sh", "-c", "echo started; exec sleep 30"}, nil)
	var remote *RemoteError
	if !errors.As(err, &remote) {
		t.Fatalf("Exec past its deadline: err = %v, want a RemoteError", err)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("stdout = %q, want the output before the timeout", res.Stdout)
	}
	if res.ExitCode != 137 {
		t.Errorf("exit code = %d, want 137 (killed)", res.ExitCode)
	}
}

func TestExecRejects(t *testing.T) {
	tests := []struct {
		name  string
		argv  []string
		stdin []byte
		want  string
	}{
		{name: "empty argv", want: "empty argv"},
		{name: "stdin too large", argv: []string{"cat"}, stdin: make([]byte, MaxStdin+1), want: "over the"},
	}
	h := newFakeHandler()
	c, _ := startAgent(t, h, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Exec(withTimeout(t, 10*time.Second), tt.argv, tt.stdin)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Exec: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestClosedConnection(t *testing.T) {
	h := newFakeHandler()
	h.pingGate = make(chan struct{})
	c, _ := startAgent(t, h, nil)
	t.Cleanup(func() { close(h.pingGate) })

	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(withTimeout(t, 10*time.Second)) }()
	for !slices.Contains(h.recorded(), OpPing) {
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-pinged; !errors.Is(err, ErrClosed) {
		t.Errorf("Ping in flight at Close: err = %v, want %v", err, ErrClosed)
	}
	if err := c.Thaw(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Thaw after Close: err = %v, want %v", err, ErrClosed)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServeBadLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "not json", in: "hello\n", want: `{"id":0,"error":"invalid request`},
		{name: "unknown op", in: `{"id":4,"op":"dance"}` + "\n", want: `{"id":4,"error":"unknown operation \"dance\""}`},
		{name: "configure without config", in: `{"id":5,"op":"configure"}` + "\n", want: `{"id":5,"error":"configure request has no config"}`},
		{name: "exec without argv", in: `{"id":6,"op":"exec","exec":{}}` + "\n", want: `{"id":6,"error":"exec request has no argv"}`},
		{name: "too long", in: `{"id":7,"op":"ping","x":"` + strings.Repeat("a", MaxLine) + "\"}\n", want: `{"id":0,"error":"message longer`},
		{name: "blank lines skipped", in: "\n\n  \n" + `{"id":8,"op":"ping"}` + "\n", want: `{"id":8}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			rw := struct {
				io.Reader
				io.Writer
			}{strings.NewReader(tt.in), &out}
			err := Serve(t.Context(), rw, newFakeHandler())
			if !errors.Is(err, io.EOF) {
				t.Errorf("Serve: err = %v, want %v", err, io.EOF)
			}
			if !strings.HasPrefix(out.String(), tt.want) || strings.Count(out.String(), "\n") != 1 {
				t.Errorf("output = %.200q, want one line starting %q", out.String(), tt.want)
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // "ERR" for ErrLineTooLong
	}{
		{name: "lines", in: "a\nbb\n", want: []string{"a", "bb"}},
		{name: "partial line at end dropped", in: "a\nbb", want: []string{"a"}},
		{name: "long line skipped", in: "a\n" + strings.Repeat("x", 40) + "\nb\n", want: []string{"a", "ERR", "b"}},
		{name: "line at the limit", in: strings.Repeat("y", 32) + "\n", want: []string{strings.Repeat("y", 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			for {
				line, err := readLine(r, 32)
				if errors.Is(err, io.EOF) {
					break
				}
				if errors.Is(err, ErrLineTooLong) {
					got = append(got, "ERR")
					continue
				}
				if err != nil {
					t.Fatalf("readLine: %v", err)
				}
				got = append(got, string(line))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}
