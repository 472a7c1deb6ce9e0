package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// The benchmark guest has 256 MiB of memory and fills benchFillMiB of it
// with non-zero data, so that a checkpoint has real pages to write rather
// than zero pages, which QEMU sends as a flag.
const (
	benchMemoryMiB = 256
	benchFillMiB   = 160
)

// benchMachine returns the benchmark guest, booted and filled.
func benchMachine(b *testing.B, r *Runtime, stateRoot string) *vmruntime.Machine {
	b.Helper()
	m := counterMachine(b, stateRoot, "bench", testKernel(b), buildCounterInitrd(b))
	m.MemoryMiB = benchMemoryMiB
	m.Cmdline += " vmlet.test.fill=" + strconv.Itoa(benchFillMiB)
	killOnCleanup(b, r, m.Name)
	if err := r.Boot(withTimeout(b, time.Minute), m); err != nil {
		b.Fatalf("Boot: %v", err)
	}
	awaitConsole(b, filepath.Join(m.StateDir, vmruntime.ConsoleLogFile), "vmlet-test filled")
	return m
}

// awaitConsole waits until the console log contains text.
func awaitConsole(b *testing.B, path, text string) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		log, _ := os.ReadFile(path)
		if strings.Contains(string(log), text) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("console %q never showed %q", path, text)
}

// BenchmarkRuntimeSave measures Pause and Save of the runtime, fsyncs
// included; its MB/s is the checkpoint write rate.
func BenchmarkRuntimeSave(b *testing.B) {
	r := newRealRuntime(b)
	m := benchMachine(b, r, b.TempDir())
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	ctx := withTimeout(b, 10*time.Minute)
	for b.Loop() {
		if err := r.Pause(ctx, m.Name); err != nil {
			b.Fatalf("Pause: %v", err)
		}
		info, err := r.Save(ctx, m, checkpoint)
		if err != nil {
			b.Fatalf("Save: %v", err)
		}
		b.SetBytes(info.Bytes)

		b.StopTimer()
		os.Remove(checkpoint)
		if err := r.Resume(ctx, m.Name); err != nil {
			b.Fatalf("Resume: %v", err)
		}
		b.StartTimer()
	}
}

// BenchmarkRuntimeRestore measures Restore and Resume of the runtime, from
// no process to a running guest.
func BenchmarkRuntimeRestore(b *testing.B) {
	r := newRealRuntime(b)
	m := benchMachine(b, r, b.TempDir())
	checkpoint := filepath.Join(m.StateDir, "checkpoint")
	ctx := withTimeout(b, 10*time.Minute)
	if err := r.Pause(ctx, m.Name); err != nil {
		b.Fatalf("Pause: %v", err)
	}
	info, err := r.Save(ctx, m, checkpoint)
	if err != nil {
		b.Fatalf("Save: %v", err)
	}
	b.SetBytes(info.Bytes)
	for b.Loop() {
		b.StopTimer()
		if err := r.Kill(ctx, m.Name); err != nil {
			b.Fatalf("Kill: %v", err)
		}
		b.StartTimer()

		if err := r.Restore(ctx, m, checkpoint, info); err != nil {
			b.Fatalf("Restore: %v", err)
		}
		if err := r.Resume(ctx, m.Name); err != nil {
			b.Fatalf("Resume: %v", err)
		}
	}
}

// BenchmarkDDWrite measures dd writing 256 MiB with fsync into the folder
// the checkpoints of BenchmarkRuntimeSave go to, for comparison.
func BenchmarkDDWrite(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "vms", "bench")
	mustMkdir(b, dir)
	target := filepath.Join(dir, "dd.img")
	b.SetBytes(256 << 20)
	for b.Loop() {
		out, err := exec.Command("dd", "if=/dev/zero", "of="+target, "bs=1M", "count=256", "conv=fsync").CombinedOutput()
		if err != nil {
			b.Fatalf("dd: %v: %s", err, out)
		}
		b.StopTimer()
		os.Remove(target)
		b.StartTimer()
	}
}

// rawGuest is the benchmark guest run by hand with QMP alone, without the
// runtime, as the baseline the runtime's transitions are measured against.
type rawGuest struct {
	dir  string
	cmd  *exec.Cmd
	mon  *monitor
	args []string
}

// rawArgs returns a plain QEMU command line for the benchmark guest.
func rawArgs(b *testing.B, r *Runtime, dir string) []string {
	b.Helper()
	return []string{
		"-machine", r.machineType, "-accel", "tcg", "-cpu", "max",
		"-m", strconv.Itoa(benchMemoryMiB), "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", testKernel(b), "-initrd", buildCounterInitrd(b),
		"-append", "console=ttyS0 quiet vmlet.test.fill=" + strconv.Itoa(benchFillMiB),
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
	}
}

