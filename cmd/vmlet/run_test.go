package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/reconcile"
)

func TestRunFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown runtime", args: []string{"--runtime", "xen"}, want: `invalid --runtime "xen"`},
		{name: "unknown status mode", args: []string{"--status", "both"}, want: `invalid --status "both"`},
		{name: "unknown log format", args: []string{"--log-format", "xml"}, want: `invalid --log-format "xml"`},
		{name: "negative verbosity", args: []string{"-v", "-1"}, want: "invalid -v -1"},
		{name: "bad sim latency", args: []string{"--runtime", "sim", "--sim-latency", "boot=fast"}, want: "invalid --sim-latency"},
		{name: "bad sim fault", args: []string{"--runtime", "sim", "--sim-faults", "explode=web"}, want: "invalid --sim-faults"},
		{name: "sim flag with qemu", args: []string{"--runtime", "qemu", "--sim-faults", "crash=web"}, want: "--sim-faults applies to --runtime sim only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			args := append([]string{"run", "--dir", filepath.Join(root, "m"), "--state-dir", filepath.Join(root, "s")}, tt.args...)
			_, _, err := runCommand(t, args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run %q error = %v, want one containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestDaemonOptionsStatusMode(t *testing.T) {
	opts := &globalOptions{dir: "m", stateDir: "s", hostLock: "l"}
	got, err := daemonOptions(opts, &runOptions{runtime: "sim", status: "state", resync: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got.StatusMode != reconcile.StatusState || got.Resync != time.Minute || got.HostLock != "l" {
		t.Errorf("daemonOptions = %+v, want status mode state, resync 1m and host lock l", got)
	}
}

func TestNewLoggerVerbosity(t *testing.T) {
	tests := []struct {
		name      string
		format    string
		verbosity int
		want      []string
		wantNot   []string
	}{
		{name: "text default", format: "text", verbosity: 0, want: []string{"level=INFO msg=transition"}, wantNot: []string{"event"}},
		{name: "text v1", format: "text", verbosity: 1, want: []string{"level=V1 msg=event", "msg=transition"}, wantNot: []string{"detail"}},
		{name: "json v2", format: "json", verbosity: 2, want: []string{`"level":"V2","msg":"detail"`, `"msg":"event"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(&buf, tt.format, tt.verbosity)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("transition", "vm", "web")
			log.V(1).Info("event")
			log.V(2).Info("detail")
			for _, want := range tt.want {
				if !strings.Contains(buf.String(), want) {
					t.Errorf("log output %q does not contain %q", buf.String(), want)
				}
			}
			for _, not := range tt.wantNot {
				if strings.Contains(buf.String(), not) {
					t.Errorf("log output %q contains %q", buf.String(), not)
				}
			}
		})
	}
}

// TestRunSimStopsOnCancel runs the daemon command's body on the sim
// runtime and cancels it: it returns nil, as on SIGTERM.
func TestRunSimStopsOnCancel(t *testing.T) {
	root := t.TempDir()
	opts := &globalOptions{dir: filepath.Join(root, "m"), stateDir: filepath.Join(root, "s"), hostLock: filepath.Join(root, "l")}
	ro := &runOptions{runtime: "sim", status: "inline", logFormat: "text", resync: time.Minute}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var stderr bytes.Buffer
	if err := runDaemon(ctx, opts, ro, &stderr); err != nil {
		t.Fatalf("runDaemon: %v", err)
	}
	if !strings.Contains(stderr.String(), "Daemon stopped") {
		t.Errorf("log = %q, want the daemon's stop logged", stderr.String())
	}
}
