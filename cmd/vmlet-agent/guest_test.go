//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
)

// These tests boot the guest image in QEMU under TCG. They need
// qemu-system-x86_64 and e2fsprogs on the host, and build the image with
// hack/guest-image into .cache/guest unless VMLET_GUEST_IMAGE names a
// folder that holds vmlinuz and initrd.img. Without them the tests skip,
// unless CI=true, when they fail.

// guestTimeout bounds a boot or a restore. TCG boots the cloud kernel to
// the agent in seconds on a quiet host, but CI hosts can be busy.
const guestTimeout = 3 * time.Minute

// guestDiskBytes is the size of the blank test disk.
const guestDiskBytes = 64 << 20

// requireTool returns the path of command or skips the test, or fails it
// when CI=true.
func requireTool(tb testing.TB, command string) string {
	tb.Helper()
	path, err := exec.LookPath(command)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, command)); err == nil {
			return filepath.Join(dir, command)
		}
	}
	missing(tb, fmt.Sprintf("%s is not installed", command))
	return ""
}

// missing skips the test for a missing prerequisite, or fails it in CI.
func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s, and CI=true makes a missing prerequisite fatal", why)
	}
	tb.Skipf("%s: skipping", why)
}

// guestImage returns the folder with vmlinuz and initrd.img of the default
// image, building it with hack/guest-image when VMLET_GUEST_IMAGE is not
// set.
func guestImage(tb testing.TB) string {
	tb.Helper()
	return buildImage(tb, "VMLET_GUEST_IMAGE", "guest", "cloud")
}

// buildImage returns the folder that the environment variable env names,
// or builds the image with the given kernel into .cache/NAME.
func buildImage(tb testing.TB, env, name, kernel string) string {
	tb.Helper()
	if dir := os.Getenv(env); dir != "" {
		return dir
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(repo, ".cache", name)
	cmd := exec.Command(filepath.Join(repo, "hack", "guest-image"), "--kernel", kernel, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(tb, fmt.Sprintf("building the guest image failed: %v\n%s", err, out))
	}
	return dir
}

// vm is one QEMU process running the guest image.
type vm struct {
	dir     string // holds the sockets, the console log and the disk
	disk    string
	cmd     *exec.Cmd
	exited  chan struct{}
	started time.Time
}

// qemuArgs returns QEMU's arguments for a guest in dir, restoring from
// incoming when that is not empty.
func qemuArgs(image, dir, disk, incoming string, extra []string) []string {
	args := []string{
		"-machine", "pc-i440fx-7.2", "-accel", "tcg", "-cpu", "max", "-m", "256",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(image, "vmlinuz"),
		"-initrd", filepath.Join(image, "initrd.img"),
		"-append", "console=ttyS0 vmlet.agent=serial",
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-device", "virtio-serial",
		"-chardev", "socket,id=agent,path=" + filepath.Join(dir, "agent.sock") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + vmruntime.AgentSerialPort,
		"-drive", "file=" + disk + ",if=none,id=disk0,format=raw",
		"-device", "virtio-blk-pci,drive=disk0,serial=" + vmruntime.DiskSerial(0),
	}
	if incoming != "" {
		args = append(args, "-incoming", "exec:cat "+incoming)
	}
	return append(args, extra...)
}

// startVM starts QEMU on the guest image with the disk in dir and extra
// arguments, and kills it when the test ends.
func startVM(tb testing.TB, qemu, image, dir, incoming string, extra ...string) *vm {
	tb.Helper()
	v := &vm{dir: dir, disk: filepath.Join(dir, "disk0.img"), exited: make(chan struct{})}
	os.Remove(filepath.Join(dir, "agent.sock"))
	os.Remove(filepath.Join(dir, "qmp.sock"))
	v.cmd = exec.Command(qemu, qemuArgs(image, dir, v.disk, incoming, extra)...)
	out, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		tb.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		tb.Fatalf("starting QEMU: %v", err)
	}
	go func() {
		v.cmd.Wait()
		out.Close()
		close(v.exited)
	}()
	tb.Cleanup(v.kill)
	return v
}

func (v *vm) kill() {
	v.cmd.Process.Kill()
	<-v.exited
}

// waitExit waits for QEMU to end by itself.
func (v *vm) waitExit(ctx context.Context) error {
	select {
	case <-v.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU to exit: %w", ctx.Err())
	}
}

// dialUnix connects to the socket at path, waiting until QEMU creates it.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to %q: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// diskAtData is the guest configuration of most tests: the one disk
// mounted at /data.
var diskAtData = vmruntime.GuestConfig{
	Disks: []vmruntime.GuestDisk{{Serial: vmruntime.DiskSerial(0), MountPath: "/data"}},
}

