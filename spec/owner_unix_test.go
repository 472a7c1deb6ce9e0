//go:build unix

package spec

import (
	"os"
	"syscall"
	"testing"
)

// nobody is the user and group id that the owner tests give a file.
const nobody = 65534

func fileOwner(t *testing.T, path string) (uid, gid uint32) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func TestWriteFileKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	path := writeManifest(t, t.TempDir(), []byte("old\n"), 0o644)
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := fileOwner(t, path)
	if uid != nobody || gid != nobody {
		t.Errorf("owner = %d:%d, want %d:%d", uid, gid, nobody, nobody)
	}
}

func TestWriteStatusKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	path := writeManifest(t, t.TempDir(), []byte(base), 0o644)
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := WriteStatus(path, []byte(base), &Status{Phase: PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	uid, gid := fileOwner(t, path)
	if uid != nobody || gid != nobody {
		t.Errorf("owner = %d:%d, want %d:%d", uid, gid, nobody, nobody)
	}
}
