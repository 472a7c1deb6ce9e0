package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCommand runs vmlet with args and returns its output and error.
func runCommand(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	var exit *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	return 1
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const validManifest = `apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: NAME
spec:
  desiredState: Running
  cpus: 1
  memory: 256Mi
  kernel: /bin/sh
`

func manifestNamed(name string) string {
	return strings.Replace(validManifest, "NAME", name, 1)
}

func TestValidateExamples(t *testing.T) {
	out, _, err := runCommand(t, "validate", "../../manifests")
	if code := exitCode(err); code != 0 {
		t.Fatalf("exit %d, want 0; output:\n%s", code, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" && !strings.HasPrefix(line, "warning: ") {
			t.Errorf("unexpected line: %s", line)
		}
	}
}

func TestValidateReportsProblems(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"good.yaml":    manifestNamed("good"),
		"bad.yaml":     strings.Replace(manifestNamed("bad"), "256Mi", "12Qi", 1),
		"empty.yaml":   "",
		"notes.txt":    "not a manifest",
		".hidden.yaml": "ignored: true",
	})
	out, errOut, err := runCommand(t, "validate", dir)
	if code := exitCode(err); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := []string{
		filepath.Join(dir, "bad.yaml") + `:8: spec.memory: "12Qi" is not a quantity (use 512Mi, 2Gi)`,
		filepath.Join(dir, "empty.yaml") + `: file is empty`,
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if !strings.Contains(errOut, "1 of 3 manifests valid") {
		t.Errorf("summary = %q", errOut)
	}
}

func TestValidateDuplicateName(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": manifestNamed("same"), "b.yaml": manifestNamed("same")})
	out, _, err := runCommand(t, "validate", dir)
	if exitCode(err) != 1 {
		t.Errorf("exit %d, want 1", exitCode(err))
	}
	want := filepath.Join(dir, "b.yaml") + `: metadata.name: "same" is also the name of ` + filepath.Join(dir, "a.yaml")
	if strings.TrimSpace(out) != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func TestValidateArguments(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"vm.yaml": manifestNamed("vm")})
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"file", []string{"validate", filepath.Join(dir, "vm.yaml")}, 0},
		{"flag after the path", []string{"validate", dir, "--dir", "/nonexistent"}, 0},
		{"default folder", []string{"validate", "--dir", dir}, 0},
		{"missing path", []string{"validate", filepath.Join(dir, "none.yaml")}, 1},
		{"one bad of two", []string{"validate", dir, filepath.Join(dir, "none.yaml")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCommand(t, tt.args...)
			if code := exitCode(err); code != tt.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tt.code, out)
			}
		})
	}
}
