//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// The real-QEMU tests run only on Linux: they find QEMU processes through
// /proc and mount a tmpfs.

// Bounds of the real-QEMU tests. A TCG boot reached the agent in about
// 10 s on an idle two-core machine and in about 35 s on a loaded one, so
// the waits are generous. None of them is an assertion on speed.
const (
	e2eReadyTimeout   = 4 * time.Minute
	e2ePhaseTimeout   = 3 * time.Minute
	e2eCommandTimeout = 5 * time.Minute
	e2eStopWait       = time.Minute
)

// Files of a VM's state folder that the tests inspect.
const (
	qemuPidFile       = "qemu.pid"
	e2eCheckpointFile = "checkpoint"
)

// e2eEnv is what the real-QEMU tests take from the host.
type e2eEnv struct {
	bin   string // the vmlet binary, built for the test
	image string // the guest image folder: vmlinuz and initrd.img
	fsck  string // e2fsck
}

// requireE2E returns the environment of a real-QEMU test, building vmlet
// into the test's folder. A missing prerequisite skips the test, or fails
// it when CI=true.
func requireE2E(t *testing.T) e2eEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("real-QEMU test skipped in -short mode")
	}
	if _, err := exec.LookPath(qemuBinary()); err != nil {
		prerequisiteMissing(t, "%s not found (install qemu-system-x86 or run hack/install-deps)", qemuBinary())
	}
	env := e2eEnv{image: guestImageDir(t)}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(env.image, f)); err != nil {
			prerequisiteMissing(t, "guest image incomplete: %v (build it with hack/guest-image %s, or set VMLET_GUEST_IMAGE)", err, env.image)
		}
	}
	env.fsck = findTool(t, "e2fsck")
	env.bin = buildVmlet(t)
	return env
}

// prerequisiteMissing skips the test, or fails it when CI=true: CI must not pass by
// skipping.
func prerequisiteMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and a prerequisite is missing: " + msg)
	}
	t.Skip(msg)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		prerequisiteMissing(t, "mounting a tmpfs needs root")
	}
}

func qemuBinary() string {
	if runtime.GOARCH == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// guestImageDir returns $VMLET_GUEST_IMAGE, else .cache/guest at the
// repository's root.
func guestImageDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("VMLET_GUEST_IMAGE"); dir != "" {
		return dir
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".cache", "guest")
}

// findTool looks name up in PATH and in the sbin folders that a user's
// PATH may lack.
func findTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	prerequisiteMissing(t, "%s not found (install e2fsprogs)", name)
	return ""
}

// buildVmlet builds this package into the test's folder. The build cache
// makes every build after the first a link.
func buildVmlet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmlet")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building vmlet: %v\n%s", err, out)
	}
	return bin
}

// qemuDaemon is one `vmlet run --runtime qemu` process and the folders it
// uses, all under the test's folder. It can be killed and started again
// on the same folders.
type qemuDaemon struct {
	t        *testing.T
	env      e2eEnv
	root     string // the test's folder: manifests to apply, disks, logs
	dir      string // the manifest folder
	state    string // the state folder
	hostLock string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd has exited
	logs     []string
}

// newQEMUDaemon prepares the folders of a daemon whose state folder is state,
// or one under the test's folder when state is "". The daemon is not
// started. At cleanup it is stopped, every QEMU of its state folder is
// killed, and its logs are printed when the test failed.
func newQEMUDaemon(t *testing.T, env e2eEnv, state string) *qemuDaemon {
	t.Helper()
	root := t.TempDir()
	if state == "" {
		state = filepath.Join(root, "state")
	}
	d := &qemuDaemon{
		t: t, env: env, root: root, state: state,
		dir:      filepath.Join(root, "manifests"),
		hostLock: filepath.Join(root, "host.lock"),
	}
	for _, sub := range []string{"src", "disks"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(d.cleanup)
	return d
}

// start starts the daemon and waits for its API socket.
func (d *qemuDaemon) start() {
	d.t.Helper()
	logPath := filepath.Join(d.root, fmt.Sprintf("daemon-%d.log", len(d.logs)+1))
	logFile, err := os.Create(logPath)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logFile.Close()
	d.logs = append(d.logs, logPath)
	d.cmd = exec.Command(d.env.bin, "run", "--runtime", "qemu", "-v", "1",
		"--dir", d.dir, "--state-dir", d.state, "--host-lock", d.hostLock)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("starting vmlet run: %v", err)
	}
	d.exited = make(chan struct{})
	go d.reap(d.cmd, d.exited)
	d.awaitSocket()
}

