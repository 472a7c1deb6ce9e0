package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/vmlet/vmlet/controller"
	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

// stressLatency gives each sim operation a duration of the order real
// hypervisors take for a small guest, scaled down so that the test stays
// short: long enough that unserialized operations overlap.
var stressLatency = sim.Latencies{
	Boot:    30 * time.Millisecond,
	Connect: 20 * time.Millisecond,
	Pause:   10 * time.Millisecond,
	Resume:  10 * time.Millisecond,
	Save:    40 * time.Millisecond,
	Restore: 40 * time.Millisecond,
	Stop:    20 * time.Millisecond,
	Kill:    5 * time.Millisecond,
}

// Bounds of the stress tests: how long the writers write, and how long
// the VMs get to settle afterwards before the test fails.
const (
	stressWriting = 3 * time.Second
	stressSettle  = 60 * time.Second
)

// stressManifest is the manifest the writers write; gen counts the writes
// to one file, so that the final file shows which write was last.
const stressManifest = `# written by writer %d
apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %s
  labels:
    gen: "%d"
spec:
  desiredState: %s
  cpus: 1
  memory: 64Mi
  kernel: vmlinuz
  agent:
    port: 5000
    readyTimeout: 5s
  stopTimeout: 5s
`

var desiredStates = []spec.DesiredState{spec.Running, spec.Suspended, spec.Stopped}

// stressDaemon is one daemon under test, run in this process on the sim
// runtime.
type stressDaemon struct {
	dir, stateDir string
	done          chan error
	cancel        context.CancelFunc
}

// stressHost is what the daemons of one test share: the host lock and
// the hazard detector's trace.
type stressHost struct {
	hostLock  string
	traceFile string
	noLock    bool
	// quiet drops the daemons' error logs, which the negative control
	// expects by the dozen.
	quiet bool
}

func newStressHost(t *testing.T) *stressHost {
	root := t.TempDir()
	return &stressHost{hostLock: filepath.Join(root, "host.lock"), traceFile: filepath.Join(root, "trace")}
}

// start runs a daemon over a new manifest folder and state folder.
func (h *stressHost) start(t *testing.T, name string) *stressDaemon {
	t.Helper()
	root := t.TempDir()
	d := &stressDaemon{
		dir:      filepath.Join(root, "manifests"),
		stateDir: filepath.Join(root, "state"),
		done:     make(chan error, 1),
	}
	must(t, os.MkdirAll(d.dir, 0o755))
	must(t, os.WriteFile(filepath.Join(d.dir, "vmlinuz"), nil, 0o644))
	opts := controller.Options{
		Dir:             d.dir,
		StateDir:        d.stateDir,
		HostLock:        h.hostLock,
		DisableHostLock: h.noLock,
		Resync:          2 * time.Second,
		NewRuntime: func(stateDir string) (vmruntime.Runtime, error) {
			return sim.New(sim.Options{StateRoot: stateDir, Latency: stressLatency, TraceFile: h.traceFile})
		},
	}
	var ctx context.Context
	log := testLogger(t, name)
	if h.quiet {
		log = logr.Discard()
	}
	ctx, d.cancel = context.WithCancel(logr.NewContext(context.Background(), log))
	go func() { d.done <- controller.Run(ctx, opts) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop shuts the daemon down once; it must return nil.
func (d *stressDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon over %q returned %v", d.dir, err)
		}
	case <-time.After(stressSettle):
		t.Errorf("daemon over %q did not stop", d.dir)
	}
}

// testLogger logs errors only, through t.Log, naming the daemon.
func testLogger(t *testing.T, name string) logr.Logger {
	return logr.New(&errorSink{t: t, name: name})
}

type errorSink struct {
	t    *testing.T
	name string
	mu   sync.Mutex
}

func (s *errorSink) Init(logr.RuntimeInfo)          {}
func (s *errorSink) Enabled(int) bool               { return false }
func (s *errorSink) Info(int, string, ...any)       {}
func (s *errorSink) WithValues(...any) logr.LogSink { return s }
func (s *errorSink) WithName(string) logr.LogSink   { return s }
func (s *errorSink) Error(err error, msg string, kv ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Logf("%s: %s: %v %v", s.name, msg, err, kv)
}

