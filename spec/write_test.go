package spec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeManifest puts data at dir/vm.yaml with mode and returns the path.
func writeManifest(t *testing.T, dir string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "vm.yaml")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// setHook sets a write-back hook for the length of the test. Tests that
// use it must not run in parallel.
func setHook[T any](t testing.TB, hook *T, v T) {
	t.Helper()
	old := *hook
	*hook = v
	t.Cleanup(func() { *hook = old })
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*.vmlet-tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temp files left behind: %v", leftovers)
	}
}

func TestWriteStatus(t *testing.T) {
	dir := t.TempDir()
	read := []byte(base)
	path := writeManifest(t, dir, read, 0o640)

	if err := WriteStatus(path, read, testStatus()); err != nil {
		t.Fatalf("WriteStatus: %v", err)
	}
	m, err := Load(path)
	if err != nil || m.Err != nil {
		t.Fatalf("Load: %v, %v", err, m.Err)
	}
	assertSameStatus(t, m.Status, testStatus())
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640 kept", info.Mode().Perm())
	}
	assertNoTempFiles(t, dir)
}

func TestWriteStatusThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	read := []byte(base)
	target := writeManifest(t, dir, read, 0o644)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("vm.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteStatus(link, read, testStatus()); err != nil {
		t.Fatalf("WriteStatus: %v", err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v, %v", info, err)
	}
	if bytes.Equal(readFile(t, target), read) {
		t.Error("the target was not written")
	}
}

func TestWriteStatusNotWritable(t *testing.T) {
	dir := t.TempDir()
	read := []byte(base)
	path := writeManifest(t, dir, read, 0o444)
	err := WriteStatus(path, read, testStatus())
	if !errors.Is(err, ErrNotWritable) {
		t.Fatalf("WriteStatus error = %v, want ErrNotWritable", err)
	}
	if !bytes.Equal(readFile(t, path), read) {
		t.Error("a file with no write bit was changed")
	}
	assertNoTempFiles(t, dir)
}

func TestWriteStatusRefusesInvalidYAML(t *testing.T) {
	dir := t.TempDir()
	read := []byte("spec: [1\n")
	path := writeManifest(t, dir, read, 0o644)
	if err := WriteStatus(path, read, testStatus()); err == nil {
		t.Fatal("WriteStatus wrote into a file that is not valid YAML")
	}
	if !bytes.Equal(readFile(t, path), read) {
		t.Error("the file changed")
	}
}

// renameOver replaces path by rename, as editors and git do.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".editor"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Error(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// rewriteInPlace rewrites path in its inode, as `echo > file` does.
func rewriteInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Error(err)
	}
}

func TestWriteStatusKeepsConcurrentEdit(t *testing.T) {
	userEdit := []byte(edit(t, "cpus: 2", "cpus: 4"))
	tests := []struct {
		name       string
		exchange   func(a, b string) error
		userWriter func(*testing.T, string, []byte)
	}{
		{"rename over, atomic exchange", exchange, renameOver},
		{"in place, atomic exchange", exchange, rewriteInPlace},
		{"rename over, no exchange", noExchange, renameOver},
		{"in place, no exchange", noExchange, rewriteInPlace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			read := []byte(base)
			path := writeManifest(t, dir, read, 0o644)
			setHook(t, &exchangeFiles, tt.exchange)
			setHook(t, &beforeSwap, func(target string) { tt.userWriter(t, target, userEdit) })

			err := WriteStatus(path, read, testStatus())
			if !errors.Is(err, ErrConflict) {
				t.Errorf("WriteStatus error = %v, want ErrConflict", err)
			}
			if got := readFile(t, path); !bytes.Equal(got, userEdit) {
				t.Errorf("the user's edit was lost; the file holds:\n%s", got)
			}
			assertNoTempFiles(t, dir)
		})
	}
}

// TestWriteFileLosesConcurrentEdit is the negative control of
// TestWriteStatusKeepsConcurrentEdit: the same edit, landing at the same
// point before a plain rename that compares nothing, is lost. It shows
// that the hook really lands an edit between the read and the swap.
func TestWriteFileLosesConcurrentEdit(t *testing.T) {
	dir := t.TempDir()
	path := writeManifest(t, dir, []byte(base), 0o644)
	userEdit := []byte(edit(t, "cpus: 2", "cpus: 4"))
	ours, err := ReplaceStatus([]byte(base), testStatus())
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := writeTemp(path, ours, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	renameOver(t, path, userEdit)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); bytes.Equal(got, userEdit) {
		t.Error("a plain rename kept the user's edit; the fault injection does nothing")
	}
}

func noExchange(a, b string) error { return errNoExchange }

