//go:build unix

package main

import (
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
