package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
)

// clientFolder is a manifest folder with a kernel file, so that manifests
// in it validate without warnings.
func clientFolder(t *testing.T) (dir, stateDir string) {
	t.Helper()
	root := t.TempDir()
	dir, stateDir = filepath.Join(root, "manifests"), filepath.Join(root, "state")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), nil, 0o644))
	return dir, stateDir
}

func manifestText(name string, desired spec.DesiredState) string {
	return fmt.Sprintf(stressManifest, 1, name, 1, desired)
}

// runningStatus is a status written for data's spec, or for another spec
// when stale.
func runningStatus(t *testing.T, data string, stale bool) *spec.Status {
	t.Helper()
	m := spec.Parse("x.yaml", []byte(data))
	if m.VM == nil {
		t.Fatalf("fixture does not parse: %v", m.Err)
	}
	hash := m.VM.SpecHash()
	if stale {
		hash = "000000000000"
	}
	return &spec.Status{
		Phase:            spec.PhaseRunning,
		ObservedSpecHash: hash,
		Conditions: []spec.Condition{{
			Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: "AgentReady",
			Message: "guest agent answered", LastTransitionTime: spec.Time{Time: time.Unix(1_800_000_000, 0)},
		}},
	}
}

func withStatusText(t *testing.T, data string, st *spec.Status) string {
	t.Helper()
	out, err := spec.ReplaceStatus([]byte(data), st)
	must(t, err)
	return string(out)
}

func readText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return string(data)
}

func TestApplyNewManifest(t *testing.T) {
	dir, _ := clientFolder(t)
	input := filepath.Join(t.TempDir(), "in.yaml")
	must(t, os.WriteFile(filepath.Join(filepath.Dir(input), "vmlinuz"), nil, 0o644))
	text := manifestText("web", spec.Running)
	must(t, os.WriteFile(input, []byte(withStatusText(t, text, runningStatus(t, text, false))), 0o644))

	stdout, stderr, err := runCommand(t, "apply", "-f", input, "--dir", dir)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "virtualmachine/web created") {
		t.Errorf("apply output = %q, want it to say web was created", stdout)
	}
	if got := readText(t, filepath.Join(dir, "web.yaml")); got != text {
		t.Errorf("web.yaml =\n%s\nwant the input without its status:\n%s", got, text)
	}
}

func TestApplyKeepsStatusAndFile(t *testing.T) {
	dir, _ := clientFolder(t)
	old := manifestText("web", spec.Running)
	st := runningStatus(t, old, false)
	existing := filepath.Join(dir, "custom-name.yaml")
	must(t, os.WriteFile(existing, []byte(withStatusText(t, old, st)), 0o640))

	input := filepath.Join(t.TempDir(), "web.yaml")
	must(t, os.WriteFile(filepath.Join(filepath.Dir(input), "vmlinuz"), nil, 0o644))
	text := manifestText("web", spec.Stopped)
	must(t, os.WriteFile(input, []byte(text), 0o644))

	if _, stderr, err := runCommand(t, "apply", "-f", input, "--dir", dir); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	if want := withStatusText(t, text, st); readText(t, existing) != want {
		t.Errorf("custom-name.yaml =\n%s\nwant the input followed by the status already there:\n%s", readText(t, existing), want)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.yaml")); err == nil {
		t.Error("apply created web.yaml beside the file that already holds web")
	}
	info, err := os.Stat(existing)
	must(t, err)
	if info.Mode().Perm() != 0o640 {
		t.Errorf("mode after apply = %v, want 0640 kept", info.Mode().Perm())
	}
}

func TestApplyJSONInputFromStdin(t *testing.T) {
	dir, _ := clientFolder(t)
	text := `{"apiVersion": "vmlet.dev/v1alpha1", "kind": "VirtualMachine", "metadata": {"name": "db"},
 "spec": {"desiredState": "Stopped", "cpus": 1, "memory": "64Mi", "kernel": "/dev/null"}}
`
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(text))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"apply", "-f", "-", "--dir", dir})
	if err := root.Execute(); err != nil {
		t.Fatalf("apply -f -: %v\n%s", err, errOut.String())
	}
	if got := readText(t, filepath.Join(dir, "db.json")); got != text {
		t.Errorf("db.json =\n%s\nwant the JSON input as written", got)
	}
}

func TestApplyRejectsInvalidWritesNothing(t *testing.T) {
	tests := []struct {
		name    string
		dryRun  bool
		invalid bool
	}{
		{name: "invalid input", invalid: true},
		{name: "dry run", dryRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := clientFolder(t)
			in := t.TempDir()
			must(t, os.WriteFile(filepath.Join(in, "vmlinuz"), nil, 0o644))
			must(t, os.WriteFile(filepath.Join(in, "a.yaml"), []byte(manifestText("a", spec.Running)), 0o644))
			second := manifestText("b", spec.Running)
			if tt.invalid {
				second = strings.Replace(second, "cpus: 1", "cpus: 0", 1)
			}
			must(t, os.WriteFile(filepath.Join(in, "b.yaml"), []byte(second), 0o644))
			args := []string{"apply", "-f", in, "--dir", dir}
			if tt.dryRun {
				args = append(args, "--dry-run")
			}

			_, stderr, err := runCommand(t, args...)
			if tt.invalid && exitCode(err) != 1 {
				t.Errorf("apply of an invalid folder exit code = %d, want 1", exitCode(err))
			}
			if tt.invalid && !strings.Contains(stderr, "spec.cpus") {
				t.Errorf("apply stderr = %q, want the validation error on spec.cpus", stderr)
			}
			if !tt.invalid && err != nil {
				t.Errorf("apply --dry-run: %v", err)
			}
			for _, name := range []string{"a.yaml", "b.yaml"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("%s was written", name)
				}
			}
		})
	}
}

