package controller

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"
)

// waitLimit guards every wait in these tests against a hang; no test
// expects to come near it.
const waitLimit = 20 * time.Second

const sentinel = "zz-sentinel.yaml"

// recordingHandler records the Handler calls it gets as "changed NAME",
// "removed NAME" and "relist", with NAME relative to the watched folder.
type recordingHandler struct {
	dir   string
	mu    sync.Mutex
	calls []string
	added chan struct{}
}

func newRecordingHandler(dir string) *recordingHandler {
	return &recordingHandler{dir: dir, added: make(chan struct{}, 1)}
}

func (h *recordingHandler) record(call string) {
	h.mu.Lock()
	h.calls = append(h.calls, call)
	h.mu.Unlock()
	select {
	case h.added <- struct{}{}:
	default:
	}
}

func (h *recordingHandler) rel(path string) string {
	rel, err := filepath.Rel(h.dir, path)
	if err != nil {
		return path
	}
	return rel
}

func (h *recordingHandler) Changed(path string) { h.record("changed " + h.rel(path)) }
func (h *recordingHandler) Removed(path string) { h.record("removed " + h.rel(path)) }
func (h *recordingHandler) Relist()             { h.record("relist") }

func (h *recordingHandler) snapshot() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// waitFor blocks until a recorded call satisfies done.
func (h *recordingHandler) waitFor(t *testing.T, what string, done func([]string) bool) []string {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		calls := h.snapshot()
		if done(calls) {
			return calls
		}
		select {
		case <-h.added:
		case <-timeout:
			t.Fatalf("waiting for %s: handler calls so far: %q", what, calls)
		}
	}
}

// watchHarness runs a Watcher on a fake clock and learns from the watcher
// which paths it scheduled, so that a test steps the clock only after the
// events it caused were seen.
type watchHarness struct {
	dir       string
	clock     *clocktesting.FakeClock
	handler   *recordingHandler
	scheduled chan string
}

func startWatcher(t *testing.T, dir string) *watchHarness {
	t.Helper()
	h := &watchHarness{
		dir:       dir,
		clock:     clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0)),
		handler:   newRecordingHandler(dir),
		scheduled: make(chan string, 4096),
	}
	w, err := NewWatcher(dir, h.handler, WatcherOptions{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	w.scheduled = func(path string) { h.scheduled <- path }
	ctx := logr.NewContext(t.Context(), logr.Discard())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { <-done })
	return h
}

// settle writes the sentinel manifest, waits until the watcher scheduled
// it (so every earlier event was handled, inotify keeping their order),
// fires the debounce, and returns the calls made, the sentinel's left out.
func (h *watchHarness) settle(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(h.dir, sentinel)
	replaceFile(t, path, "sentinel")
	h.waitScheduled(t, path)
	h.clock.Step(DefaultDebounce)
	want := "changed " + sentinel
	calls := h.handler.waitFor(t, "the sentinel", func(c []string) bool { return slices.Contains(c, want) })
	calls = slices.DeleteFunc(calls, func(c string) bool { return c == want })
	slices.Sort(calls)
	return calls
}

func (h *watchHarness) waitScheduled(t *testing.T, path string) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case got := <-h.scheduled:
			if got == path {
				return
			}
		case <-timeout:
			t.Fatalf("watcher never scheduled %q", path)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes a file by renaming a temp file over it, which makes
// exactly one event, so the test knows when the watcher has seen it.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	temp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, temp, content)
	must(t, os.Rename(temp, path))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWatcherEditorsAndTools(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		edit  func(t *testing.T, dir string)
		want  []string
	}{
		{
			name:  "write in place",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit:  func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v2") },
			want:  []string{"changed a.yaml"},
		},
		{
			name:  "write temp then rename",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, ".a.yaml.tmp123"), "v2")
				must(t, os.Rename(filepath.Join(dir, ".a.yaml.tmp123"), filepath.Join(dir, "a.yaml")))
			},
			want: []string{"changed a.yaml"},
		},
		{
			name:  "vim backup dance",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit:  vimWrite,
			want:  []string{"changed a.yaml"},
		},
		{
			name:  "delete then re-create",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit: func(t *testing.T, dir string) {
				must(t, os.Remove(filepath.Join(dir, "a.yaml")))
				writeFile(t, filepath.Join(dir, "a.yaml"), "v2")
			},
			want: []string{"changed a.yaml"},
		},
		{
			name:  "delete",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit:  func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "a.yaml"))) },
			want:  []string{"removed a.yaml"},
		},
		{
			name:  "rename away",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.yaml"), "v1") },
			edit: func(t *testing.T, dir string) {
				must(t, os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")))
			},
			want: []string{"changed b.yml", "removed a.yaml"},
		},
		{
			name: "many writes coalesce",
			edit: func(t *testing.T, dir string) {
				for i := range 20 {
					writeFile(t, filepath.Join(dir, "a.json"), fmt.Sprint(i))
				}
			},
			want: []string{"changed a.json"},
		},
		{
			name: "leftovers ignored",
			edit: func(t *testing.T, dir string) {
				for _, name := range []string{"a.yaml~", ".a.yaml.swp", "a.yaml.swp", "4913", "notes.txt", ".hidden.yaml"} {
					writeFile(t, filepath.Join(dir, name), "x")
				}
				must(t, os.Remove(filepath.Join(dir, "4913")))
			},
			want: nil,
		},
		{
			name:  "configmap data swap",
			setup: configMapVolume,
			edit:  swapConfigMapData,
			want:  []string{"relist"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			h := startWatcher(t, dir)
			tt.edit(t, dir)
			if got := h.settle(t); !slices.Equal(got, tt.want) {
				t.Errorf("handler calls = %q, want %q", got, tt.want)
			}
		})
	}
}

