package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// unparsableEdits are the contents a manifest can have for a moment without
// its user meaning to remove the VM.
var unparsableEdits = []struct {
	name string
	text string
}{
	{name: "syntax error", text: "apiVersion: [\n"},
	{name: "empty during an in-place rewrite", text: ""},
	{name: "name edited to an invalid one", text: "apiVersion: vmlet.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: Web_1\n"},
}

func TestUnparsableEditKeepsVM(t *testing.T) {
	for _, observed := range []spec.DesiredState{spec.Running, spec.Suspended} {
		for _, tt := range unparsableEdits {
			t.Run(string(observed)+"/"+tt.name, func(t *testing.T) {
				h := newHarness(t)
				path := bring(h, observed, false)
				if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
					t.Fatal(err)
				}
				for _, key := range h.cat.Update(path) {
					h.reconcile(key)
				}
				checkUntouched(t, h, observed)
			})
		}
	}
}

// TestUnparsableAtStartKeepsVM restarts the daemon while the manifest does
// not parse: the file keeps the name of the VM last started from it.
func TestUnparsableAtStartKeepsVM(t *testing.T) {
	for _, observed := range []spec.DesiredState{spec.Running, spec.Suspended} {
		for _, tt := range unparsableEdits {
			t.Run(string(observed)+"/"+tt.name, func(t *testing.T) {
				h := newHarness(t)
				path := bring(h, observed, false)
				if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
					t.Fatal(err)
				}

				if observed == spec.Running {
					h.rt.adopted = []string{"web"}
				}
				h.cat = NewCatalog(h.dir)
				r, err := New(Config{
					Runtime: h.rt, Catalog: h.cat, StateDir: h.state, HostLock: h.lock,
					Clock: h.clock, SaveTimeout: time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				h.r = r
				adopted, err := r.Adopt(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				listed, err := h.cat.Relist()
				if err != nil {
					t.Fatal(err)
				}
				for _, key := range append(adopted, listed...) {
					h.reconcile(key)
				}
				checkUntouched(t, h, observed)
			})
		}
	}
}

// checkUntouched fails unless web is still as observed: no runtime call,
// the process as it was, and a suspended VM's checkpoint still in place.
func checkUntouched(t *testing.T, h *harness, observed spec.DesiredState) {
	t.Helper()
	if calls := h.rt.takeCalls(); len(calls) > 0 {
		t.Errorf("runtime calls = %q, want none", calls)
	}
	wantState := vmruntime.StateRunning
	if observed == spec.Suspended {
		wantState = vmruntime.StateStopped
	}
	if got := h.rt.stateOf("web"); got != wantState {
		t.Errorf("web is %v, want %v", got, wantState)
	}
	if observed == spec.Suspended && !h.exists("vms/web/checkpoint") {
		t.Error("the checkpoint of the suspended VM is gone")
	}
}

// TestRenameKeepsVM renames a manifest within the folder and reconciles the
// name after the old path's removal but before the new path's change, the
// order a rename's two watch events can take.
func TestRenameKeepsVM(t *testing.T) {
	for _, observed := range []spec.DesiredState{spec.Running, spec.Suspended} {
		t.Run(string(observed), func(t *testing.T) {
			h := newHarness(t)
			path := bring(h, observed, false)
			renamed := filepath.Join(h.dir, "renamed.yaml")
			if err := os.Rename(path, renamed); err != nil {
				t.Fatal(err)
			}
			for _, key := range h.cat.Remove(path) {
				h.reconcile(key)
			}
			checkUntouched(t, h, observed)
			if got := h.status(renamed).Phase; got == "" {
				t.Error("the renamed manifest has no status")
			}
		})
	}
}

// TestStatusThatCannotGoInlineGoesToStateFolder gives the manifest a status
// that other members refer to through an anchor, so that replacing it would
// break the file: the status goes to the state folder instead of failing
// every reconcile.
func TestStatusThatCannotGoInlineGoesToStateFolder(t *testing.T) {
	h := newHarness(t)
	text := manifest{name: "web", desired: spec.Running}.text()
	text = strings.Replace(text, "metadata:\n  name: web\n", "metadata:\n  name: web\n  labels: *s\n", 1)
	path := filepath.Join(h.dir, "web.yaml")
	text = "status: &s {}\n" + text
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if _, err := h.r.Reconcile(t.Context(), "web"); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	st, err := spec.ReadStatusFile(filepath.Join(h.state, "vms", "web", "status.yaml"))
	if err != nil {
		t.Fatalf("no status in the state folder: %v", err)
	}
	if st.Phase != spec.PhaseRunning {
		t.Errorf("state folder phase = %s, want Running", st.Phase)
	}
	if data, _ := os.ReadFile(path); string(data) != text {
		t.Errorf("the manifest changed:\n%s", data)
	}
}