func TestStateVerbsChangeOnlyDesiredState(t *testing.T) {
	tests := []struct {
		verb string
		want spec.DesiredState
	}{
		{verb: "stop", want: spec.Stopped},
		{verb: "suspend", want: spec.Suspended},
		{verb: "start", want: spec.Running},
		{verb: "resume", want: spec.Running},
	}
	for _, tt := range tests {
		t.Run(tt.verb, func(t *testing.T) {
			dir, _ := clientFolder(t)
			from := spec.Suspended
			if tt.want == spec.Suspended {
				from = spec.Running
			}
			text := manifestText("web", from)
			st := runningStatus(t, text, false)
			path := filepath.Join(dir, "web.yaml")
			must(t, os.WriteFile(path, []byte(withStatusText(t, text, st)), 0o644))

			if _, stderr, err := runCommand(t, tt.verb, "web", "--dir", dir); err != nil {
				t.Fatalf("%s: %v\n%s", tt.verb, err, stderr)
			}
			changed := strings.Replace(text, "desiredState: "+string(from), "desiredState: "+string(tt.want), 1)
			if want := withStatusText(t, changed, st); readText(t, path) != want {
				t.Errorf("web.yaml =\n%s\nwant only desiredState changed:\n%s", readText(t, path), want)
			}
		})
	}
}

func TestStateVerbUnknownVM(t *testing.T) {
	dir, _ := clientFolder(t)
	_, _, err := runCommand(t, "stop", "ghost", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("stop ghost error = %v, want one naming the VM", err)
	}
}

func TestWaitExitCodes(t *testing.T) {
	text := manifestText("web", spec.Running)
	tests := []struct {
		name      string
		manifest  string // content of web.yaml
		stateFile *spec.Status
		args      []string
		want      int
		stderr    string
	}{
		{
			name:     "phase reached",
			manifest: withStatusText(t, text, runningStatus(t, text, false)),
			args:     []string{"web", "--for", "phase=running"},
			want:     0,
		},
		{
			name:     "condition reached",
			manifest: withStatusText(t, text, runningStatus(t, text, false)),
			args:     []string{"web", "--for", "condition=Ready=True"},
			want:     0,
		},
		{
			name:      "status in state folder",
			manifest:  text,
			stateFile: runningStatus(t, text, false),
			args:      []string{"web", "--for", "condition=Ready"},
			want:      0,
		},
		{
			name:     "stale status times out",
			manifest: withStatusText(t, text, runningStatus(t, text, true)),
			args:     []string{"web", "--for", "phase=Running", "--timeout", "300ms"},
			want:     1,
			stderr:   "guest agent answered",
		},
		{
			name:     "condition not reached times out",
			manifest: withStatusText(t, text, runningStatus(t, text, false)),
			args:     []string{"web", "--for", "condition=Ready=False", "--timeout", "300ms"},
			want:     1,
			stderr:   "last phase Running",
		},
		{name: "unknown VM", manifest: text, args: []string{"ghost", "--for", "phase=Running"}, want: 2},
		{name: "unknown phase", manifest: text, args: []string{"web", "--for", "phase=Sleeping"}, want: 2},
		{name: "missing for", manifest: text, args: []string{"web"}, want: 2},
		{name: "bad condition status", manifest: text, args: []string{"web", "--for", "condition=Ready=Maybe"}, want: 2},
		{name: "two names", manifest: text, args: []string{"web", "db", "--for", "phase=Running"}, want: 2},
		{name: "unknown flag", manifest: text, args: []string{"web", "--for", "phase=Running", "--bogus"}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, stateDir := clientFolder(t)
			must(t, os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(tt.manifest), 0o644))
			if tt.stateFile != nil {
				must(t, spec.WriteStatusFile(filepath.Join(stateDir, "vms", "web", "status.yaml"), tt.stateFile))
			}
			args := append([]string{"wait", "--dir", dir, "--state-dir", stateDir}, tt.args...)
			_, _, err := runCommand(t, args...)
			if got := exitCode(err); got != tt.want {
				t.Errorf("wait exit code = %d (%v), want %d", got, err, tt.want)
			}
			if tt.stderr != "" && (err == nil || !strings.Contains(err.Error(), tt.stderr)) {
				t.Errorf("wait error = %v, want it to contain %q", err, tt.stderr)
			}
		})
	}
}
