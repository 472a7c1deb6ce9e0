//go:build linux

package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
)

// Names of the temporary checkpoint files a suspend writes before the
// checkpoint gets its final name: the reconciler's and, inside it, the
// one QEMU streams into.
const (
	checkpointTemp    = "checkpoint.tmp"
	checkpointPartial = ".checkpoint.tmp.partial"
)

// bootWithTokens applies a Running VM, waits for it, and writes a fresh
// token into its tmpfs and onto its disk. It returns the token and the
// guest's boot id.
func bootWithTokens(t *testing.T, d *qemuDaemon, name string) (token, bootID string) {
	t.Helper()
	d.apply(name, spec.Running)
	d.wait(name, "condition=Ready", e2eReadyTimeout)
	token = newToken()
	d.writeTokens(name, token)
	return token, d.bootID(name)
}

// TestQEMUKilledQEMU kills a running VM's QEMU with SIGKILL: the VM shows
// Failed, then the daemon boots it again and counts the restart.
func TestQEMUKilledQEMU(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	const name = "crash"
	token, bootID := bootWithTokens(t, d, name)
	// A killed QEMU loses the guest's page cache: only a synced write
	// is expected on the disk after the restart.
	d.guest(name, "sync")

	if err := syscall.Kill(d.qemuPid(name), syscall.SIGKILL); err != nil {
		t.Fatalf("killing QEMU: %v", err)
	}
	d.wait(name, "phase=Failed", e2ePhaseTimeout)
	d.wait(name, "condition=Ready", e2eReadyTimeout)

	st := d.status(name)
	if st.Restarts < 1 {
		t.Errorf("status.restarts = %d after a crash, want 1 or more", st.Restarts)
	}
	// The restart is a cold boot: a new boot id shows that the boot id
	// comparisons of the other tests detect a reboot.
	if got := d.bootID(name); got == bootID {
		t.Errorf("boot id after the restart = %q, the same as before the crash", got)
	}
	if _, disk := d.readTokens(name); disk != token {
		t.Errorf("disk token after the restart = %q, want %q", disk, token)
	}
	stopAndCheck(t, d, name)
}

// stopAndCheck stops the VM, checks its disk and stops the daemon.
func stopAndCheck(t *testing.T, d *qemuDaemon, name string) {
	t.Helper()
	d.must("stop", name)
	d.wait(name, "phase=Stopped", e2ePhaseTimeout)
	d.checkDisk(name)
	checkConsole(t, d, name)
	d.stop()
}

// tmpfsSize is the size of the state folder of TestQEMUSaveNoSpace, and
// fillSize what the guest writes into its own memory first: more than the
// folder can take, in random bytes that no zero-page detection skips.
const (
	tmpfsSize = 64 << 20
	fillSize  = 96 << 20
)

// TestQEMUSaveNoSpace suspends a VM whose state folder is a tmpfs too
// small for its checkpoint: the VM runs on, thawed, the status gives the
// reason, and no checkpoint appears under the final name.
func TestQEMUSaveNoSpace(t *testing.T) {
	env := requireE2E(t)
	requireRoot(t)
	state := mountTmpfs(t, tmpfsSize)
	d := newQEMUDaemon(t, env, state)
	d.start()
	const name = "full"
	d.apply(name, spec.Running)
	d.wait(name, "condition=Ready", e2eReadyTimeout)

	sum := d.guest(name, mountRAM+" && dd if=/dev/urandom of="+ramDir+"/fill bs=1M count=96 2>/dev/null && sha256sum "+ramDir+"/fill")
	if free := freeBytes(t, state); free >= fillSize {
		t.Fatalf("state folder has %d bytes free, so a checkpoint of more than %d bytes could fit", free, fillSize)
	}

	d.must("suspend", name)
	st := d.eventually(name, "Ready reason "+reasonSuspendFailed, func(st spec.Status) bool {
		return statusCondition(st, spec.ConditionReady).Reason == reasonSuspendFailed
	})
	if st.Phase != spec.PhaseRunning {
		t.Errorf("phase after the failed suspend = %s, want Running", st.Phase)
	}
	if msg := statusCondition(st, spec.ConditionReady).Message; !strings.Contains(strings.ToLower(msg), "no space left") {
		t.Errorf("Ready message = %q, want it to say the device has no space left", msg)
	}
	if _, err := os.Stat(filepath.Join(d.vmDir(name), e2eCheckpointFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("checkpoint under its final name after a failed save: %v", err)
	}
	// A write that returns shows the filesystems were thawed.
	d.must("exec", name, "--timeout", "2m", "--", "sh", "-c", "echo after > /data/after && sync")
	if got := d.guest(name, "sha256sum "+ramDir+"/fill"); got != sum {
		t.Errorf("guest memory changed across the failed suspend: %q, want %q", got, sum)
	}
	stopAndCheck(t, d, name)
}

// reasonSuspendFailed is the Ready reason of a VM whose suspend failed.
const reasonSuspendFailed = "SuspendFailed"

// mountTmpfs mounts a tmpfs of size bytes on a new folder and unmounts it
// at cleanup, after the daemon's cleanup has killed its QEMUs.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := "size=" + strconv.Itoa(size)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs on %q: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %q: %v\n%s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * fs.Bsize
}

