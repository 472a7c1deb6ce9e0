//go:build unix

package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// mkfifo makes a FIFO at dir/name and returns its path.
func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadUnblocked runs Load on the FIFO at path. If Load blocks in open or
// read, a writer opens and closes the FIFO after 5 seconds. Load then
// returns, and the test fails on the error instead of hanging.
func loadUnblocked(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
	}
	w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err == nil {
		w.Close()
	}
	return <-done
}

func TestLoadRejectsFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, dir, "vm.yaml")
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, link} {
		err := loadUnblocked(t, path)
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("Load(%q) error = %v, want ErrNotRegular", path, err)
		}
	}
}

func TestLoadRejectsFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.yaml")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Load error = %v, want ErrNotRegular", err)
	}
}

func TestListManifestsSkipsNonRegular(t *testing.T) {
	dir := t.TempDir()
	regular := writeManifest(t, dir, []byte(base), 0o644)
	mkfifo(t, dir, "fifo.yaml")
	if err := os.Mkdir(filepath.Join(dir, "folder.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{"link.yaml": regular, "broken.yaml": "missing", "fifolink.yaml": "fifo.yaml"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ListManifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "link.yaml"), regular}
	if !slices.Equal(got, want) {
		t.Errorf("ListManifests = %q, want %q", got, want)
	}
}
