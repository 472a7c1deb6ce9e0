package controller

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// apiRuntime is a vmruntime.Runtime whose only working part is Agent: the
// API needs nothing else.
type apiRuntime struct {
	vmruntime.Runtime
	agents map[string]*recordingAgent
}

func (r *apiRuntime) Agent(name string) (vmruntime.Agent, error) {
	if a, ok := r.agents[name]; ok {
		return a, nil
	}
	return nil, vmruntime.ErrNoAgent
}

// recordingAgent records the commands it runs and answers each with the
// exit code of its first argument's length and the joined argv as output.
type recordingAgent struct {
	vmruntime.Agent
	mu    sync.Mutex
	calls [][]string
	stdin [][]byte
}

func (a *recordingAgent) Exec(_ context.Context, argv []string, stdin []byte) (vmruntime.ExecResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, argv)
	a.stdin = append(a.stdin, stdin)
	if argv[0] == "fail" {
		return vmruntime.ExecResult{}, errors.New("agent connection reset")
	}
	return vmruntime.ExecResult{ExitCode: len(argv[0]), Stdout: []byte(strings.Join(argv, " "))}, nil
}

// startAPI serves the API for rt on a socket in a fresh state folder and
// returns a client and the folder.
func startAPI(t *testing.T, rt vmruntime.Runtime) (*APIClient, string) {
	t.Helper()
	stateDir := t.TempDir()
	socket := filepath.Join(stateDir, APISocketName)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeAPI(ctx, socket, rt, stateDir) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAPI returned %v after shutdown", err)
		}
	})
	waitForSocket(t, socket)
	return NewAPIClient(socket), stateDir
}

func waitForSocket(t *testing.T, path string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("API socket %q never appeared", path)
}

func TestAPIExec(t *testing.T) {
	agent := &recordingAgent{}
	client, _ := startAPI(t, &apiRuntime{agents: map[string]*recordingAgent{"web": agent}})

	tests := []struct {
		name     string
		vm       string
		argv     []string
		stdin    []byte
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "exit code and output", vm: "web", argv: []string{"cat", "/etc/hostname"}, wantCode: 3, wantOut: "cat /etc/hostname"},
		{name: "stdin passed", vm: "web", argv: []string{"sh"}, stdin: []byte("echo hi\n"), wantCode: 2, wantOut: "sh"},
		{name: "no agent", vm: "db", argv: []string{"true"}, wantErr: `vm "db" has no agent connection`},
		{name: "invalid name", vm: "Bad_Name", argv: []string{"true"}, wantErr: `invalid vm name "Bad_Name"`},
		{name: "empty argv", vm: "web", argv: nil, wantErr: "argv is empty"},
		{name: "agent error", vm: "web", argv: []string{"fail"}, wantErr: "agent connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result, err := client.Exec(t.Context(), tt.vm, ExecRequest{Argv: tt.argv, Stdin: tt.stdin})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Exec error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if result.ExitCode != tt.wantCode {
				t.Errorf("exit code = %d, want %d", result.ExitCode, tt.wantCode)
			}
			if string(result.Stdout) != tt.wantOut {
				t.Errorf("stdout = %q, want %q", result.Stdout, tt.wantOut)
			}
		})
	}

	if got := agent.stdin[1]; string(got) != "echo hi\n" {
		t.Errorf("agent got stdin %q, want %q", got, "echo hi\n")
	}
}

func TestAPISocketMode(t *testing.T) {
	_, stateDir := startAPI(t, &apiRuntime{})
	info, err := os.Stat(filepath.Join(stateDir, APISocketName))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("socket mode = %o, want 600", mode)
	}
}

func TestAPIReplacesStaleSocket(t *testing.T) {
	stateDir := t.TempDir()
	socket := filepath.Join(stateDir, APISocketName)
	if err := os.WriteFile(socket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeAPI(ctx, socket, &apiRuntime{}, stateDir) }()

	client := NewAPIClient(socket)
	var err error
	for range 500 {
		_, err = client.Exec(t.Context(), "web", ExecRequest{Argv: []string{"true"}})
		if err != nil && strings.Contains(err.Error(), "no agent connection") {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if serveErr := <-done; serveErr != nil {
		t.Fatalf("ServeAPI: %v", serveErr)
	}
	if err == nil || !strings.Contains(err.Error(), "no agent connection") {
		t.Fatalf("the API never answered over the replaced socket: last error %v", err)
	}
}

func TestAPILogs(t *testing.T) {
	client, stateDir := startAPI(t, &apiRuntime{})
	logPath := filepath.Join(stateDir, "vms", "web", vmruntime.ConsoleLogFile)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, []byte("Linux version 6.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := client.Logs(t.Context(), "web", false, &out); err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if out.String() != "Linux version 6.1\n" {
		t.Errorf("logs = %q", out.String())
	}

	err := client.Logs(t.Context(), "db", false, &out)
	if err == nil || !strings.Contains(err.Error(), "no console log") {
		t.Errorf("logs of a VM without a log: err = %v", err)
	}
}

func TestAPILogsFollow(t *testing.T) {
	client, stateDir := startAPI(t, &apiRuntime{})
	logPath := filepath.Join(stateDir, "vms", "web", vmruntime.ConsoleLogFile)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	reader, writer := newLineWatcher("second")
	done := make(chan error, 1)
	go func() { done <- client.Logs(ctx, "web", true, writer) }()

	file, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	file.WriteString("second\n")
	file.Close()

	select {
	case <-reader:
	case <-time.After(30 * time.Second):
		t.Fatal("a line appended to the log never reached the follower")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs after cancel: %v", err)
	}
	if got := writer.String(); got != "first\nsecond\n" {
		t.Errorf("followed output = %q", got)
	}
}

// lineWatcher is an io.Writer that closes its channel once what was written
// contains want.
type lineWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func newLineWatcher(want string) (<-chan struct{}, *lineWatcher) {
	w := &lineWatcher{want: want, seen: make(chan struct{})}
	return w.seen, w
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestAPIClientNoDaemon(t *testing.T) {
	client := NewAPIClient(filepath.Join(t.TempDir(), APISocketName))
	_, err := client.Exec(t.Context(), "web", ExecRequest{Argv: []string{"true"}})
	if !errors.Is(err, ErrDaemonNotRunning) {
		t.Fatalf("Exec without a daemon: err = %v, want ErrDaemonNotRunning", err)
	}
}