// vmFile is one manifest and what its writer last wrote into it.
type vmFile struct {
	name, path string
	gen        int
	desired    spec.DesiredState
	// want is the file's last written content without its status.
	want []byte
}

// seed writes n manifests named prefix-NN, all Running.
func seed(t *testing.T, d *stressDaemon, prefix string, n int) []*vmFile {
	t.Helper()
	var vms []*vmFile
	for i := range n {
		v := &vmFile{name: fmt.Sprintf("%s-%02d", prefix, i), desired: spec.Running}
		v.path = filepath.Join(d.dir, v.name+".yaml")
		v.want = []byte(fmt.Sprintf(stressManifest, 0, v.name, 0, v.desired))
		must(t, spec.WriteFile(v.path, v.want, 0o644))
		vms = append(vms, v)
	}
	return vms
}

// writer flips the desired state of its own VMs until the deadline, each
// time by one of its methods chosen at random, and records what it wrote.
type writer struct {
	id      int
	d       *stressDaemon
	vms     []*vmFile
	methods []func(t *testing.T, v *vmFile, state spec.DesiredState)
	rng     *rand.Rand
	tmp     string
}

func (w *writer) run(t *testing.T, until time.Time) {
	for time.Now().Before(until) {
		v := w.vms[w.rng.IntN(len(w.vms))]
		state := desiredStates[w.rng.IntN(len(desiredStates))]
		w.methods[w.rng.IntN(len(w.methods))](t, v, state)
		time.Sleep(time.Duration(5+w.rng.IntN(30)) * time.Millisecond)
	}
}

// next records a full rewrite of v and returns its content.
func (w *writer) next(v *vmFile, state spec.DesiredState) []byte {
	v.gen++
	v.desired = state
	v.want = []byte(fmt.Sprintf(stressManifest, w.id, v.name, v.gen, state))
	return v.want
}

// apply writes v through vmlet apply, as a tool would.
func (w *writer) apply(t *testing.T, v *vmFile, state spec.DesiredState) {
	input := filepath.Join(w.tmp, v.name+".yaml")
	if err := os.WriteFile(input, w.next(v, state), 0o644); err != nil {
		t.Error(err)
		return
	}
	w.vmlet(t, "apply", "-f", input)
}

// verb sets v's desired state through vmlet start, suspend or stop.
func (w *writer) verb(t *testing.T, v *vmFile, state spec.DesiredState) {
	verbs := map[spec.DesiredState]string{spec.Running: "start", spec.Suspended: "suspend", spec.Stopped: "stop"}
	want, err := spec.ReplaceDesiredState(v.want, state)
	if err != nil {
		t.Error(err)
		return
	}
	v.want, v.desired = want, state
	w.vmlet(t, verbs[state], v.name)
}