// connect opens the agent channel of v and runs the handshake with cfg.
func (v *vm) connect(tb testing.TB, ctx context.Context, cfg vmruntime.GuestConfig) (*agent.Client, vmruntime.Hello) {
	tb.Helper()
	conn, err := dialUnix(ctx, filepath.Join(v.dir, "agent.sock"))
	if err != nil {
		tb.Fatal(err)
	}
	c := agent.NewClient(conn)
	tb.Cleanup(func() { c.Close() })
	hello, err := c.Handshake(ctx, cfg)
	if err != nil {
		tb.Fatalf("Handshake: %v\nconsole:\n%s", err, v.console())
	}
	return c, hello
}

func (v *vm) console() string {
	data, _ := os.ReadFile(filepath.Join(v.dir, "console.log"))
	return string(data)
}

// newGuestDir returns a folder with a sparse blank disk image.
func newGuestDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.Truncate(createFile(tb, filepath.Join(dir, "disk0.img")), guestDiskBytes); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func createFile(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return path
}

// guestRun runs argv in the guest and returns its stdout, failing the test on
// any error or a nonzero exit code.
func guestRun(tb testing.TB, ctx context.Context, c *agent.Client, argv ...string) string {
	tb.Helper()
	res, err := c.Exec(ctx, argv, nil)
	if err != nil {
		tb.Fatalf("Exec %q: %v", argv, err)
	}
	if res.ExitCode != 0 {
		tb.Fatalf("Exec %q: exit code %d, stderr %q", argv, res.ExitCode, res.Stderr)
	}
	return string(res.Stdout)
}

// superblockFeatures returns the "Filesystem features" line of the ext4
// superblock in the disk image at path, as dumpe2fs prints it.
func superblockFeatures(tb testing.TB, path string) string {
	tb.Helper()
	out, err := exec.Command(requireTool(tb, "dumpe2fs"), "-h", path).Output()
	if err != nil {
		tb.Fatalf("dumpe2fs %q: %v", path, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Filesystem features:") {
			return line
		}
	}
	tb.Fatalf("dumpe2fs %q printed no features line", path)
	return ""
}

// fsck runs e2fsck -fn on a copy of the disk image, so that QEMU's later
// writes cannot race the check, and returns its error and output.
func fsck(tb testing.TB, disk string) (string, error) {
	tb.Helper()
	copyPath := filepath.Join(tb.TempDir(), "copy.img")
	if out, err := exec.Command("cp", "--sparse=always", disk, copyPath).CombinedOutput(); err != nil {
		tb.Fatalf("copying %q: %v: %s", disk, err, out)
	}
	out, err := exec.Command(requireTool(tb, "e2fsck"), "-fn", copyPath).CombinedOutput()
	return string(out), err
}