func (d *qemuDaemon) reap(cmd *exec.Cmd, exited chan struct{}) {
	cmd.Wait()
	close(exited)
}

func (d *qemuDaemon) awaitSocket() {
	d.t.Helper()
	socket := filepath.Join(d.state, "vmlet.sock")
	deadline := time.Now().Add(e2ePhaseTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(socket); err == nil {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("vmlet run exited at start: %s", d.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.t.Fatalf("vmlet run made no API socket %q within %s", socket, e2ePhaseTimeout)
}

// running reports whether the daemon process is alive.
func (d *qemuDaemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the daemon to exit: it lets the
// transition in flight finish and leaves the VMs running.
func (d *qemuDaemon) stop() {
	d.t.Helper()
	if !d.running() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(e2eStopWait):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("vmlet run did not exit within %s of SIGTERM", e2eStopWait)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("vmlet run exited with %d after SIGTERM", code)
	}
}

// kill kills the daemon with SIGKILL, as a crash would end it.
func (d *qemuDaemon) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		d.t.Fatalf("killing vmlet run: %v", err)
	}
	<-d.exited
}

func (d *qemuDaemon) cleanup() {
	if d.t.Failed() && d.running() {
		// SIGQUIT makes the Go runtime write every goroutine's stack to
		// the log before it exits, which shows where a transition hangs.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
		}
	}
	if d.running() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(e2eStopWait):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if left := killQEMUs(d.state); len(left) > 0 {
		d.t.Logf("killed QEMU processes left running: %v", left)
	}
	if d.t.Failed() {
		d.printLogs()
	}
}

func (d *qemuDaemon) printLogs() {
	for _, path := range d.logs {
		data, err := os.ReadFile(path)
		if err != nil {
			d.t.Logf("reading %s: %v", path, err)
			continue
		}
		d.t.Logf("--- %s\n%s", path, data)
	}
}

// cliResult is what one vmlet client command printed and its exit code.
type cliResult struct {
	stdout, stderr string
	code           int
}