// startRaw starts QEMU with args plus extra and connects to QMP.
func startRaw(ctx context.Context, b *testing.B, dir string, args []string, extra ...string) *rawGuest {
	b.Helper()
	os.Remove(filepath.Join(dir, "qmp.sock"))
	g := &rawGuest{dir: dir, args: args, cmd: exec.Command(defaultBinary(), append(args, extra...)...)}
	if err := g.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	for {
		mon, err := dialMonitor(ctx, filepath.Join(dir, "qmp.sock"))
		if err == nil {
			g.mon = mon
			return g
		}
		if ctx.Err() != nil {
			b.Fatalf("qmp of the raw guest: %v", err)
		}
		time.Sleep(pollInterval)
	}
}

// stop quits QEMU and waits for it.
func (g *rawGuest) stop() {
	g.mon.execute(context.Background(), "quit", nil, nil)
	g.mon.close()
	g.cmd.Wait()
}

// awaitStatus polls query-status until it reports want.
func (g *rawGuest) awaitStatus(ctx context.Context, b *testing.B, want string) {
	b.Helper()
	for {
		var reply struct {
			Status string `json:"status"`
		}
		if err := g.mon.execute(ctx, "query-status", nil, &reply); err != nil {
			b.Fatalf("query-status: %v", err)
		}
		if reply.Status == want {
			return
		}
		time.Sleep(pollInterval)
	}
}

// save stops the guest and migrates it to path through exec:cat with the
// bandwidth cap lifted, then fsyncs the file and its folder.
func (g *rawGuest) save(ctx context.Context, b *testing.B, path string) int64 {
	b.Helper()
	g.mustExecute(ctx, b, "stop", nil, nil)
	g.mustExecute(ctx, b, "migrate-set-parameters", map[string]any{"max-bandwidth": maxBandwidth}, nil)
	g.mustExecute(ctx, b, "migrate", map[string]string{"uri": "exec:cat > " + path}, nil)
	for {
		var info migrationInfo
		g.mustExecute(ctx, b, "query-migrate", nil, &info)
		if info.Status == "completed" {
			break
		}
		if info.Status == "failed" {
			b.Fatalf("raw migration failed: %s", info.ErrorDesc)
		}
		time.Sleep(pollInterval)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := syncDir(g.dir); err != nil {
		b.Fatal(err)
	}
	stat, _ := f.Stat()
	return stat.Size()
}

func (g *rawGuest) mustExecute(ctx context.Context, b *testing.B, command string, args, out any) {
	b.Helper()
	if err := g.mon.execute(ctx, command, args, out); err != nil {
		b.Fatalf("%s: %v", command, err)
	}
}

// bootRaw starts the raw guest and waits until it has filled its memory.
func bootRaw(ctx context.Context, b *testing.B, r *Runtime) *rawGuest {
	b.Helper()
	dir := b.TempDir()
	g := startRaw(ctx, b, dir, rawArgs(b, r, dir))
	b.Cleanup(func() { g.stop() })
	awaitConsole(b, filepath.Join(dir, "console.log"), "vmlet-test filled")
	return g
}

// BenchmarkRawSave measures QMP stop and migrate to a file with fsync, on a
// QEMU started by hand.
func BenchmarkRawSave(b *testing.B) {
	r := newRealRuntime(b)
	ctx := withTimeout(b, 10*time.Minute)
	g := bootRaw(ctx, b, r)
	path := filepath.Join(g.dir, "checkpoint")
	for b.Loop() {
		b.SetBytes(g.save(ctx, b, path))

		b.StopTimer()
		os.Remove(path)
		g.mustExecute(ctx, b, "cont", nil, nil)
		b.StartTimer()
	}
}

// BenchmarkRawRestore measures starting QEMU with -incoming from a file
// until the guest runs again after cont.
func BenchmarkRawRestore(b *testing.B) {
	r := newRealRuntime(b)
	ctx := withTimeout(b, 10*time.Minute)
	g := bootRaw(ctx, b, r)
	path := filepath.Join(g.dir, "checkpoint")
	b.SetBytes(g.save(ctx, b, path))
	for b.Loop() {
		restored := startRaw(ctx, b, g.dir, g.args, "-S", "-incoming", "exec:cat "+path)
		restored.awaitStatus(ctx, b, "paused")
		restored.mustExecute(ctx, b, "cont", nil, nil)

		b.StopTimer()
		restored.stop()
		b.StartTimer()
	}
}
