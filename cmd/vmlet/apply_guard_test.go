package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/spec"
)

func TestApplyNeverOverwritesAnotherFile(t *testing.T) {
	tests := []struct {
		name     string
		existing string
		wantErr  string
	}{
		{name: "another VM", existing: manifestText("bar", spec.Running),
			wantErr: `foo.yaml" contains the VM "bar"`},
		{name: "a malformed edit", existing: "apiVersion: [unclosed\n",
			wantErr: `foo.yaml" exists without a readable metadata.name`},
		{name: "a manifest without a name", existing: strings.Replace(manifestText("foo", spec.Running), "name: foo", "name: [foo]", 1),
			wantErr: `foo.yaml" exists without a readable metadata.name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := clientFolder(t)
			foo := filepath.Join(dir, "foo.yaml")
			must(t, os.WriteFile(foo, []byte(tt.existing), 0o644))
			input := filepath.Join(t.TempDir(), "in.yaml")
			must(t, os.WriteFile(filepath.Join(filepath.Dir(input), "vmlinuz"), nil, 0o644))
			must(t, os.WriteFile(input, []byte(manifestText("foo", spec.Running)), 0o644))
			_, _, err := runCommand(t, "apply", "-f", input, "--dir", dir)
			if got := readText(t, foo); got != tt.existing {
				t.Errorf("apply (err %v) replaced foo.yaml, which held %s:\n%s", err, tt.name, got)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("apply error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestApplyGuardWritesNothing(t *testing.T) {
	dir, _ := clientFolder(t)
	foo := filepath.Join(dir, "foo.yaml")
	must(t, os.WriteFile(foo, []byte(manifestText("bar", spec.Running)), 0o644))
	inputs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(inputs, "vmlinuz"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(inputs, "a.yaml"), []byte(manifestText("alpha", spec.Running)), 0o644))
	must(t, os.WriteFile(filepath.Join(inputs, "b.yaml"), []byte(manifestText("foo", spec.Running)), 0o644))

	if _, _, err := runCommand(t, "apply", "-f", inputs, "--dir", dir); err == nil {
		t.Fatal("apply succeeded over a file that contains another VM")
	}
	if _, err := os.Stat(filepath.Join(dir, "alpha.yaml")); err == nil {
		t.Error("apply wrote alpha.yaml although another input was rejected")
	}
}

func TestApplyUpdatesOwnFile(t *testing.T) {
	dir, _ := clientFolder(t)
	foo := filepath.Join(dir, "foo.yaml")
	must(t, os.WriteFile(foo, []byte(manifestText("foo", spec.Stopped)), 0o644))
	input := filepath.Join(t.TempDir(), "in.yaml")
	must(t, os.WriteFile(filepath.Join(filepath.Dir(input), "vmlinuz"), nil, 0o644))
	want := manifestText("foo", spec.Running)
	must(t, os.WriteFile(input, []byte(want), 0o644))

	if _, stderr, err := runCommand(t, "apply", "-f", input, "--dir", dir); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	if got := readText(t, foo); got != want {
		t.Errorf("foo.yaml =\n%s\nwant\n%s", got, want)
	}
}