func TestWriteStatusWithoutExchange(t *testing.T) {
	setHook(t, &exchangeFiles, noExchange)
	dir := t.TempDir()
	read := []byte(base)
	path := writeManifest(t, dir, read, 0o600)
	if err := WriteStatus(path, read, testStatus()); err != nil {
		t.Fatalf("WriteStatus: %v", err)
	}
	m, _ := Load(path)
	assertSameStatus(t, m.Status, testStatus())
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600 kept", info.Mode().Perm())
	}
	assertNoTempFiles(t, dir)
}

func TestWriteStatusUnchangedWritesNothing(t *testing.T) {
	dir := t.TempDir()
	read, err := ReplaceStatus([]byte(base), testStatus())
	if err != nil {
		t.Fatal(err)
	}
	path := writeManifest(t, dir, read, 0o644)
	before, _ := os.Stat(path)
	if err := WriteStatus(path, read, testStatus()); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an unchanged status replaced the file")
	}
}

func TestSetDesiredState(t *testing.T) {
	dir := t.TempDir()
	path := writeManifest(t, dir, []byte(base), 0o644)
	if err := SetDesiredState(path, Suspended); err != nil {
		t.Fatalf("SetDesiredState: %v", err)
	}
	want := edit(t, "desiredState: Running", "desiredState: Suspended")
	if got := readFile(t, path); string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	os.Chmod(path, 0o444)
	if err := SetDesiredState(path, Running); !errors.Is(err, ErrNotWritable) {
		t.Errorf("SetDesiredState on a read-only file = %v, want ErrNotWritable", err)
	}
}

func TestStatusFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vms", "builder", "status.yaml")
	if _, err := ReadStatusFile(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadStatusFile of a missing file = %v, want os.ErrNotExist", err)
	}
	if err := WriteStatusFile(path, testStatus()); err != nil {
		t.Fatalf("WriteStatusFile: %v", err)
	}
	got, err := ReadStatusFile(path)
	if err != nil {
		t.Fatalf("ReadStatusFile: %v", err)
	}
	assertSameStatus(t, got, testStatus())
	if info, _ := os.Stat(filepath.Dir(path)); info.Mode().Perm() != 0o700 {
		t.Errorf("folder mode = %v, want 0700", info.Mode().Perm())
	}
}

func TestCurrentStatusPrefersNewer(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	inFile := &Status{Phase: PhaseStarting}
	data, _ := ReplaceStatus([]byte(base), inFile)
	path := writeManifest(t, dir, data, 0o644)
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	m, _ := Load(path)
	if got := m.CurrentStatus(state); got == nil || got.Phase != PhaseStarting {
		t.Fatalf("CurrentStatus without a status file = %+v", got)
	}
	if err := WriteStatusFile(StatusFilePath(state, "builder"), &Status{Phase: PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	if got := m.CurrentStatus(state); got == nil || got.Phase != PhaseRunning {
		t.Errorf("CurrentStatus with a newer status file = %+v, want Running", got)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	if err := WriteFile(path, []byte("a: 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", info.Mode().Perm())
	}
	if got := readFile(t, path); string(got) != "a: 1\n" {
		t.Errorf("content = %q", got)
	}
	assertNoTempFiles(t, dir)
}

func TestCurrentStatusPrefersCurrentSpec(t *testing.T) {
	current := Parse("vm.yaml", []byte(base)).VM.SpecHash()
	const stale = "000000000000"
	tests := []struct {
		name                string
		fileHash, stateHash string
		stateNewer          bool
		want                Phase
	}{
		{"file current, state stale and newer", current, stale, true, PhaseStarting},
		{"state current, file stale and newer", stale, current, false, PhaseRunning},
		{"both current, state newer", current, current, true, PhaseRunning},
		{"both current, file newer", current, current, false, PhaseStarting},
		{"both stale, state newer", stale, stale, true, PhaseRunning},
		{"both stale, file newer", stale, stale, false, PhaseStarting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			data, _ := ReplaceStatus([]byte(base), &Status{Phase: PhaseStarting, ObservedSpecHash: tt.fileHash})
			path := writeManifest(t, dir, data, 0o644)
			statusPath := StatusFilePath(state, "builder")
			if err := WriteStatusFile(statusPath, &Status{Phase: PhaseRunning, ObservedSpecHash: tt.stateHash}); err != nil {
				t.Fatal(err)
			}
			older, newer := time.Now().Add(-time.Hour), time.Now()
			if !tt.stateNewer {
				older, newer = newer, older
			}
			if err := os.Chtimes(path, older, older); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(statusPath, newer, newer); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.CurrentStatus(state); got == nil || got.Phase != tt.want {
				t.Errorf("CurrentStatus = %+v, want phase %s", got, tt.want)
			}
		})
	}
}
