package qemu

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// guestInitrd returns the guest image's initramfs, whose init is the agent.
func guestInitrd(t *testing.T) string {
	t.Helper()
	initrd := filepath.Join(guestImageDir(t), "initrd.img")
	if _, err := os.Stat(initrd); err != nil {
		requireOrSkip(t, "no guest initrd (build it with hack/guest-image or set VMLET_GUEST_IMAGE): %v", err)
	}
	return initrd
}

// agentMachine returns a machine of the guest image with an agent and a
// 64 MiB disk that does not exist yet, mounted at /mnt/data.
func agentMachine(t *testing.T, name string) *vmruntime.Machine {
	t.Helper()
	kernel, initrd := testKernel(t), guestInitrd(t)
	return &vmruntime.Machine{
		Name:      name,
		CPUs:      1,
		MemoryMiB: 256,
		Kernel:    kernel,
		Initrd:    initrd,
		Disks: []vmruntime.Disk{{
			Path:      filepath.Join(t.TempDir(), "data.img"),
			SizeBytes: 64 << 20,
			MountPath: "/mnt/data",
		}},
		Network:     vmruntime.NetworkNone,
		AgentPort:   5000,
		StopTimeout: 20 * time.Second,
		StateDir:    filepath.Join(t.TempDir(), "vms", name),
	}
}

// guestRun runs a shell command in the guest and returns its output.
func guestRun(t *testing.T, r *Runtime, name, script string) string {
	t.Helper()
	conn, err := r.Agent(name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	result, err := conn.Exec(withTimeout(t, 30*time.Second), []string{"/bin/sh", "-c", script}, nil)
	if err != nil {
		t.Fatalf("Exec %q: %v", script, err)
	}
	if result.ExitCode != 0 {
		t.Fatalf("Exec %q exited %d: %s", script, result.ExitCode, result.Stderr)
	}
	return strings.TrimSpace(string(result.Stdout))
}

func randomToken(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 8)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf)
}

func TestRealAgentSuspendResume(t *testing.T) {
	r := newRealRuntime(t)
	m := agentMachine(t, "agent")
	killOnCleanup(t, r, m.Name)
	startObserver(t, r, m.Name)

	ctx := withTimeout(t, 3*time.Minute)
	if err := r.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	hello, err := r.Connect(ctx, m)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	token := randomToken(t)
	guestRun(t, r, m.Name, "echo "+token+" > /tmp/token && echo "+token+" > /mnt/data/token")

	suspend(t, r, m)
	resume(t, r, m)

	again, err := r.Connect(withTimeout(t, time.Minute), m)
	if err != nil || again.BootID != hello.BootID {
		t.Errorf("Connect after resume = %+v, %v, want boot id %q", again, err, hello.BootID)
	}
	if got := guestRun(t, r, m.Name, "cat /tmp/token"); got != token {
		t.Errorf("token in guest memory = %q, want %q", got, token)
	}
	if got := guestRun(t, r, m.Name, "cat /mnt/data/token"); got != token {
		t.Errorf("token on the disk = %q, want %q", got, token)
	}

	if err := r.Stop(withTimeout(t, time.Minute), m); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if obs, _ := r.Observe(ctx, m.Name); obs.State != vmruntime.StateStopped || obs.Exit != "" {
		t.Errorf("Observe after Stop = %+v, want Stopped without an exit", obs)
	}
	// A guest that powered off ends QEMU with status 0; SIGKILL would show.
	if err := r.lookup(m.Name).process().exitErr; err != nil {
		t.Errorf("qemu ended with %v after Stop, want a clean exit", err)
	}
	if out, err := exec.Command("e2fsck", "-fn", m.Disks[0].Path).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	checkColdBoot(t, r, m, hello.BootID, token)
}

// checkColdBoot is the negative control of the memory checks: after a cold
// boot the boot id differs and the token in guest memory is gone, while
// the one on the disk stays.
func checkColdBoot(t *testing.T, r *Runtime, m *vmruntime.Machine, bootID, token string) {
	t.Helper()
	ctx := withTimeout(t, 3*time.Minute)
	if err := r.Boot(ctx, m); err != nil {
		t.Fatalf("Boot again: %v", err)
	}
	hello, err := r.Connect(ctx, m)
	if err != nil {
		t.Fatalf("Connect after a cold boot: %v", err)
	}
	if hello.BootID == bootID {
		t.Errorf("boot id %q unchanged by a cold boot", bootID)
	}
	if got := guestRun(t, r, m.Name, "cat /tmp/token 2>/dev/null || true"); got != "" {
		t.Errorf("token in guest memory after a cold boot = %q, want none", got)
	}
	if got := guestRun(t, r, m.Name, "cat /mnt/data/token"); got != token {
		t.Errorf("token on the disk after a cold boot = %q, want %q", got, token)
	}
}

// suspend quiesces, pauses, saves and kills the VM, as the reconciler does.
func suspend(t *testing.T, r *Runtime, m *vmruntime.Machine) {
	t.Helper()
	ctx := withTimeout(t, time.Minute)
	conn, err := r.Agent(m.Name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	if err := conn.Quiesce(ctx); err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	if err := r.Pause(ctx, m.Name); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	info, err := r.Save(ctx, m, filepath.Join(m.StateDir, "checkpoint"))
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := os.WriteFile(filepath.Join(m.StateDir, "checkpoint.runtime"), []byte(info.Runtime), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Kill(ctx, m.Name); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := r.Agent(m.Name); !errors.Is(err, vmruntime.ErrNoAgent) {
		t.Errorf("Agent after Kill = %v, want ErrNoAgent", err)
	}
}

// resume restores, resumes, reconnects and thaws the VM, as the
// reconciler does, and removes the checkpoint.
func resume(t *testing.T, r *Runtime, m *vmruntime.Machine) {
	t.Helper()
	ctx := withTimeout(t, 2*time.Minute)
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	recorded, err := os.ReadFile(checkpoint + ".runtime")
	if err != nil {
		t.Fatal(err)
	}
	info := vmruntime.CheckpointInfo{Runtime: string(recorded)}
	if err := r.Restore(ctx, m, checkpoint, info); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := r.Resume(ctx, m.Name); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if _, err := r.Connect(ctx, m); err != nil {
		t.Fatalf("Connect after Restore: %v", err)
	}
	conn, err := r.Agent(m.Name)
	if err != nil {
		t.Fatalf("Agent: %v", err)
	}
	if err := conn.Thaw(ctx); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	os.Remove(checkpoint)
	os.Remove(checkpoint + ".runtime")
}