// vmlet runs a client command against the daemon's folders.
func (d *qemuDaemon) vmlet(args ...string) cliResult {
	d.t.Helper()
	r, err := d.run(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

// run runs a client command; the error is for a command that could not
// run, not for a non-zero exit code. It is safe for concurrent use.
func (d *qemuDaemon) run(args ...string) (cliResult, error) {
	ctx, cancel := context.WithTimeout(d.t.Context(), e2eCommandTimeout)
	defer cancel()
	full := append([]string{"--dir", d.dir, "--state-dir", d.state, "--host-lock", d.hostLock}, args...)
	cmd := exec.CommandContext(ctx, d.env.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return cliResult{}, fmt.Errorf("running vmlet %v: %w", args, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}, nil
}

// try runs a client command and returns an error unless it exits 0. It is
// safe for concurrent use.
func (d *qemuDaemon) try(args ...string) (string, error) {
	r, err := d.run(args...)
	if err != nil {
		return "", err
	}
	if r.code != 0 {
		return "", fmt.Errorf("vmlet %s: exit %d: %s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout, nil
}

// must runs a client command and fails the test unless it exits 0.
func (d *qemuDaemon) must(args ...string) string {
	d.t.Helper()
	r := d.vmlet(args...)
	if r.code != 0 {
		d.t.Fatalf("vmlet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// diskPath returns where the VM's disk image lives.
func (d *qemuDaemon) diskPath(name string) string {
	return filepath.Join(d.root, "disks", name+".img")
}

// vmDir returns the VM's state folder.
func (d *qemuDaemon) vmDir(name string) string {
	return filepath.Join(d.state, "vms", name)
}

// apply writes the manifest of a 256 MiB, one-CPU VM with an agent and a
// 64 MiB disk mounted at /data, and applies it with vmlet apply.
func (d *qemuDaemon) apply(name string, desired spec.DesiredState) {
	d.t.Helper()
	manifest := fmt.Sprintf(`apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %s
spec:
  desiredState: %s
  cpus: 1
  memory: 256Mi
  kernel: %s
  initrd: %s
  disks:
    - path: %s
      size: 64Mi
      mountPath: /data
  network: none
  agent:
    port: 5000
    readyTimeout: 3m
  stopTimeout: 30s
`, name, desired, filepath.Join(d.env.image, "vmlinuz"), filepath.Join(d.env.image, "initrd.img"), d.diskPath(name))
	path := filepath.Join(d.root, "src", name+".yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.must("apply", "-f", path)
}

// wait runs vmlet wait for the target, phase=P or condition=T[=S].
func (d *qemuDaemon) wait(name, target string, timeout time.Duration) {
	d.t.Helper()
	d.must("wait", name, "--for", target, "--timeout", timeout.String())
}

// status returns the VM's status as vmlet get prints it.
func (d *qemuDaemon) status(name string) spec.Status {
	d.t.Helper()
	var vm spec.VirtualMachine
	out := d.must("get", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &vm); err != nil {
		d.t.Fatalf("decoding vmlet get -o json: %v\n%s", err, out)
	}
	if vm.Status == nil {
		return spec.Status{}
	}
	return *vm.Status
}

// guest runs a shell script in the VM through vmlet exec and returns its
// output without the trailing newline.
func (d *qemuDaemon) guest(name, script string) string {
	d.t.Helper()
	return strings.TrimSpace(d.must("exec", name, "--", "sh", "-c", script))
}

// ramDir is a tmpfs in guest memory: what is written there survives a
// suspend only if the memory does.
const ramDir = "/mnt/ram"

const mountRAM = "mkdir -p " + ramDir + " && { grep -q ' " + ramDir + " ' /proc/mounts || mount -t tmpfs tmpfs " + ramDir + "; }"

// writeTokens writes token into the guest's tmpfs and onto its disk.
func (d *qemuDaemon) writeTokens(name, token string) {
	d.t.Helper()
	d.guest(name, fmt.Sprintf("%s && echo %s > %s/token && echo %s > /data/token", mountRAM, token, ramDir, token))
}

// readTokens returns the tokens in the guest's tmpfs and on its disk.
func (d *qemuDaemon) readTokens(name string) (ram, disk string) {
	d.t.Helper()
	ram = d.guest(name, "cat "+ramDir+"/token 2>/dev/null || echo missing")
	disk = d.guest(name, "cat /data/token 2>/dev/null || echo missing")
	return ram, disk
}

func (d *qemuDaemon) bootID(name string) string {
	d.t.Helper()
	return d.guest(name, "cat /proc/sys/kernel/random/boot_id")
}

// qemuPid returns the pid in the VM's QEMU pid file.
func (d *qemuDaemon) qemuPid(name string) int {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.vmDir(name), qemuPidFile))
	if err != nil {
		d.t.Fatalf("reading the QEMU pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		d.t.Fatalf("QEMU pid file of %q: %v", name, err)
	}
	return pid
}

// checkDisk runs e2fsck -fn on the VM's disk image; the VM must not run.
func (d *qemuDaemon) checkDisk(name string) {
	d.t.Helper()
	out, err := exec.CommandContext(d.t.Context(), d.env.fsck, "-fn", d.diskPath(name)).CombinedOutput()
	if err != nil {
		d.t.Errorf("e2fsck -fn %s: %v\n%s", d.diskPath(name), err, out)
	}
}

// statusCondition returns the status's condition of type kind, or a zero one.
func statusCondition(st spec.Status, kind string) spec.Condition {
	for _, c := range st.Conditions {
		if c.Type == kind {
			return c
		}
	}
	return spec.Condition{}
}

func newToken() string {
	return strings.ToLower(rand.Text())
}

// processAlive reports whether pid is a process that has not exited. A zombie
// has exited.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(data), ") ")
	return ok && !strings.HasPrefix(rest, "Z")
}

// qemuProcesses returns the pids of the live processes whose command
// line names the state folder: the QEMUs of that daemon.
func qemuProcesses(state string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("qemu-system")) {
			continue
		}
		if bytes.Contains(cmdline, []byte(state+string(filepath.Separator))) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killQEMUs kills every QEMU of the state folder, waits for each to end,
// and returns their pids.
func killQEMUs(state string) []int {
	pids := qemuProcesses(state)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return pids
}

// consoleLog returns the VM's serial console log.
func (d *qemuDaemon) consoleLog(name string) string {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.vmDir(name), vmruntime.ConsoleLogFile))
	if err != nil {
		d.t.Fatalf("reading the console log: %v", err)
	}
	return string(data)
}
