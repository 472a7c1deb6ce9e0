package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// requireOrSkip skips the test, or fails it when CI=true, because a
// prerequisite of the real-QEMU tests is missing.
func requireOrSkip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// guestImageDir returns the folder of the guest image: VMLET_GUEST_IMAGE,
// or .cache/guest at the top of the repository.
func guestImageDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("VMLET_GUEST_IMAGE")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "guest")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// newRealRuntime returns a Runtime on the installed QEMU with TCG, which
// boots far faster than nested KVM.
func newRealRuntime(t testing.TB) *Runtime {
	t.Helper()
	if _, err := exec.LookPath(defaultBinary()); err != nil {
		requireOrSkip(t, "qemu is not installed: %v", err)
	}
	r, err := New(Options{Accel: AccelTCG})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// testKernel returns the guest image's kernel.
func testKernel(t testing.TB) string {
	t.Helper()
	kernel := filepath.Join(guestImageDir(t), "vmlinuz")
	if _, err := os.Stat(kernel); err != nil {
		requireOrSkip(t, "no guest kernel (build it with hack/guest-image or set VMLET_GUEST_IMAGE): %v", err)
	}
	return kernel
}

// buildCounterInitrd packs busybox-static and testdata/init.sh into an
// initramfs whose init prints a boot line and then a counter.
func buildCounterInitrd(t testing.TB) string {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		requireOrSkip(t, "busybox-static is not installed: %v", err)
	}
	root := t.TempDir()
	for _, dir := range []string{"bin", "proc", "dev"} {
		mustMkdir(t, filepath.Join(root, dir))
	}
	copyFile(t, busybox, filepath.Join(root, "bin", "busybox"), 0o755)
	copyFile(t, filepath.Join("testdata", "init.sh"), filepath.Join(root, "init"), 0o755)

	initrd := filepath.Join(t.TempDir(), "initrd.img")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+strconv.Quote(initrd))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packing initrd: %v: %s", err, out)
	}
	return initrd
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

// counterMachine returns a 128 MiB machine without an agent whose state
// folder is stateRoot/vms/name.
func counterMachine(t testing.TB, stateRoot, name, kernel, initrd string) *vmruntime.Machine {
	t.Helper()
	return &vmruntime.Machine{
		Name:        name,
		CPUs:        1,
		MemoryMiB:   128,
		Kernel:      kernel,
		Initrd:      initrd,
		Cmdline:     "quiet panic=-1",
		Network:     vmruntime.NetworkNone,
		StopTimeout: 2 * time.Second,
		StateDir:    filepath.Join(stateRoot, "vms", name),
	}
}

// killOnCleanup ends the VM when the test ends, however it ends.
func killOnCleanup(t testing.TB, r *Runtime, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.Kill(ctx, name); err != nil {
			t.Errorf("Kill %q: %v", name, err)
		}
	})
}

var tickPattern = regexp.MustCompile(`vmlet-test tick (\d+)`)

// consoleTicks returns the counter values in the console log, in order,
// and how many boot lines it holds.
func consoleTicks(t testing.TB, m *vmruntime.Machine) (ticks []int, boots int) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(m.StateDir, vmruntime.ConsoleLogFile))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, match := range tickPattern.FindAllSubmatch(log, -1) {
		n, _ := strconv.Atoi(string(match[1]))
		ticks = append(ticks, n)
	}
	return ticks, bytes.Count(log, []byte("vmlet-test boot "))
}

// awaitTick waits until the console shows a tick above after.
func awaitTick(t testing.TB, m *vmruntime.Machine, after int) int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		ticks, _ := consoleTicks(t, m)
		if len(ticks) > 0 && ticks[len(ticks)-1] > after {
			return ticks[len(ticks)-1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("console of %q shows no tick above %d", m.Name, after)
	return 0
}

// checkContinuous returns "" when ticks count 1, 2, 3, ... without a
// restart or a gap, or what breaks the sequence.
func checkContinuous(ticks []int) string {
	for i, tick := range ticks {
		if tick != i+1 {
			return "tick " + strconv.Itoa(i+1) + " is " + strconv.Itoa(tick)
		}
	}
	return ""
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// statBlocks returns the 512-byte blocks allocated to path.
func statBlocks(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}

// observer calls Observe in a loop while lifecycle methods run, as the
// daemon's local API does, so that the race detector sees both sides.
type observer struct {
	r    *Runtime
	name string
	// calls counts the Observe calls made, so the test can check that the
	// loop really ran.
	calls int
}

// startObserver runs an observer until the test ends.
func startObserver(t testing.TB, r *Runtime, name string) *observer {
	t.Helper()
	o := &observer{r: r, name: name}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go o.run(ctx, done)
	t.Cleanup(func() {
		cancel()
		<-done
		if o.calls == 0 {
			t.Error("observer made no Observe call")
		}
	})
	return o
}

func (o *observer) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for ctx.Err() == nil {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		o.r.Observe(callCtx, o.name)
		o.r.Agent(o.name)
		cancel()
		o.calls++
		time.Sleep(5 * time.Millisecond)
	}
}
