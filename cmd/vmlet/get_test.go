package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
)

var getNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// withStatus returns data with st written in, st.ObservedSpecHash set to
// the spec's hash unless stale.
func withStatus(t *testing.T, data string, st *spec.Status, stale bool) string {
	t.Helper()
	m := spec.Parse("vm.yaml", []byte(data))
	if m.VM != nil && !stale {
		st.ObservedSpecHash = m.VM.SpecHash()
	}
	out, err := spec.ReplaceStatus([]byte(data), st)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func readyStatus(phase spec.Phase, ready spec.ConditionStatus, msg string, at time.Time) *spec.Status {
	return &spec.Status{Phase: phase, Conditions: []spec.Condition{
		{Type: spec.ConditionValid, Status: spec.ConditionTrue, LastTransitionTime: spec.Time{Time: at.Add(-time.Hour)}},
		{Type: spec.ConditionReady, Status: ready, Message: msg, LastTransitionTime: spec.Time{Time: at}},
	}}
}

// getFixture lays out a manifest folder and a state folder.
func getFixture(t *testing.T) (dir, state string) {
	t.Helper()
	dir, state = t.TempDir(), t.TempDir()
	running := withStatus(t, manifestNamed("alpha"),
		readyStatus(spec.PhaseRunning, spec.ConditionTrue, "guest agent answered", getNow.Add(-5*time.Minute)), false)
	stale := withStatus(t, manifestNamed("bravo"),
		readyStatus(spec.PhaseRunning, spec.ConditionTrue, "guest agent answered", getNow.Add(-2*time.Hour)), true)
	invalid := withStatus(t, strings.Replace(manifestNamed("charlie"), "cpus: 1", "cpus: 0", 1),
		readyStatus(spec.PhaseRunning, spec.ConditionTrue, "", getNow), true)
	writeFiles(t, dir, map[string]string{
		"alpha.yaml":   running,
		"bravo.yaml":   stale,
		"charlie.yaml": invalid,
		"delta.yaml":   manifestNamed("delta"),
		"echo.yaml":    "apiVersion: [\n",
	})
	deltaHash := spec.Parse("d.yaml", []byte(manifestNamed("delta"))).VM.SpecHash()
	st := readyStatus(spec.PhaseSuspended, spec.ConditionFalse, "suspended", getNow.Add(-30*time.Second))
	st.ObservedSpecHash = deltaHash
	if err := spec.WriteStatusFile(spec.StatusFilePath(state, "delta"), st); err != nil {
		t.Fatal(err)
	}
	return dir, state
}

func TestGetTable(t *testing.T) {
	dir, state := getFixture(t)
	var out strings.Builder
	if err := runGet(&out, getRequest{dir: dir, stateDir: state}, getNow); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"NAME", "DESIRED", "PHASE", "READY", "AGE", "MESSAGE"},
		{"alpha", "Running", "Running", "True", "5m", "guest agent answered"},
		{"bravo", "Running", "Running", "-", "120m", "not yet observed: the status is for an earlier spec"},
		{"charlie", "Running", "Invalid", "-", "0s", `charlie.yaml:7: spec.cpus: 0 is out of range (use 1 to 256) (still Running from the last valid spec)`},
		{"delta", "Running", "Suspended", "False", "30s", "suspended"},
		{"echo.yaml", "-", "Invalid", "-", "-", "echo.yaml:1: invalid YAML:"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, cols := range want {
		fields := strings.Fields(lines[i])
		if len(fields) < len(cols)-1 {
			t.Errorf("line %d = %q", i, lines[i])
			continue
		}
		for j, c := range cols[:5] {
			if fields[j] != c {
				t.Errorf("line %d column %d = %q, want %q (line %q)", i, j, fields[j], c, lines[i])
			}
		}
		if !strings.Contains(lines[i], cols[5]) {
			t.Errorf("line %d = %q, want MESSAGE %q", i, lines[i], cols[5])
		}
	}
}

func TestGetOutputs(t *testing.T) {
	dir, state := getFixture(t)
	tests := []struct {
		name, output, vm string
		check            func(t *testing.T, out string)
	}{
		{"name", "name", "", func(t *testing.T, out string) {
			want := "virtualmachine/alpha\nvirtualmachine/bravo\nvirtualmachine/charlie\nvirtualmachine/delta\nvirtualmachine/echo.yaml\n"
			if out != want {
				t.Errorf("output = %q, want %q", out, want)
			}
		}},
		{"json list", "json", "", func(t *testing.T, out string) {
			var list struct {
				Kind  string                `json:"kind"`
				Items []spec.VirtualMachine `json:"items"`
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatal(err)
			}
			if list.Kind != "List" || len(list.Items) != 5 {
				t.Errorf("kind %q with %d items", list.Kind, len(list.Items))
			}
		}},
		{"json one invalid", "json", "charlie", func(t *testing.T, out string) {
			var vm spec.VirtualMachine
			if err := json.Unmarshal([]byte(out), &vm); err != nil {
				t.Fatal(err)
			}
			if !hasCondition(vm.Status, spec.ConditionValid, spec.ConditionFalse) {
				t.Errorf("status = %+v, want Valid=False", vm.Status)
			}
		}},
		{"yaml one", "yaml", "delta", func(t *testing.T, out string) {
			if !strings.Contains(out, "phase: Suspended") || !strings.Contains(out, "name: delta") {
				t.Errorf("output:\n%s", out)
			}
		}},
		{"wide", "wide", "alpha", func(t *testing.T, out string) {
			if !strings.Contains(out, "CPUS") || !strings.Contains(out, "256Mi") || !strings.Contains(out, "alpha.yaml") {
				t.Errorf("output:\n%s", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			req := getRequest{dir: dir, stateDir: state, name: tt.vm, output: tt.output}
			if err := runGet(&out, req, getNow); err != nil {
				t.Fatal(err)
			}
			tt.check(t, out.String())
		})
	}
}

func hasCondition(st *spec.Status, kind string, status spec.ConditionStatus) bool {
	if st == nil {
		return false
	}
	for _, c := range st.Conditions {
		if c.Type == kind && c.Status == status {
			return true
		}
	}
	return false
}

func TestGetErrors(t *testing.T) {
	dir, state := getFixture(t)
	tests := []struct {
		name string
		req  getRequest
		want string
	}{
		{"unknown VM", getRequest{dir: dir, stateDir: state, name: "zulu"}, `virtual machine "zulu" not found in "` + dir + `"`},
		{"unknown format", getRequest{dir: dir, stateDir: state, output: "xml"}, `unknown output format "xml" (use wide, yaml, json or name)`},
		{"missing folder", getRequest{dir: filepath.Join(dir, "none"), stateDir: state}, `listing VMs in "` + filepath.Join(dir, "none") + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runGet(&strings.Builder{}, tt.req, getNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestGetReadsDirFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"vm.yaml": manifestNamed("fromenv")})
	t.Setenv("VMLET_DIR", dir)
	t.Setenv("VMLET_STATE_DIR", t.TempDir())
	out, _, err := runCommand(t, "get", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	if out != "virtualmachine/fromenv\n" {
		t.Errorf("output = %q", out)
	}
}

func TestGetFlagAfterName(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"vm.yaml": manifestNamed("vm")})
	out, _, err := runCommand(t, "get", "vm", "-o", "name", "--dir", dir, "--state-dir", t.TempDir())
	if err != nil || out != "virtualmachine/vm\n" {
		t.Errorf("output = %q, error %v", out, err)
	}
}

func TestGetMessage(t *testing.T) {
	stale := spec.Condition{Type: spec.ConditionCheckpointStale, Status: spec.ConditionTrue, Message: "disk changed"}
	restart := spec.Condition{Type: spec.ConditionRestartRequired, Status: spec.ConditionTrue, Message: "cpus changed"}
	current := spec.Condition{Type: spec.ConditionCheckpointStale, Status: spec.ConditionFalse, Message: "checkpoint current"}
	ready := spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionFalse, Message: "no agent\nthawing failed"}
	tests := []struct {
		name  string
		conds []spec.Condition
		want  string
	}{
		{name: "checkpoint stale", conds: []spec.Condition{ready, stale}, want: "CheckpointStale: disk changed"},
		{name: "restart required", conds: []spec.Condition{ready, restart}, want: "RestartRequired: cpus changed"},
		{name: "false stale is no problem", conds: []spec.Condition{current, ready}, want: "no agent; thawing failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := spec.Parse("web.yaml", []byte(manifestNamed("web")))
			row := vmRow{m: m, status: &spec.Status{ObservedSpecHash: m.VM.SpecHash(), Conditions: tt.conds}}
			if got := row.message(); got != tt.want {
				t.Errorf("message = %q, want %q", got, tt.want)
			}
		})
	}
}
