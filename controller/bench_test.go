package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

// benchVMs is the number of manifests of the folder benchmarks; set
// VMLET_BENCH_VMS to change it.
func benchVMs(b *testing.B) int {
	n := 10_000
	if v := os.Getenv("VMLET_BENCH_VMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("VMLET_BENCH_VMS=%q: %v", v, err)
		}
	}
	return n
}

// benchFolder is a manifest folder and a state folder for a benchmark.
type benchFolder struct {
	dir, stateDir, hostLock string
	n                       int
}

func newBenchFolder(b *testing.B, n int) *benchFolder {
	return newBenchFolderIn(b, b.TempDir(), n)
}

func newBenchFolderIn(b *testing.B, root string, n int) *benchFolder {
	f := &benchFolder{
		dir:      filepath.Join(root, "manifests"),
		stateDir: filepath.Join(root, "state"),
		hostLock: filepath.Join(root, "host.lock"),
		n:        n,
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "vmlinuz"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("vm%05d", i)
		data := fmt.Appendf(nil, testManifest, name, spec.Running)
		if err := os.WriteFile(filepath.Join(f.dir, name+".yaml"), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func (f *benchFolder) options() Options {
	return Options{
		Dir: f.dir, StateDir: f.stateDir, HostLock: f.hostLock,
		NewRuntime: func(stateDir string) (vmruntime.Runtime, error) {
			return sim.New(sim.Options{StateRoot: stateDir})
		},
	}
}

// newBenchDaemon builds the daemon's parts without starting its
// goroutines, so that a benchmark can run the worker to an empty queue.
func newBenchDaemon(b *testing.B, opts Options) *daemon {
	b.Helper()
	opts, err := opts.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	if err := prepareFolders(opts); err != nil {
		b.Fatal(err)
	}
	d, err := newDaemon(opts)
	if err != nil {
		b.Fatal(err)
	}
	d.controller = NewController(d.catalog, d.reconciler, opts.Clock, logr.Discard())
	return d
}

// syncAll adopts, lists and reconciles every key once, as a daemon does at
// its start, and returns when the queue is empty.
func (d *daemon) syncAll(b *testing.B) {
	ctx := context.Background()
	start := time.Now()
	if err := d.start(ctx); err != nil {
		b.Fatal(err)
	}
	listed := time.Now()
	for d.controller.Len() > 0 {
		d.controller.processNextWorkItem(ctx, ctx)
	}
	b.ReportMetric(listed.Sub(start).Seconds(), "adopt+list-s")
	b.ReportMetric(time.Since(listed).Seconds(), "reconcile-s")
}

var (
	convergedOnce   sync.Once
	convergedFolder *benchFolder
	// benchFixtures are folders that outlive one benchmark; TestMain
	// removes them.
	benchFixtures []string
)

// converged returns a folder of benchVMs manifests whose VMs all run and
// whose statuses are written, shared by the benchmarks of one run.
func converged(b *testing.B) *benchFolder {
	convergedOnce.Do(func() {
		root, err := os.MkdirTemp("", "vmlet-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchFixtures = append(benchFixtures, root)
		f := newBenchFolderIn(b, root, benchVMs(b))
		newBenchDaemon(b, f.options()).syncAll(b)
		convergedFolder = f
	})
	if convergedFolder == nil {
		b.Fatal("building the converged folder failed")
	}
	return convergedFolder
}

// BenchmarkColdSync measures a daemon's first sync of benchVMs new
// manifests (boot each sim VM, write its status into the manifest) in
// status writes per second. Beside it, it reports the bare durable write
// rate of spec.WriteFile for files of the same size, in the same run.
func BenchmarkColdSync(b *testing.B) {
	n := benchVMs(b)
	for b.Loop() {
		b.StopTimer()
		bare := bareWriteRate(b, n)
		f := newBenchFolder(b, n)
		d := newBenchDaemon(b, f.options())
		b.StartTimer()

		start := time.Now()
		d.syncAll(b)
		rate := float64(n) / time.Since(start).Seconds()

		b.ReportMetric(rate, "status-writes/s")
		b.ReportMetric(bare, "bare-writes/s")
		b.ReportMetric(100*rate/bare, "%-of-bare")
	}
}

// bareWriteRate writes n manifests of status size with spec.WriteFile
// and returns the writes per second.
func bareWriteRate(b *testing.B, n int) float64 {
	dir := b.TempDir()
	data := statusSizedManifest(b)
	start := time.Now()
	for i := range n {
		if err := spec.WriteFile(filepath.Join(dir, fmt.Sprintf("vm%05d.yaml", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// statusSizedManifest returns a manifest with the status a running sim VM
// gets, so that the bare writes write as many bytes as the daemon does.
func statusSizedManifest(b *testing.B) []byte {
	f := newBenchFolder(b, 1)
	newBenchDaemon(b, f.options()).syncAll(b)
	data, err := os.ReadFile(filepath.Join(f.dir, "vm00000.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkRestart measures a daemon restart over benchVMs converged
// manifests: adopt the running VMs, list and parse the folder, observe
// each VM and find nothing to write. It reports the peak heap in use.
func BenchmarkRestart(b *testing.B) {
	f := converged(b)
	before := newestWrite(b, f)
	for b.Loop() {
		b.StopTimer()
		// A daemon restarts long after its manifests were written: flush
		// the fixture's dirty pages so that their writeback does not slow
		// the reads measured here.
		syscall.Sync()
		runtime.GC()
		d := newBenchDaemon(b, f.options())
		stopSampling := samplePeakHeap(b)
		b.StartTimer()

		d.syncAll(b)

		b.StopTimer()
		b.ReportMetric(stopSampling()/(1<<20), "peak-heap-MiB")
		b.StartTimer()
	}
	if after := newestWrite(b, f); after.After(before) {
		b.Errorf("a restart over converged manifests wrote a manifest at %s", after)
	}
}

// samplePeakHeap samples the heap in use every millisecond until the
// returned function is called, which returns the maximum seen in bytes.
// It reads runtime/metrics, which, unlike runtime.ReadMemStats, does not
// stop the world.
func samplePeakHeap(b *testing.B) func() float64 {
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var maxInUse uint64
		for {
			metrics.Read(sample)
			maxInUse = max(maxInUse, sample[0].Value.Uint64())
			select {
			case <-done:
				peak <- maxInUse
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() float64 {
		close(done)
		return float64(<-peak)
	}
}

// newestWrite returns the latest modification time of the manifests of f.
func newestWrite(b *testing.B, f *benchFolder) time.Time {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		b.Fatal(err)
	}
	var newest time.Time
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
	}
	return newest
}

// callRecorder wraps a runtime and reports the first lifecycle call
// after each arm, for measuring how long an edit takes to reach the
// runtime.
type callRecorder struct {
	vmruntime.Runtime
	mu    sync.Mutex
	armed bool
	calls chan time.Time
}

func (r *callRecorder) arm() {
	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
}

func (r *callRecorder) record() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed {
		r.armed = false
		r.calls <- time.Now()
	}
}

func (r *callRecorder) Boot(ctx context.Context, m *vmruntime.Machine) error {
	r.record()
	return r.Runtime.Boot(ctx, m)
}

func (r *callRecorder) Stop(ctx context.Context, m *vmruntime.Machine) error {
	r.record()
	return r.Runtime.Stop(ctx, m)
}

// BenchmarkEditToTransition measures the time from a manifest written by
// rename to the start of the transition it requests (the runtime's Boot
// or Stop call), over 300 edits alternating Stopped and Running on 20 VMs
// of a running daemon. The default debounce of 100 ms is part of it.
func BenchmarkEditToTransition(b *testing.B) {
	const vms, edits = 20, 300
	for b.Loop() {
		b.StopTimer()
		f := newBenchFolder(b, vms)
		rec := &callRecorder{calls: make(chan time.Time, 1)}
		opts := f.options()
		opts.NewRuntime = func(stateDir string) (vmruntime.Runtime, error) {
			rt, err := sim.New(sim.Options{StateRoot: stateDir})
			rec.Runtime = rt
			return rec, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, opts) }()
		waitAllRunning(b, f)
		b.StartTimer()

		latencies := editLatencies(b, f, rec, edits)

		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
		b.StartTimer()
	}
}

func editLatencies(b *testing.B, f *benchFolder, rec *callRecorder, edits int) []time.Duration {
	latencies := make([]time.Duration, 0, edits)
	for i := range edits {
		name := fmt.Sprintf("vm%05d", i%f.n)
		desired := spec.Stopped
		if (i/f.n)%2 == 1 {
			desired = spec.Running
		}
		path := filepath.Join(f.dir, name+".yaml")
		data := fmt.Appendf(nil, testManifest, name, desired)
		rec.arm()
		start := time.Now()
		if err := spec.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-rec.calls:
			latencies = append(latencies, at.Sub(start))
		case <-time.After(waitLimit):
			b.Fatalf("edit %d of %s never reached the runtime", i, name)
		}
	}
	return latencies
}

// waitAllRunning waits until every manifest of f reports phase Running.
func waitAllRunning(b *testing.B, f *benchFolder) {
	deadline := time.Now().Add(10 * waitLimit)
	for i := 0; i < f.n; {
		m, err := spec.Load(filepath.Join(f.dir, fmt.Sprintf("vm%05d.yaml", i)))
		if err == nil && m.Status != nil && m.Status.Phase == spec.PhaseRunning {
			i++
			continue
		}
		if time.Now().After(deadline) {
			b.Fatalf("vm%05d never ran", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkIdleCPU runs a daemon over benchVMs converged manifests for a
// minute (VMLET_BENCH_IDLE changes it) after a warm-up, and reports the
// CPU time the process used, as a share of one core.
func BenchmarkIdleCPU(b *testing.B) {
	idle := time.Minute
	if v := os.Getenv("VMLET_BENCH_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	f := converged(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, f.options()) }()
		time.Sleep(5 * time.Second) // the start-up sync is not idle time

		before := cpuTime(b)
		time.Sleep(idle)
		used := cpuTime(b) - before

		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(used.Seconds(), "cpu-s")
		b.ReportMetric(100*used.Seconds()/idle.Seconds(), "%-of-core")
	}
}

// cpuTime returns the user and system CPU time of this process.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
