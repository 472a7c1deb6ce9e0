package sim

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

func TestParseLatencies(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		spec    string
		want    Latencies
		wantErr string
	}{
		{name: "empty", spec: ""},
		{name: "two", spec: "boot=200ms,save=500ms", want: Latencies{Boot: 200 * ms, Save: 500 * ms}},
		{name: "spaces", spec: " boot = 1s , ", want: Latencies{Boot: time.Second}},
		{name: "all then one", spec: "all=10ms,kill=0s", want: Latencies{10 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms, 0}},
		{name: "every key", spec: "boot=1ms,connect=2ms,pause=3ms,resume=4ms,save=5ms,restore=6ms,stop=7ms,kill=8ms",
			want: Latencies{1 * ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 6 * ms, 7 * ms, 8 * ms}},
		{name: "unknown key", spec: "reboot=1s", wantErr: `unknown operation "reboot"`},
		{name: "no equals", spec: "boot", wantErr: `missing "="`},
		{name: "bad duration", spec: "boot=fast", wantErr: `invalid duration`},
		{name: "negative", spec: "boot=-1s", wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLatencies(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    []Fault
		wantErr string
	}{
		{name: "empty", spec: ""},
		{name: "three", spec: "save-fail=web,restore-fail=db,hang-agent=ci",
			want: []Fault{FailNextSave("web"), FailNextRestore("db"), HangAgent("ci")}},
		{name: "crash and release", spec: "crash=web, release-agent=ci",
			want: []Fault{Crash("web"), ReleaseAgent("ci")}},
		{name: "unknown kind", spec: "explode=web", wantErr: `unknown kind "explode"`},
		{name: "missing vm", spec: "crash=", wantErr: `invalid vm name ""`},
		{name: "path as vm", spec: "crash=../x", wantErr: `invalid vm name`},
		{name: "no equals", spec: "crash", wantErr: `missing "="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFaults(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFaultStringRoundTrip(t *testing.T) {
	f := HangAgent("ci")
	got, err := ParseFaults(f.String())
	if err != nil || len(got) != 1 || got[0] != f {
		t.Errorf("ParseFaults(%q) = %v, %v; want %v", f.String(), got, err, f)
	}
}

func TestNewRequiresStateRoot(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a state folder succeeded")
	}
}

func TestAdoptRejectsOtherStateRoot(t *testing.T) {
	r := newRuntime(t, Options{})
	if _, err := r.Adopt(t.Context(), t.TempDir()); err == nil {
		t.Error("Adopt of another state folder succeeded")
	}
}

func TestExecCommands(t *testing.T) {
	g := &guest{BootID: "b00t"}
	tests := []struct {
		name     string
		argv     []string
		wantCode int
		wantOut  string
	}{
		{"echo", []string{"echo", "hello", "world"}, 0, "hello world\n"},
		{"boot id", []string{"cat", bootIDPath}, 0, "b00t\n"},
		{"get unset", []string{"get", "k"}, 1, ""},
		{"set", []string{"set", "k", "v"}, 0, ""},
		{"get set", []string{"get", "k"}, 0, "v\n"},
		{"true", []string{"true"}, 0, ""},
		{"false", []string{"false"}, 1, ""},
		{"unknown", []string{"reboot"}, 127, ""},
		{"empty", nil, 127, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := execute(g, tt.argv)
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", res.ExitCode, tt.wantCode, res.Stderr)
			}
			if string(res.Stdout) != tt.wantOut {
				t.Errorf("stdout = %q, want %q", res.Stdout, tt.wantOut)
			}
		})
	}
}

func TestConnectBootIDMatchesExec(t *testing.T) {
	r := newRuntime(t, Options{})
	hello := boot(t, r, machine("web"))
	if hello.Version != AgentVersion {
		t.Errorf("hello.Version = %q, want %q", hello.Version, AgentVersion)
	}
	res := execIn(t, r, "web", "cat", bootIDPath)
	if string(res.Stdout) != hello.BootID+"\n" {
		t.Errorf("boot_id = %q, want %q", res.Stdout, hello.BootID)
	}
	var _ vmruntime.Agent = (*agent)(nil)
}