func TestGuestLifecycle(t *testing.T) {
	qemu := requireTool(t, "qemu-system-x86_64")
	image := guestImage(t)
	dir := newGuestDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*guestTimeout)
	defer cancel()

	v := startVM(t, qemu, image, dir, "")
	c, hello := v.connect(t, ctx, diskAtData)
	t.Logf("boot to hello: %v", time.Since(v.started))
	if hello.Version != agent.Version || len(hello.BootID) != 36 {
		t.Errorf("hello = %+v, want version %q and a boot id", hello, agent.Version)
	}

	mounts := guestRun(t, ctx, c, "cat", "/proc/mounts")
	if !strings.Contains(mounts, "/dev/vda /data ext4 rw") {
		t.Fatalf("/proc/mounts has no ext4 /data on /dev/vda:\n%s", mounts)
	}
	token := fmt.Sprintf("token-%d", time.Now().UnixNano())
	guestRun(t, ctx, c, "sh", "-c", "echo "+token+" > /data/token")
	if got := guestRun(t, ctx, c, "cat", "/data/token"); got != token+"\n" {
		t.Errorf("/data/token = %q, want %q", got, token+"\n")
	}
	if got := guestRun(t, ctx, c, "cat", bootIDFile); strings.TrimSpace(got) != hello.BootID {
		t.Errorf("boot id = %q, want the hello's %q", got, hello.BootID)
	}

	// A new daemon adopting the VM connects again: the agent keeps reading
	// the port across the hangup and answers a new handshake.
	c.Close()
	c, rehello := v.connect(t, ctx, diskAtData)
	if rehello.BootID != hello.BootID {
		t.Errorf("boot id after reconnecting = %q, want %q", rehello.BootID, hello.BootID)
	}

	// A mounted ext4 always has needs_recovery set on disk: this is the
	// negative control for the check after Quiesce.
	if f := superblockFeatures(t, v.disk); !strings.Contains(f, "needs_recovery") {
		t.Errorf("before quiesce: %s; want needs_recovery on a mounted filesystem", f)
	}
	if err := c.Quiesce(ctx); err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	if f := superblockFeatures(t, v.disk); strings.Contains(f, "needs_recovery") {
		t.Errorf("after quiesce: %s; want the journal flushed and needs_recovery clear", f)
	}
	if out, err := fsck(t, v.disk); err != nil {
		t.Errorf("e2fsck -fn of the quiesced disk: %v\n%s", err, out)
	}
	// A write to the frozen filesystem blocks until Thaw, so this exec
	// runs out of time; the same write after Thaw succeeds.
	writeCtx, cancelWrite := context.WithTimeout(ctx, 2*time.Second)
	res, err := c.Exec(writeCtx, []string{"sh", "-c", "echo frozen > /data/frozen && sync"}, nil)
	cancelWrite()
	if err == nil {
		t.Errorf("Exec writing to the frozen /data: err = nil, want a timeout")
	}
	if err := c.Thaw(ctx); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	guestRun(t, ctx, c, "sh", "-c", "echo after-thaw > /data/thawed && sync")

	// A host that dies after Quiesce never sends Thaw: the handshake of
	// the next connection thaws.
	if err := c.Quiesce(ctx); err != nil {
		t.Fatalf("second Quiesce: %v", err)
	}
	c.Close()
	c, _ = v.connect(t, ctx, diskAtData)
	writeCtx, cancelWrite = context.WithTimeout(ctx, 20*time.Second)
	guestRun(t, writeCtx, c, "sh", "-c", "echo after-reconnect > /data/reconnected && sync")
	cancelWrite()

	res, err = c.Exec(ctx, []string{"sh", "-c", "echo oops >&2; exit 7"}, nil)
	if err != nil || res.ExitCode != 7 || string(res.Stderr) != "oops\n" {
		t.Errorf("Exec exit 7: result %+v, err %v; want exit code 7 and stderr %q", res, err, "oops\n")
	}

	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := v.waitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := fsck(t, v.disk); err != nil {
		t.Errorf("e2fsck -fn after shutdown: %v\n%s", err, out)
	}
	if f := superblockFeatures(t, v.disk); strings.Contains(f, "needs_recovery") {
		t.Errorf("after shutdown: %s; want a cleanly unmounted filesystem", f)
	}
}

// qmp is a minimal QMP client for the restore test.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialQMP(ctx context.Context, path string) (*qmp, error) {
	conn, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	if _, err := q.r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, err
	}
	if _, err := q.execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// execute runs a command and returns its "return" member, skipping events.
func (q *qmp) execute(command string, args any) (json.RawMessage, error) {
	req, _ := json.Marshal(map[string]any{"execute": command, "arguments": args})
	if args == nil {
		req, _ = json.Marshal(map[string]any{"execute": command})
	}
	if _, err := q.conn.Write(append(req, '\n')); err != nil {
		return nil, err
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return nil, err
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s", command, msg.Error.Desc)
		}
		if msg.Return != nil {
			return msg.Return, nil
		}
	}
}