// vimWrite saves a file the way vim does with its default 'backupcopy'
// on Linux: probe the folder with a file named 4913, rename the original
// to a backup, write a new file, then delete the backup.
func vimWrite(t *testing.T, dir string) {
	path := filepath.Join(dir, "a.yaml")
	writeFile(t, filepath.Join(dir, "4913"), "")
	must(t, os.Remove(filepath.Join(dir, "4913")))
	must(t, os.Rename(path, path+"~"))
	writeFile(t, path, "v2")
	must(t, os.Chmod(path, 0o644))
	must(t, os.Remove(path+"~"))
}

// configMapVolume lays dir out as the kubelet lays out a ConfigMap volume:
// the files live in a timestamped folder, ..data points at it, and each
// manifest is a symlink through ..data.
func configMapVolume(t *testing.T, dir string) {
	must(t, os.Mkdir(filepath.Join(dir, "..2026_12_04_10_00_00.1"), 0o755))
	for _, name := range []string{"a.yaml", "b.yaml"} {
		writeFile(t, filepath.Join(dir, "..2026_12_04_10_00_00.1", name), "v1")
		must(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}
	must(t, os.Symlink("..2026_12_04_10_00_00.1", filepath.Join(dir, "..data")))
}

// swapConfigMapData updates the volume the way the kubelet does: a new
// timestamped folder, a temporary ..data_tmp link renamed over ..data,
// and the old folder removed. No event names a manifest.
func swapConfigMapData(t *testing.T, dir string) {
	next := "..2026_12_04_10_05_00.2"
	must(t, os.Mkdir(filepath.Join(dir, next), 0o755))
	for _, name := range []string{"a.yaml", "b.yaml"} {
		writeFile(t, filepath.Join(dir, next, name), "v2")
	}
	must(t, os.Symlink(next, filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..2026_12_04_10_00_00.1")))
}

func TestWatcherGitCheckout(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.invalid"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q", "-b", "main")
	var want []string
	for i := range 40 {
		name := fmt.Sprintf("vm%02d.yaml", i)
		writeFile(t, filepath.Join(dir, name), "v1")
		want = append(want, "changed "+name)
	}
	git("add", ".")
	git("commit", "-q", "-m", "v1")
	git("checkout", "-q", "-b", "next")
	for i := range 40 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("vm%02d.yaml", i)), "v2")
	}
	git("commit", "-q", "-am", "v2")

	h := startWatcher(t, dir)
	git("checkout", "-q", "main")
	if got := h.settle(t); !slices.Equal(got, want) {
		t.Errorf("handler calls = %q, want %q", got, want)
	}
}

func TestWatcherDebounceRestartsOnEachEvent(t *testing.T) {
	dir := t.TempDir()
	h := startWatcher(t, dir)
	path := filepath.Join(dir, "a.yaml")

	replaceFile(t, path, "v1")
	h.waitScheduled(t, path)
	h.clock.Step(DefaultDebounce * 6 / 10)
	replaceFile(t, path, "v2")
	h.waitScheduled(t, path)
	h.clock.Step(DefaultDebounce * 6 / 10)

	// The first timer fired at 100 ms, but the path's deadline moved to
	// 160 ms, so nothing may be reported yet. The sentinel, written now,
	// is due at 220 ms: settle steps past both.
	if calls := h.handler.snapshot(); len(calls) != 0 {
		t.Fatalf("handler calls before the debounce ended = %q, want none", calls)
	}
	if got := h.settle(t); !slices.Equal(got, []string{"changed a.yaml"}) {
		t.Errorf("handler calls = %q, want one change", got)
	}
}

func TestWatcherResync(t *testing.T) {
	dir := t.TempDir()
	h := startWatcher(t, dir)
	waitWaiters(t, h.clock)
	h.clock.Step(DefaultResync)
	h.handler.waitFor(t, "a resync", func(c []string) bool { return slices.Equal(c, []string{"relist"}) })
}

// waitWaiters waits until the watcher's resync ticker exists.
func waitWaiters(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the watcher never started its resync ticker")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatcherErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{name: "overflow relists", err: fsnotify.ErrEventOverflow, want: []string{"relist"}},
		{name: "wrapped overflow relists", err: fmt.Errorf("reading: %w", fsnotify.ErrEventOverflow), want: []string{"relist"}},
		{name: "other error logged only", err: os.ErrPermission, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			handler := newRecordingHandler(dir)
			w, err := NewWatcher(dir, handler, WatcherOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.notify.Close() })
			w.handleError(logr.Discard(), tt.err)
			if got := handler.snapshot(); !slices.Equal(got, tt.want) {
				t.Errorf("handler calls = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewWatcherMissingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	_, err := NewWatcher(dir, newRecordingHandler(dir), WatcherOptions{})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("NewWatcher(missing folder) error = %v, want one naming %q", err, dir)
	}
}
