//go:build linux

package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vmlet/vmlet/spec"
)

// stressCycles is how many suspend and resume cycles each VM of the stress
// test goes through. TCG on two cores keeps it small.
const stressCycles = 3

// TestQEMUStress cycles three real VMs through suspend and resume at the
// same time. Each writer writes a fresh token before every suspend and
// reads it back after every resume, so a lost write, a stale checkpoint
// or a reboot shows as a token that differs.
func TestQEMUStress(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	names := []string{"s1", "s2", "s3"}
	for _, name := range names {
		d.apply(name, spec.Running)
	}
	for _, name := range names {
		d.wait(name, "condition=Ready", e2eReadyTimeout)
	}

	results := make([]qemuCycleResult, len(names))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, name := range names {
		w := &qemuWriter{d: d, name: name, gate: gate, cliResult: &results[i]}
		wg.Go(w.cycle)
	}
	close(gate)
	wg.Wait()

	for i, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", names[i], r.err)
		}
		if r.lost > 0 {
			t.Errorf("%s: %d of %d writes lost", names[i], r.lost, r.reads)
		}
		if r.reads != 2*stressCycles {
			t.Errorf("%s: read back %d tokens, want %d", names[i], r.reads, 2*stressCycles)
		}
	}
	for _, name := range names {
		d.must("stop", name)
	}
	for _, name := range names {
		d.wait(name, "phase=Stopped", e2ePhaseTimeout)
		d.checkDisk(name)
		checkConsole(t, d, name)
	}
	d.stop()
}

// qemuCycleResult is what one writer of the stress test found.
type qemuCycleResult struct {
	reads int // tokens read back, from tmpfs and disk
	lost  int // tokens read back that differ from the one written
	err   error
}

// qemuWriter cycles one VM of the stress test. It touches no *testing.T, so
// that it can run on a goroutine of its own.
type qemuWriter struct {
	d         *qemuDaemon
	name      string
	gate      chan struct{} // closed when every qemuWriter may start
	cliResult *qemuCycleResult
}

func (w *qemuWriter) cycle() {
	<-w.gate
	bootID, err := w.exec("cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		w.cliResult.err = err
		return
	}
	previous := ""
	for i := range stressCycles {
		token := fmt.Sprintf("%s-%d-%s", w.name, i, newToken())
		if token == previous {
			w.cliResult.err = errors.New("token generator repeated a token")
			return
		}
		// The guest still contains the previous token: the read-back below
		// compares against a value that is known to have changed.
		if err := w.expect(previous); err != nil {
			w.cliResult.err = fmt.Errorf("cycle %d: %w", i, err)
			return
		}
		if err := w.once(token, bootID); err != nil {
			w.cliResult.err = fmt.Errorf("cycle %d: %w", i, err)
			return
		}
		previous = token
	}
}

// once writes token, suspends, resumes and reads the token back.
func (w *qemuWriter) once(token, bootID string) error {
	script := fmt.Sprintf("%s && echo %s > %s/token && echo %s > /data/token", mountRAM, token, ramDir, token)
	if _, err := w.exec(script); err != nil {
		return err
	}
	steps := [][]string{
		{"suspend", w.name},
		{"wait", w.name, "--for", "phase=Suspended", "--timeout", e2ePhaseTimeout.String()},
		{"resume", w.name},
		{"wait", w.name, "--for", "condition=Ready", "--timeout", e2eReadyTimeout.String()},
	}
	for _, args := range steps {
		if _, err := w.d.try(args...); err != nil {
			return err
		}
	}
	return w.readBack(token, bootID)
}

func (w *qemuWriter) readBack(token, bootID string) error {
	out, err := w.exec(fmt.Sprintf("cat %s/token /data/token /proc/sys/kernel/random/boot_id", ramDir))
	if err != nil {
		return err
	}
	lines := strings.Fields(out)
	if len(lines) != 3 {
		return fmt.Errorf("read back %q, want two tokens and a boot id", out)
	}
	for _, got := range lines[:2] {
		w.cliResult.reads++
		if got != token {
			w.cliResult.lost++
		}
	}
	if lines[2] != bootID {
		return fmt.Errorf("boot id %q after resume, want %q (the guest rebooted)", lines[2], bootID)
	}
	return nil
}

// expect checks that the guest's disk contains token, or no token at all
// when token is "".
func (w *qemuWriter) expect(token string) error {
	got, err := w.exec("cat /data/token 2>/dev/null || true")
	if err != nil {
		return err
	}
	if got != token {
		return fmt.Errorf("disk token before the write = %q, want %q", got, token)
	}
	return nil
}

func (w *qemuWriter) exec(script string) (string, error) {
	out, err := w.d.try("exec", w.name, "--", "sh", "-c", script)
	return strings.TrimSpace(out), err
}

// checkConsole checks that the VM's serial log was written by the guest
// kernel and contains no I/O error.
func checkConsole(t *testing.T, d *qemuDaemon, name string) {
	t.Helper()
	log := d.consoleLog(name)
	if !strings.Contains(log, "Linux version") {
		t.Errorf("console log of %q lacks the kernel's boot lines (%d bytes)", name, len(log))
	}
	if i := strings.Index(log, "I/O error"); i >= 0 {
		t.Errorf("console log of %q contains an I/O error: %s", name, lineContaining(log, i))
	}
}

// lineContaining returns the line of s that contains byte i.
func lineContaining(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}