// TestQEMUDaemonKilledDuringSuspend kills the daemon with SIGKILL while
// QEMU writes the checkpoint. A new daemon converges on Suspended without
// taking the partial file for a checkpoint, and the resume gives back the
// guest with its memory, or a cold-booted guest, never a corrupt one.
func TestQEMUDaemonKilledDuringSuspend(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	const name = "cut"
	token, bootID := bootWithTokens(t, d, name)

	d.must("suspend", name)
	vmDir := d.vmDir(name)
	d.killWhen("the checkpoint is being written", func() bool {
		return exists(filepath.Join(vmDir, checkpointPartial)) || exists(filepath.Join(vmDir, checkpointTemp))
	})
	if exists(filepath.Join(vmDir, e2eCheckpointFile)) {
		t.Fatal("the checkpoint had its final name when the daemon was killed: the suspend was not interrupted")
	}

	d.start()
	d.wait(name, "phase=Suspended", e2ePhaseTimeout)
	d.must("resume", name)
	d.wait(name, "condition=Ready", e2eReadyTimeout)
	checkSurvivor(t, d, name, token, bootID)
	stopAndCheck(t, d, name)
}

// TestQEMUDaemonKilledDuringResume kills the daemon with SIGKILL while a
// new QEMU restores the checkpoint. A new daemon converges on Running.
func TestQEMUDaemonKilledDuringResume(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	const name = "cut"
	token, bootID := bootWithTokens(t, d, name)
	d.must("suspend", name)
	d.wait(name, "phase=Suspended", e2ePhaseTimeout)

	d.must("resume", name)
	d.killWhen("QEMU restores the checkpoint", func() bool {
		return len(incomingQEMUs(d.state)) > 0
	})
	if !exists(filepath.Join(d.vmDir(name), e2eCheckpointFile)) {
		t.Fatal("the checkpoint was gone when the daemon was killed: the resume was not interrupted")
	}

	d.start()
	d.wait(name, "condition=Ready", e2eReadyTimeout)
	checkSurvivor(t, d, name, token, bootID)
	if exists(filepath.Join(d.vmDir(name), e2eCheckpointFile)) {
		t.Error("checkpoint left under its final name after the VM runs again")
	}
	stopAndCheck(t, d, name)
}

// checkSurvivor checks the guest after an interrupted transition. Either
// its memory came back (same boot id, tmpfs token) or it was cold-booted
// (new boot id, empty tmpfs). Its disk contains the token either way.
func checkSurvivor(t *testing.T, d *qemuDaemon, name, token, bootID string) {
	t.Helper()
	ram, disk := d.readTokens(name)
	gotBootID := d.bootID(name)
	switch {
	case gotBootID == bootID && ram != token:
		t.Errorf("same boot id but tmpfs token %q, want %q: memory restored from a bad checkpoint", ram, token)
	case gotBootID != bootID && ram != "missing":
		t.Errorf("new boot id but tmpfs token %q, want none after a cold boot", ram)
	case gotBootID == bootID:
		t.Logf("memory restored: same boot id, tmpfs token intact")
	default:
		t.Logf("cold-booted: new boot id %s", gotBootID)
	}
	if disk != token {
		t.Errorf("disk token = %q, want %q", disk, token)
	}
}

// TestQEMUDiskTouchedWhileSuspended changes a suspended VM's disk mtime:
// the checkpoint is stale and the daemon refuses to resume it.
func TestQEMUDiskTouchedWhileSuspended(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	const name = "touch"
	bootWithTokens(t, d, name)
	d.must("suspend", name)
	d.wait(name, "phase=Suspended", e2ePhaseTimeout)
	// The same check before the touch must not see a stale checkpoint.
	if c := statusCondition(d.status(name), spec.ConditionCheckpointStale); c.Status == spec.ConditionTrue {
		t.Fatalf("CheckpointStale before the disk changed: %+v", c)
	}

	now := time.Now()
	if err := os.Chtimes(d.diskPath(name), now, now); err != nil {
		t.Fatal(err)
	}
	d.must("resume", name)
	d.wait(name, "condition=CheckpointStale", e2ePhaseTimeout)

	st := d.status(name)
	if st.Phase != spec.PhaseSuspended {
		t.Errorf("phase with a stale checkpoint = %s, want Suspended", st.Phase)
	}
	if c := statusCondition(st, spec.ConditionCheckpointStale); c.Reason != "DiskChanged" {
		t.Errorf("CheckpointStale reason = %q (%s), want DiskChanged", c.Reason, c.Message)
	}
	if pids := qemuProcesses(d.state); len(pids) > 0 {
		t.Errorf("QEMU running for a stale checkpoint: %v", pids)
	}
	if !exists(filepath.Join(d.vmDir(name), e2eCheckpointFile)) {
		t.Error("stale checkpoint was removed, want it kept")
	}
	stopAndCheck(t, d, name)
}

// killWhen polls until ready reports true, then kills the daemon with
// SIGKILL.
func (d *qemuDaemon) killWhen(what string, ready func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(e2ePhaseTimeout)
	for !ready() {
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out after %s waiting until %s", e2ePhaseTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.kill()
}

// eventually polls the VM's status until ok returns true and returns it.
func (d *qemuDaemon) eventually(name, what string, ok func(spec.Status) bool) spec.Status {
	d.t.Helper()
	deadline := time.Now().Add(e2ePhaseTimeout)
	for {
		st := d.status(name)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out after %s waiting for %s of %q; last status %+v", e2ePhaseTimeout, what, name, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// incomingQEMUs returns the QEMUs of the state folder that were started
// to restore a checkpoint.
func incomingQEMUs(state string) []int {
	var pids []int
	for _, pid := range qemuProcesses(state) {
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "-incoming") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
