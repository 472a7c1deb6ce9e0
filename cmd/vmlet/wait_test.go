package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
)

// staleFileFixture writes delta.yaml with a status for an older spec,
// modified after the state folder's status for the current spec, which
// has phase.
func staleFileFixture(t *testing.T, phase spec.Phase) (dir, state string) {
	t.Helper()
	dir, state = t.TempDir(), t.TempDir()
	old := &spec.Status{Phase: spec.PhaseStopped, ObservedSpecHash: "000000000000"}
	path := filepath.Join(dir, "delta.yaml")
	writeFiles(t, dir, map[string]string{"delta.yaml": withStatus(t, manifestNamed("delta"), old, true)})
	st := readyStatus(phase, spec.ConditionFalse, "suspended", getNow)
	st.ObservedSpecHash = spec.Parse("d.yaml", []byte(manifestNamed("delta"))).VM.SpecHash()
	if err := spec.WriteStatusFile(spec.StatusFilePath(state, "delta"), st); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	return dir, state
}

func TestGetPrefersCurrentStateStatus(t *testing.T) {
	dir, state := staleFileFixture(t, spec.PhaseSuspended)
	stdout, stderr, err := runCommand(t, "get", "delta", "--dir", dir, "--state-dir", state)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "Suspended") {
		t.Errorf("get =\n%s\nwant the state folder's Suspended status for the current spec", stdout)
	}
}

func TestWaitPrefersCurrentStateStatus(t *testing.T) {
	dir, state := staleFileFixture(t, spec.PhaseRunning)
	stdout, stderr, err := runCommand(t, "wait", "delta", "--for", "phase=Running", "--timeout", "1s",
		"--dir", dir, "--state-dir", state)
	if err != nil {
		t.Fatalf("wait: %v\n%s", err, stderr)
	}
	if want := "virtualmachine/delta phase Running"; !strings.Contains(stdout, want) {
		t.Errorf("wait output = %q, want %q", stdout, want)
	}
}