// renameOver writes v as git or an editor does: a temp file renamed over
// the manifest, status and all gone.
func (w *writer) renameOver(t *testing.T, v *vmFile, state spec.DesiredState) {
	temp := filepath.Join(w.d.dir, fmt.Sprintf(".%s.swp", v.name))
	if err := os.WriteFile(temp, w.next(v, state), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(temp, v.path); err != nil {
		t.Error(err)
	}
}

// inPlace rewrites v in place, truncating it first, as some editors do.
func (w *writer) inPlace(t *testing.T, v *vmFile, state spec.DesiredState) {
	if err := os.WriteFile(v.path, w.next(v, state), 0o644); err != nil {
		t.Error(err)
	}
}

func (w *writer) vmlet(t *testing.T, args ...string) {
	args = append(args, "--dir", w.d.dir, "--state-dir", w.d.stateDir)
	if code := execute(args); code != 0 {
		t.Errorf("vmlet %q exited %d", args, code)
	}
}

// flip runs writers over vms until the writing period ends: writer i
// owns the VMs whose index is i modulo the number of writers, so that
// each file's last write is well defined.
func flip(t *testing.T, d *stressDaemon, vms []*vmFile, writers int, inPlace bool) {
	t.Helper()
	until := time.Now().Add(stressWriting)
	var wg sync.WaitGroup
	for i := range writers {
		w := &writer{id: i + 1, d: d, rng: rand.New(rand.NewPCG(uint64(i), 42)), tmp: t.TempDir()}
		must(t, os.WriteFile(filepath.Join(w.tmp, "vmlinuz"), nil, 0o644))
		w.methods = []func(*testing.T, *vmFile, spec.DesiredState){w.apply, w.verb, w.renameOver}
		if inPlace {
			w.methods = append(w.methods, w.inPlace)
		}
		for j := i; j < len(vms); j += writers {
			w.vms = append(w.vms, vms[j])
		}
		wg.Go(func() { w.run(t, until) })
	}
	wg.Wait()
}

// phaseFor is the phase a VM settles in for each desired state.
var phaseFor = map[spec.DesiredState]spec.Phase{
	spec.Running:   spec.PhaseRunning,
	spec.Suspended: spec.PhaseSuspended,
	spec.Stopped:   spec.PhaseStopped,
}

// converged reports whether the VM in v's file is in the phase its file
// asks for, with a status written for the file's current spec. It returns
// a description of the VM's state otherwise.
func converged(v *vmFile) (bool, string) {
	m, err := spec.Load(v.path)
	if err != nil {
		return false, err.Error()
	}
	if m.VM == nil || m.Err != nil {
		return false, fmt.Sprintf("invalid manifest: %v", m.Err)
	}
	if m.Status == nil {
		return false, "no status"
	}
	want := phaseFor[m.VM.Spec.DesiredState]
	if m.Status.ObservedSpecHash != m.VM.SpecHash() {
		return false, fmt.Sprintf("status for spec %s, file has %s", m.Status.ObservedSpecHash, m.VM.SpecHash())
	}
	if m.Status.Phase != want {
		return false, fmt.Sprintf("phase %s, want %s", m.Status.Phase, want)
	}
	return true, ""
}

// waitConverged waits until every VM converged, and fails the test with
// the state of those that did not when stressSettle passes.
func waitConverged(t *testing.T, vms []*vmFile) {
	t.Helper()
	deadline := time.Now().Add(stressSettle)
	for {
		var pending []string
		for _, v := range vms {
			if ok, why := converged(v); !ok {
				pending = append(pending, v.name+": "+why)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d VMs did not converge:\n%s", len(pending), strings.Join(pending, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNoEditLost checks that each file outside its status is exactly what
// its writer wrote last, and that its desired state is the last one set.
func checkNoEditLost(t *testing.T, vms []*vmFile) {
	t.Helper()
	for _, v := range vms {
		data, err := os.ReadFile(v.path)
		if err != nil {
			t.Error(err)
			continue
		}
		got, err := spec.ReplaceStatus(data, nil)
		if err != nil {
			t.Errorf("%s: removing status: %v", v.name, err)
			continue
		}
		if !bytes.Equal(got, v.want) {
			t.Errorf("%s: file without status =\n%s\nwant the last write:\n%s", v.name, got, v.want)
		}
	}
}

// checkStatusesParse checks that every file, status included, parses and
// validates.
func checkStatusesParse(t *testing.T, vms []*vmFile) {
	t.Helper()
	for _, v := range vms {
		m, err := spec.Load(v.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if m.Err != nil || m.Status == nil {
			t.Errorf("%s: manifest error %v, status %v", v.name, m.Err, m.Status)
		}
		for _, w := range m.Warnings {
			t.Errorf("%s: warning about status: %v", v.name, w)
		}
	}
}

// checkRuntime checks, after the daemon stopped, that the sim runtime
// holds each VM in the state its manifest requests.
func checkRuntime(t *testing.T, d *stressDaemon, vms []*vmFile) {
	t.Helper()
	rt, err := sim.New(sim.Options{StateRoot: d.stateDir, TraceFile: filepath.Join(t.TempDir(), "trace")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	want := map[spec.DesiredState]vmruntime.State{
		spec.Running: vmruntime.StateRunning, spec.Suspended: vmruntime.StateStopped, spec.Stopped: vmruntime.StateStopped,
	}
	for _, v := range vms {
		obs, err := rt.Observe(t.Context(), v.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if obs.State != want[v.desired] {
			t.Errorf("%s: runtime state %s, want %s for desired %s", v.name, obs.State, want[v.desired], v.desired)
		}
	}
}

func overlaps(t *testing.T, traceFile string) []sim.Overlap {
	t.Helper()
	found, err := sim.Overlaps(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func reportOverlaps(t *testing.T, found []sim.Overlap) {
	t.Helper()
	for i, o := range found {
		if i == 5 {
			t.Errorf("... and %d more", len(found)-5)
			return
		}
		t.Errorf("overlap: %s", o)
	}
}

func TestStressOneDaemon(t *testing.T) {
	host := newStressHost(t)
	d := host.start(t, "daemon")
	vms := seed(t, d, "vm", 20)
	waitConverged(t, vms)

	flip(t, d, vms, 3, false)
	waitConverged(t, vms)
	d.stop(t)

	checkNoEditLost(t, vms)
	checkStatusesParse(t, vms)
	checkRuntime(t, d, vms)
	if found := overlaps(t, host.traceFile); len(found) > 0 {
		t.Errorf("hazard detector saw %d overlaps, want 0", len(found))
		reportOverlaps(t, found)
	}
}

func TestStressInPlaceWriter(t *testing.T) {
	host := newStressHost(t)
	d := host.start(t, "daemon")
	vms := seed(t, d, "vm", 20)
	waitConverged(t, vms)

	// An in-place rewrite racing a status write can lose its edit, as the
	// write-back documents, so only convergence to whatever each file says
	// at the end is asserted.
	flip(t, d, vms, 3, true)
	waitConverged(t, vms)
	d.stop(t)

	checkStatusesParse(t, vms)
	if found := overlaps(t, host.traceFile); len(found) > 0 {
		t.Errorf("hazard detector saw %d overlaps, want 0", len(found))
		reportOverlaps(t, found)
	}
}

// runTwoDaemons runs two daemons, each with its own folders and ten VMs,
// on one host, flips desired states in both, and returns the overlaps the
// shared hazard detector saw.
func runTwoDaemons(t *testing.T, host *stressHost, settle bool) []sim.Overlap {
	t.Helper()
	a, b := host.start(t, "daemon a"), host.start(t, "daemon b")
	vmsA, vmsB := seed(t, a, "a", 10), seed(t, b, "b", 10)
	var wg sync.WaitGroup
	wg.Go(func() { flip(t, a, vmsA, 2, false) })
	wg.Go(func() { flip(t, b, vmsB, 2, false) })
	wg.Wait()
	if settle {
		waitConverged(t, append(vmsA, vmsB...))
	}
	a.stop(t)
	b.stop(t)
	return overlaps(t, host.traceFile)
}

func TestStressTwoDaemonsShareHostLock(t *testing.T) {
	host := newStressHost(t)
	if found := runTwoDaemons(t, host, true); len(found) > 0 {
		t.Errorf("hazard detector saw %d overlaps across two daemons sharing the host lock, want 0", len(found))
		reportOverlaps(t, found)
	}
}

// TestStressTwoDaemonsWithoutHostLock is the negative control of the
// stress tests: without the host lock the two daemons' transitions do
// overlap, so the detector the other tests rely on can see a fault.
func TestStressTwoDaemonsWithoutHostLock(t *testing.T) {
	host := newStressHost(t)
	host.noLock = true
	host.quiet = true
	found := runTwoDaemons(t, host, false)
	if len(found) == 0 {
		t.Fatal("hazard detector saw no overlap between two daemons without the host lock; it cannot detect the fault")
	}
	t.Logf("without the host lock the detector saw %d overlaps, the first: %s", len(found), found[0])
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
