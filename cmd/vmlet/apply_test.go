//go:build unix

package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vmlet/vmlet/spec"
)

// nobody is the user and group id that the owner tests give a manifest.
const nobody = 65534

func TestApplyKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	dir, _ := clientFolder(t)
	path := filepath.Join(dir, "web.yaml")
	must(t, os.WriteFile(path, []byte(manifestText("web", spec.Stopped)), 0o640))
	must(t, os.Chmod(path, 0o640))
	must(t, os.Chown(path, nobody, nobody))
	input := filepath.Join(t.TempDir(), "in.yaml")
	must(t, os.WriteFile(filepath.Join(filepath.Dir(input), "vmlinuz"), nil, 0o644))
	must(t, os.WriteFile(input, []byte(manifestText("web", spec.Running)), 0o644))

	if _, stderr, err := runCommand(t, "apply", "-f", input, "--dir", dir); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	info, err := os.Stat(path)
	must(t, err)
	st := info.Sys().(*syscall.Stat_t)
	if st.Uid != nobody || st.Gid != nobody {
		t.Errorf("owner after apply = %d:%d, want %d:%d", st.Uid, st.Gid, nobody, nobody)
	}
	if info.Mode().Perm() != 0o640 {
		t.Errorf("mode after apply = %v, want 0640", info.Mode().Perm())
	}
	if got := readText(t, path); got != manifestText("web", spec.Running) {
		t.Errorf("web.yaml after apply =\n%s", got)
	}
}

func TestApplyFolderSkipsFIFO(t *testing.T) {
	dir, _ := clientFolder(t)
	must(t, syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644))
	inputs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(inputs, "vmlinuz"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(inputs, "web.yaml"), []byte(manifestText("web", spec.Running)), 0o644))
	must(t, syscall.Mkfifo(filepath.Join(inputs, "pipe.yaml"), 0o644))

	if _, stderr, err := runCommand(t, "apply", "-f", inputs, "--dir", dir); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	if got := readText(t, filepath.Join(dir, "web.yaml")); got != manifestText("web", spec.Running) {
		t.Errorf("web.yaml =\n%s", got)
	}
}

func TestApplyRejectsFIFOInput(t *testing.T) {
	dir, _ := clientFolder(t)
	input := filepath.Join(t.TempDir(), "pipe.yaml")
	must(t, syscall.Mkfifo(input, 0o644))

	_, _, err := runCommand(t, "apply", "-f", input, "--dir", dir)
	if !errors.Is(err, spec.ErrNotRegular) {
		t.Errorf("apply error = %v, want %v", err, spec.ErrNotRegular)
	}
}
