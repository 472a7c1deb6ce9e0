//go:build linux

package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/spec"
)

// TestQEMUOneVM takes one real VM through boot, suspend, resume and stop
// with the real daemon and client commands, and checks that the resume
// restored memory rather than rebooting.
func TestQEMUOneVM(t *testing.T) {
	env := requireE2E(t)
	d := newQEMUDaemon(t, env, "")
	d.start()
	const name = "one"

	if _, err := os.Stat(d.diskPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("disk image exists before the first boot: %v", err)
	}
	d.apply(name, spec.Running)
	d.wait(name, "condition=Ready", e2eReadyTimeout)
	checkNewDisk(t, d, name)

	token := newToken()
	d.writeTokens(name, token)
	bootID := d.bootID(name)
	pid := d.qemuPid(name)

	d.must("suspend", name)
	d.wait(name, "phase=Suspended", e2ePhaseTimeout)
	checkSuspended(t, d, name, pid)

	d.must("resume", name)
	d.wait(name, "condition=Ready", e2eReadyTimeout)
	ram, disk := d.readTokens(name)
	if ram != token {
		t.Errorf("tmpfs token after resume = %q, want %q (memory not restored)", ram, token)
	}
	if disk != token {
		t.Errorf("disk token after resume = %q, want %q", disk, token)
	}
	if got := d.bootID(name); got != bootID {
		t.Errorf("boot id after resume = %q, want %q (the guest rebooted)", got, bootID)
	}
	if _, err := os.Stat(filepath.Join(d.vmDir(name), e2eCheckpointFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("checkpoint still there after the resume consumed it: %v", err)
	}

	d.must("stop", name)
	d.wait(name, "phase=Stopped", e2ePhaseTimeout)
	if pids := qemuProcesses(d.state); len(pids) > 0 {
		t.Errorf("QEMU processes after stop: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(d.vmDir(name), e2eCheckpointFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("checkpoint after stop: %v", err)
	}
	d.checkDisk(name)
	d.stop()
}

// checkNewDisk checks that the missing disk was created at its size and
// that the agent mounted it.
func checkNewDisk(t *testing.T, d *qemuDaemon, name string) {
	t.Helper()
	info, err := os.Stat(d.diskPath(name))
	if err != nil {
		t.Fatalf("disk image after boot: %v", err)
	}
	if info.Size() != 64<<20 {
		t.Errorf("disk image size = %d, want %d", info.Size(), 64<<20)
	}
	mounts := d.guest(name, "cat /proc/mounts")
	if !strings.Contains(mounts, " /data ext4 ") {
		t.Errorf("no ext4 mounted at /data in the guest:\n%s", mounts)
	}
}

// checkSuspended checks that the suspended VM's QEMU (pid) has exited and
// that its checkpoint is there, readable by its owner alone.
func checkSuspended(t *testing.T, d *qemuDaemon, name string, pid int) {
	t.Helper()
	if processAlive(pid) {
		t.Errorf("QEMU process %d still alive after the suspend", pid)
	}
	info, err := os.Stat(filepath.Join(d.vmDir(name), e2eCheckpointFile))
	if err != nil {
		t.Fatalf("checkpoint after the suspend: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("checkpoint mode = %v, want 0600", mode)
	}
	st := d.status(name)
	if st.Checkpoint == nil || st.Checkpoint.Bytes != info.Size() {
		t.Errorf("status checkpoint = %+v, want %d bytes", st.Checkpoint, info.Size())
	}
}
