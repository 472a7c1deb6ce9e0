package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeQMP is a QMP server on one end of a socketpair. It replies to each
// command with the reply its script gives, after any lines the script puts
// before it, and records the commands and the descriptors passed along.
type fakeQMP struct {
	conn *net.UnixConn
	// replies maps a command to the members of its reply besides the id,
	// such as `"return": {}`; a command without an entry gets no reply.
	replies map[string]string
	// before maps a command to raw lines sent ahead of its reply.
	before map[string][]string

	mu       sync.Mutex
	commands []string
	fds      int
}

// startFakeQMP returns a monitor connected to a fake server that runs
// until the test ends.
func startFakeQMP(t *testing.T, replies map[string]string, before map[string][]string) (*monitor, *fakeQMP) {
	t.Helper()
	client, server := socketpair(t)
	fake := &fakeQMP{conn: server, replies: replies, before: before}
	go fake.serve()
	mon, err := newMonitor(withTimeout(t, 5*time.Second), client)
	if err != nil {
		t.Fatalf("newMonitor: %v", err)
	}
	t.Cleanup(func() { mon.close() })
	return mon, fake
}

func socketpair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fileConn(t, fds[0]), fileConn(t, fds[1])
}

func fileConn(t *testing.T, fd int) *net.UnixConn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn.(*net.UnixConn)
}

// serve reads requests until the connection closes.
func (f *fakeQMP) serve() {
	fmt.Fprintln(f.conn, `{"QMP": {"version": {}, "capabilities": []}}`)
	buf := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := f.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		f.countFDs(oob[:oobn])
		for _, line := range bytes.Split(bytes.TrimSpace(buf[:n]), []byte("\n")) {
			f.answer(line)
		}
	}
}

func (f *fakeQMP) countFDs(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, msg := range msgs {
		fds, err := syscall.ParseUnixRights(&msg)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
		f.mu.Lock()
		f.fds += len(fds)
		f.mu.Unlock()
	}
}

func (f *fakeQMP) answer(line []byte) {
	var req qmpRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	f.mu.Lock()
	f.commands = append(f.commands, req.Execute)
	f.mu.Unlock()
	for _, extra := range f.before[req.Execute] {
		fmt.Fprintln(f.conn, extra)
	}
	if req.Execute == "qmp_capabilities" {
		fmt.Fprintf(f.conn, `{"return": {}, "id": %d}`+"\n", req.ID)
		return
	}
	if reply, ok := f.replies[req.Execute]; ok {
		fmt.Fprintf(f.conn, `{%s, "id": %d}`+"\n", reply, req.ID)
	}
}

func (f *fakeQMP) recorded() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...), f.fds
}

func TestMonitorExecute(t *testing.T) {
	mon, fake := startFakeQMP(t, map[string]string{
		"query-status": `"return": {"status": "running", "running": true}`,
	}, map[string][]string{
		"query-status": {
			`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`,
			`{"return": {"status": "stale"}, "id": 999}`,
		},
	})
	var reply struct {
		Status string `json:"status"`
	}
	if err := mon.execute(t.Context(), "query-status", nil, &reply); err != nil {
		t.Fatalf("execute: %v", err)
	}
	if reply.Status != "running" {
		t.Errorf("status = %q, want running (the event and the stale reply are skipped)", reply.Status)
	}
	commands, _ := fake.recorded()
	want := []string{"qmp_capabilities", "query-status"}
	if fmt.Sprint(commands) != fmt.Sprint(want) {
		t.Errorf("commands = %v, want %v", commands, want)
	}
}

func TestMonitorErrorReply(t *testing.T) {
	mon, _ := startFakeQMP(t, map[string]string{
		"cont": `"error": {"class": "GenericError", "desc": "migration is in progress"}`,
	}, nil)
	err := mon.execute(t.Context(), "cont", nil, nil)
	var qmpErr *QMPError
	if !errors.As(err, &qmpErr) {
		t.Fatalf("execute = %v, want a *QMPError", err)
	}
	if qmpErr.Command != "cont" || qmpErr.Class != "GenericError" || qmpErr.Desc != "migration is in progress" {
		t.Errorf("QMPError = %+v", qmpErr)
	}
}

func TestMonitorTimeout(t *testing.T) {
	mon, _ := startFakeQMP(t, map[string]string{}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := mon.execute(ctx, "migrate", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("execute without a reply = %v, want DeadlineExceeded", err)
	}
}

// TestMonitorLateReplySkipped checks that a reply arriving after its
// command timed out is not taken as the reply to the next command.
func TestMonitorLateReplySkipped(t *testing.T) {
	mon, _ := startFakeQMP(t, map[string]string{
		"query-migrate": `"return": {"status": "completed"}`,
	}, map[string][]string{
		"query-migrate": {`{"return": {"status": "late"}, "id": 2}`},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := mon.execute(ctx, "stop", nil, nil); err == nil {
		t.Fatal("stop without a reply succeeded")
	}
	var info migrationInfo
	if err := mon.execute(t.Context(), "query-migrate", nil, &info); err != nil {
		t.Fatalf("query-migrate: %v", err)
	}
	if info.Status != "completed" {
		t.Errorf("status = %q, want completed", info.Status)
	}
}

func TestMonitorPassesFile(t *testing.T) {
	mon, fake := startFakeQMP(t, map[string]string{"getfd": `"return": {}`}, nil)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := mon.executeWithFile(t.Context(), "getfd", map[string]string{"fdname": "x"}, nil, f); err != nil {
		t.Fatalf("executeWithFile: %v", err)
	}
	if _, fds := fake.recorded(); fds != 1 {
		t.Errorf("server received %d descriptors, want 1", fds)
	}
}

func TestMonitorRejectsMissingGreeting(t *testing.T) {
	client, server := socketpair(t)
	fmt.Fprintln(server, `{"return": {}, "id": 1}`)
	_, err := newMonitor(withTimeout(t, 5*time.Second), client)
	if err == nil {
		t.Fatal("newMonitor accepted a stream without a greeting")
	}
}

func TestMonitorSkipsTornLine(t *testing.T) {
	mon, _ := startFakeQMP(t, map[string]string{
		"query-status": `"return": {"status": "paused"}`,
	}, map[string][]string{
		"query-status": {`"status": "running"}, "id": 1}`},
	})
	var reply struct {
		Status string `json:"status"`
	}
	if err := mon.execute(t.Context(), "query-status", nil, &reply); err != nil {
		t.Fatalf("execute after a torn line: %v", err)
	}
	if reply.Status != "paused" {
		t.Errorf("status = %q, want paused", reply.Status)
	}
}
