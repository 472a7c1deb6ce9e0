package reconcile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
)

func TestCatalogRelistKeys(t *testing.T) {
	h := newHarness(t)
	h.write(manifest{name: "web", desired: spec.Stopped})
	h.write(manifest{name: "db", desired: spec.Stopped})
	bad := filepath.Join(h.dir, "broken.yaml")
	if err := os.WriteFile(bad, []byte("metadata: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ignored := range []string{".hidden.yaml", "web.yaml~", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(h.dir, ignored), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cat := NewCatalog(h.dir)
	keys, err := cat.Relist()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{bad, "db", "web"}
	if !slices.Equal(keys, want) {
		t.Errorf("first relist = %q, want %q", keys, want)
	}

	if err := os.Remove(filepath.Join(h.dir, "db.yaml")); err != nil {
		t.Fatal(err)
	}
	keys, err = cat.Relist()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, want) {
		t.Errorf("relist after a removal = %q, want %q (the vanished key too)", keys, want)
	}
	if got := cat.Keys(); !slices.Equal(got, []string{bad, "web"}) {
		t.Errorf("keys = %q", got)
	}
}

func TestCatalogUpdateRename(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Stopped})
	if err := os.WriteFile(path, []byte(manifest{name: "api", desired: spec.Stopped}.text()), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := h.cat.Update(path); !slices.Equal(got, []string{"api", "web"}) {
		t.Errorf("update after a rename = %q, want the old and new names", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := h.cat.Remove(path); !slices.Equal(got, []string{"api"}) {
		t.Errorf("remove = %q, want [api]", got)
	}
	if got := h.cat.Update(path); len(got) != 0 {
		t.Errorf("update of a missing file = %q, want none", got)
	}
}

func TestCatalogCachesParse(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "web", desired: spec.Stopped})
	first := h.cat.lookup("web").Owner
	if again := h.cat.lookup("web").Owner; again != first {
		t.Error("an unchanged file was parsed again")
	}
	if err := os.WriteFile(path, []byte(manifest{name: "web", desired: spec.Running}.text()), 0o644); err != nil {
		t.Fatal(err)
	}
	// No Update call: lookup itself detects the change.
	changed := h.cat.lookup("web").Owner
	if changed == first || changed.VM.Spec.DesiredState != spec.Running {
		t.Error("a changed file was not parsed again")
	}
}

func TestDuplicateNames(t *testing.T) {
	h := newHarness(t)
	a := h.write(manifest{name: "web", desired: spec.Running}, "a.yaml")
	b := h.write(manifest{name: "web", desired: spec.Stopped}, "b.yaml")
	h.restart() // the first relist: path order decides

	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Boot web", "Connect web"}) {
		t.Fatalf("calls = %q, want a.yaml's boot", calls)
	}
	if got := condition(h.status(a), "Valid"); got != "True/SpecValid" {
		t.Errorf("owner Valid = %s", got)
	}
	if got := condition(h.status(b), "Valid"); got != "False/DuplicateName" {
		t.Errorf("duplicate Valid = %s, want False/DuplicateName", got)
	}
	if got := h.status(b).Phase; got != "" {
		t.Errorf("duplicate phase = %q, want none", got)
	}

	// A later file never takes the name from its owner.
	h.write(manifest{name: "web", desired: spec.Stopped}, "0.yaml")
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("a later duplicate caused calls %q", calls)
	}

	// The owner goes: the earliest remaining claimant, b.yaml, takes over.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if got := h.cat.Remove(a); !slices.Equal(got, []string{"web"}) {
		t.Errorf("remove = %q", got)
	}
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); !slices.Equal(calls, []string{"Stop web"}) {
		t.Errorf("calls after the hand-over = %q, want b.yaml's stop", calls)
	}
	st := h.status(b)
	if got := condition(st, "Valid"); got != "True/SpecValid" || st.Phase != spec.PhaseStopped {
		t.Errorf("new owner: Valid %s phase %s", got, st.Phase)
	}
	if got := condition(h.status(filepath.Join(h.dir, "0.yaml")), "Valid"); got != "False/DuplicateName" {
		t.Errorf("0.yaml Valid = %s, want False/DuplicateName", got)
	}
}

func TestUnreadableNameKeyedByPath(t *testing.T) {
	h := newHarness(t)
	path := h.write(manifest{name: "Not_A_Label", desired: spec.Running})
	keys := h.cat.Keys()
	if !slices.Equal(keys, []string{path}) {
		t.Fatalf("keys = %q, want the path", keys)
	}
	h.mustReconcile(path)
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("calls = %q, want none", calls)
	}
	st := h.status(path)
	if got := condition(st, "Valid"); got != "False/InvalidSpec" {
		t.Errorf("Valid = %s", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(h.state, "vms")); len(entries) != 0 {
		t.Errorf("a state folder was made for a file without a usable name")
	}
}