// waitMigration polls query-migrate until the migration completes.
func (q *qmp) waitMigration(ctx context.Context) error {
	for {
		out, err := q.execute("query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(out, &st)
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitStatus polls query-status until the VM reports status.
func (q *qmp) waitStatus(ctx context.Context, status string) error {
	for {
		out, err := q.execute("query-status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(out, &st)
		if st.Status == status {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for status %q (last %q): %w", status, st.Status, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// save quiesces the guest, stops it and migrates it to path, then ends
// QEMU.
func save(t *testing.T, ctx context.Context, v *vm, c *agent.Client, path string) {
	t.Helper()
	q, err := dialQMP(ctx, filepath.Join(v.dir, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.conn.Close()
	if err := c.Quiesce(ctx); err != nil {
		t.Fatalf("Quiesce: %v", err)
	}
	steps := []struct {
		command string
		args    any
	}{
		{"stop", nil},
		{"migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}},
		{"migrate", map[string]any{"uri": "exec:cat > " + path}},
	}
	for _, s := range steps {
		if _, err := q.execute(s.command, s.args); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.waitMigration(ctx); err != nil {
		t.Fatal(err)
	}
	q.execute("quit", nil)
	if err := v.waitExit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestGuestRestore(t *testing.T) {
	qemu := requireTool(t, "qemu-system-x86_64")
	image := guestImage(t)
	dir := newGuestDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*guestTimeout)
	defer cancel()

	v := startVM(t, qemu, image, dir, "")
	c, hello := v.connect(t, ctx, diskAtData)
	guestRun(t, ctx, c, "sh", "-c", "mkdir -p /ram && mount -t tmpfs tmpfs /ram && echo in-memory > /ram/token")

	checkpoint := filepath.Join(dir, "checkpoint")
	save(t, ctx, v, c, checkpoint)
	c.Close()

	restored := startVM(t, qemu, image, dir, checkpoint)
	q, err := dialQMP(ctx, filepath.Join(dir, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.conn.Close()
	if err := q.waitStatus(ctx, "paused"); err != nil {
		t.Fatalf("%v\n%s", err, restored.console())
	}
	if _, err := q.execute("cont", nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c2, hello2 := restored.connect(t, ctx, diskAtData)
	t.Logf("cont to hello after restore: %v", time.Since(start))
	if hello2.BootID != hello.BootID {
		t.Errorf("boot id after restore = %q, want %q (the guest rebooted)", hello2.BootID, hello.BootID)
	}
	if err := c2.Thaw(ctx); err != nil {
		t.Fatalf("Thaw after restore: %v", err)
	}
	if got := guestRun(t, ctx, c2, "cat", "/ram/token"); got != "in-memory\n" {
		t.Errorf("/ram/token after restore = %q, want %q", got, "in-memory\n")
	}
	guestRun(t, ctx, c2, "sh", "-c", "echo written-after-restore > /data/after && sync")
	if err := c2.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := restored.waitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := fsck(t, restored.disk); err != nil {
		t.Errorf("e2fsck -fn after restore and shutdown: %v\n%s", err, out)
	}
}

// BenchmarkBootToHello measures a cold boot of the guest image under TCG,
// from starting QEMU to the end of the agent's handshake, which includes
// formatting and mounting a blank 64 MiB disk.
func BenchmarkBootToHello(b *testing.B) {
	qemu := requireTool(b, "qemu-system-x86_64")
	image := guestImage(b)
	for b.Loop() {
		b.StopTimer()
		dir := newGuestDir(b)
		ctx, cancel := context.WithTimeout(b.Context(), guestTimeout)
		b.StartTimer()
		v := startVM(b, qemu, image, dir, "")
		v.connect(b, ctx, diskAtData)
		b.StopTimer()
		v.kill()
		cancel()
		b.StartTimer()
	}
}

func TestGuestShare9p(t *testing.T) {
	qemu := requireTool(t, "qemu-system-x86_64")
	image := buildImage(t, "VMLET_GUEST_IMAGE_GENERIC", "guest-generic", "generic")
	dir := newGuestDir(t)
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "from-host"), []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*guestTimeout)
	defer cancel()

	v := startVM(t, qemu, image, dir, "",
		"-virtfs", "local,path="+share+",mount_tag=workspace,security_model=none,id=share0")
	cfg := diskAtData
	cfg.Shares = []vmruntime.GuestShare{{Tag: "workspace", FSType: "9p", MountPath: "/mnt/work"}}
	c, _ := v.connect(t, ctx, cfg)

	if got := guestRun(t, ctx, c, "cat", "/mnt/work/from-host"); got != "host data\n" {
		t.Errorf("/mnt/work/from-host in the guest = %q, want %q", got, "host data\n")
	}
	guestRun(t, ctx, c, "sh", "-c", "echo guest data > /mnt/work/from-guest")
	data, err := os.ReadFile(filepath.Join(share, "from-guest"))
	if err != nil || string(data) != "guest data\n" {
		t.Errorf("from-guest on the host = %q, %v; want %q", data, err, "guest data\n")
	}
	if mounts := guestRun(t, ctx, c, "cat", "/proc/mounts"); !strings.Contains(mounts, "/dev/vda /data ext4") {
		t.Errorf("/proc/mounts has no ext4 /data, so ext4 did not load on the generic kernel:\n%s", mounts)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := v.waitExit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestGuestPowerButton(t *testing.T) {
	qemu := requireTool(t, "qemu-system-x86_64")
	image := guestImage(t)
	dir := newGuestDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*guestTimeout)
	defer cancel()

	v := startVM(t, qemu, image, dir, "")
	c, _ := v.connect(t, ctx, diskAtData)
	guestRun(t, ctx, c, "sh", "-c", "echo before-powerdown > /data/token")

	q, err := dialQMP(ctx, filepath.Join(dir, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.conn.Close()
	if _, err := q.execute("system_powerdown", nil); err != nil {
		t.Fatal(err)
	}
	if err := v.waitExit(ctx); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, v.console())
	}
	if !strings.Contains(v.console(), "Power button pressed") {
		t.Errorf("console has no power button line, so the guest did not power off by itself:\n%s", v.console())
	}
	if out, err := fsck(t, v.disk); err != nil {
		t.Errorf("e2fsck -fn after ACPI power-down: %v\n%s", err, out)
	}
	if f := superblockFeatures(t, v.disk); strings.Contains(f, "needs_recovery") {
		t.Errorf("after ACPI power-down: %s; want a cleanly unmounted filesystem", f)
	}
}