func TestMalformedFileNeverWritten(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, "broken.yaml")
	data := []byte("apiVersion: [\n")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	keys := h.cat.Update(path)
	if !slices.Equal(keys, []string{path}) {
		t.Fatalf("keys = %q", keys)
	}
	h.mustReconcile(path)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Errorf("malformed file was written: %q", got)
	}
}

func TestParseCacheAcrossRestarts(t *testing.T) {
	h := newHarness(t)
	path := bring(h, spec.Running, false)
	if _, err := h.cat.Relist(); err != nil {
		t.Fatal(err)
	}
	if !h.exists(parseCacheFile) {
		t.Fatal("no parse cache saved after a relist")
	}

	h.restart()
	cached := h.cat.lookup("web").Owner
	fresh, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cached.Name != fresh.Name || cached.VM.SpecHash() != fresh.VM.SpecHash() ||
		cached.VM.MachineHash() != fresh.VM.MachineHash() || !statusEqual(cached.Status, fresh.Status) {
		t.Errorf("cached parse differs from a fresh one")
	}
	if string(cached.Data) != string(fresh.Data) || !cached.WellFormed || cached.Err != nil {
		t.Errorf("cached manifest: data equal %v, well-formed %v, err %v",
			string(cached.Data) == string(fresh.Data), cached.WellFormed, cached.Err)
	}
	h.mustReconcile("web")
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("calls after a restart from the cache = %q", calls)
	}

	// Same size and a changed byte: the content hash tells them apart.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := []byte(strings.Replace(string(data), "cpus: 1", "cpus: 2", 1))
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if got := h.cat.lookup("web").Owner.VM.Spec.CPUs; got != 2 {
		t.Errorf("cpus after an edit = %d, want 2 (a stale cache entry was used)", got)
	}
}

func TestParseCacheIgnoresForeignFile(t *testing.T) {
	h := newHarness(t)
	bring(h, spec.Running, false)
	if err := os.WriteFile(filepath.Join(h.state, parseCacheFile), []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if m := h.cat.lookup("web").Owner; m == nil || m.VM == nil {
		t.Fatal("a damaged cache file broke the catalog")
	}
}

// TestCatalogRelistKeepsNewerUpdate interleaves an Update between a Relist's
// parse and its apply, as happens when a file is written while the daemon
// starts. The Relist's older parse, of the still empty file, must not
// replace the Update's.
func TestCatalogRelistKeepsNewerUpdate(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, "web.yaml")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cat := NewCatalog(h.dir)
	results := cat.loadChanged([]string{path})

	h.write(manifest{name: "web", desired: spec.Running})
	if got := cat.Update(path); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("Update = %q, want [web]", got)
	}

	keys := make(map[string]bool)
	cat.mu.Lock()
	cat.applyResult(results[0], keys)
	cat.mu.Unlock()
	if got := cat.Keys(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("keys after the older parse was applied = %q, want [web]", got)
	}
}

// TestCatalogSkipsSiblingLink links a second name to a manifest in the same
// folder: the link is not a manifest of its own, so the owner keeps its
// status and no status is written through the link.
func TestCatalogSkipsSiblingLink(t *testing.T) {
	h := newHarness(t)
	owner := h.write(manifest{name: "web", desired: spec.Running}, "a.yaml")
	link := filepath.Join(h.dir, "b.yaml")
	if err := os.Symlink("a.yaml", link); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.cat.Update(link)
	for range 3 {
		h.mustReconcile("web")
		if got := condition(h.status(owner), "Valid"); got != "True/SpecValid" {
			t.Fatalf("owner Valid = %s, want True/SpecValid", got)
		}
	}
	if got := h.cat.Keys(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("keys = %q, want [web]", got)
	}
}

// TestCatalogSkipsFIFO puts a FIFO named like a manifest in the folder:
// listing and updating must neither block nor count it.
func TestCatalogSkipsFIFO(t *testing.T) {
	h := newHarness(t)
	h.write(manifest{name: "web", desired: spec.Running})
	fifo := filepath.Join(h.dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan []string, 1)
	go func() {
		cat := NewCatalog(h.dir)
		cat.Relist()
		cat.Update(fifo)
		done <- cat.Keys()
	}()
	select {
	case keys := <-done:
		if !slices.Equal(keys, []string{"web"}) {
			t.Errorf("keys = %q, want [web]", keys)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the catalog blocked on a FIFO")
	}
}
