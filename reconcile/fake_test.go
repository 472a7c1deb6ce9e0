package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// fakeLocker is a host lock that records whether it is held.
type fakeLocker struct {
	mu    sync.Mutex
	held  bool
	locks int
}

func (l *fakeLocker) Lock(ctx context.Context) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		return nil, errors.New("fake host lock taken twice")
	}
	l.held = true
	l.locks++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.held = false
	}, nil
}

func (l *fakeLocker) isHeld() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// fakeVM is one VM of the fake runtime.
type fakeVM struct {
	state vmruntime.State
	exit  string
}

// fakeRuntime is a vmruntime.Runtime, Checkpointer and Adopter that keeps
// VMs in memory, records lifecycle and agent calls, and fails or hangs
// the calls a test selects.
type fakeRuntime struct {
	lock *fakeLocker

	mu       sync.Mutex
	vms      map[string]*fakeVM
	calls    []string
	unlocked []string                 // lifecycle calls made without the host lock
	failures map[string]error         // "Save web": the next such call fails
	hangs    map[string]bool          // "Connect web": the next such call blocks until ctx ends
	gates    map[string]chan struct{} // "Boot web": the next such call waits for the channel to close

	notSuspendable error
	incompatible   error
	adopted        []string
}

var (
	_ vmruntime.Runtime      = (*fakeRuntime)(nil)
	_ vmruntime.Checkpointer = (*fakeRuntime)(nil)
	_ vmruntime.Adopter      = (*fakeRuntime)(nil)
)

func newFakeRuntime(lock *fakeLocker) *fakeRuntime {
	return &fakeRuntime{
		lock:     lock,
		vms:      make(map[string]*fakeVM),
		failures: make(map[string]error),
		hangs:    make(map[string]bool),
		gates:    make(map[string]chan struct{}),
	}
}

// call records op on name and returns the failure injected for it.
func (f *fakeRuntime) call(ctx context.Context, op, name string, lifecycle bool) error {
	f.mu.Lock()
	key := op + " " + name
	f.calls = append(f.calls, key)
	if lifecycle && f.lock != nil && !f.lock.isHeld() {
		f.unlocked = append(f.unlocked, key)
	}
	err := f.failures[key]
	delete(f.failures, key)
	hang := f.hangs[key]
	delete(f.hangs, key)
	gate := f.gates[key]
	delete(f.gates, key)
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeRuntime) failNext(op, name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[op+" "+name] = err
}

func (f *fakeRuntime) hangNext(op, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hangs[op+" "+name] = true
}

// gateNext makes the next op on name wait until the returned channel is
// closed.
func (f *fakeRuntime) gateNext(op, name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	gate := make(chan struct{})
	f.gates[op+" "+name] = gate
	return gate
}

// callsSoFar returns the calls recorded so far.
func (f *fakeRuntime) callsSoFar() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// takeCalls returns the calls recorded so far and clears them.
func (f *fakeRuntime) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls := f.calls
	f.calls = nil
	return calls
}

func (f *fakeRuntime) vm(name string) *fakeVM {
	v := f.vms[name]
	if v == nil {
		v = &fakeVM{state: vmruntime.StateStopped}
		f.vms[name] = v
	}
	return v
}

// set puts a VM in a state behind the reconciler's back.
func (f *fakeRuntime) set(name string, state vmruntime.State, exit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.vm(name) = fakeVM{state: state, exit: exit}
}

func (f *fakeRuntime) stateOf(name string) vmruntime.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vm(name).state
}

// move changes a VM's state when it is in from.
func (f *fakeRuntime) move(name string, from []vmruntime.State, to vmruntime.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vm(name)
	if !slices.Contains(from, v.state) {
		return fmt.Errorf("fake: %q is %s", name, v.state)
	}
	*v = fakeVM{state: to}
	return nil
}

func (f *fakeRuntime) Name() string { return "fake" }

func (f *fakeRuntime) Boot(ctx context.Context, m *vmruntime.Machine) error {
	if err := f.call(ctx, "Boot", m.Name, true); err != nil {
		return err
	}
	return f.move(m.Name, []vmruntime.State{vmruntime.StateStopped}, vmruntime.StateRunning)
}

func (f *fakeRuntime) Connect(ctx context.Context, m *vmruntime.Machine) (vmruntime.Hello, error) {
	if err := f.call(ctx, "Connect", m.Name, true); err != nil {
		return vmruntime.Hello{}, err
	}
	return vmruntime.Hello{Version: "fake", BootID: "b"}, nil
}

func (f *fakeRuntime) Agent(name string) (vmruntime.Agent, error) {
	return &fakeAgent{rt: f, name: name}, nil
}

func (f *fakeRuntime) Pause(ctx context.Context, name string) error {
	if err := f.call(ctx, "Pause", name, true); err != nil {
		return err
	}
	return f.move(name, []vmruntime.State{vmruntime.StateRunning}, vmruntime.StatePaused)
}

func (f *fakeRuntime) Resume(ctx context.Context, name string) error {
	if err := f.call(ctx, "Resume", name, true); err != nil {
		return err
	}
	return f.move(name, []vmruntime.State{vmruntime.StatePaused}, vmruntime.StateRunning)
}

func (f *fakeRuntime) Stop(ctx context.Context, m *vmruntime.Machine) error {
	if err := f.call(ctx, "Stop", m.Name, true); err != nil {
		return err
	}
	f.set(m.Name, vmruntime.StateStopped, "")
	return nil
}

func (f *fakeRuntime) Kill(ctx context.Context, name string) error {
	if err := f.call(ctx, "Kill", name, true); err != nil {
		return err
	}
	f.set(name, vmruntime.StateStopped, "")
	return nil
}

func (f *fakeRuntime) Observe(_ context.Context, name string) (vmruntime.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vm(name)
	return vmruntime.Observation{State: v.state, Exit: v.exit}, nil
}

func (f *fakeRuntime) Suspendable(*vmruntime.Machine) error { return f.notSuspendable }

func (f *fakeRuntime) Save(ctx context.Context, m *vmruntime.Machine, path string) (vmruntime.CheckpointInfo, error) {
	if err := f.call(ctx, "Save", m.Name, true); err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	if f.stateOf(m.Name) != vmruntime.StatePaused {
		return vmruntime.CheckpointInfo{}, errors.New("fake: save from a VM that is not paused")
	}
	data := []byte("memory of " + m.Name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	return vmruntime.CheckpointInfo{Bytes: int64(len(data)), Runtime: "fake 1"}, nil
}

func (f *fakeRuntime) CanRestore(vmruntime.CheckpointInfo) error { return f.incompatible }

func (f *fakeRuntime) Restore(ctx context.Context, m *vmruntime.Machine, path string, _ vmruntime.CheckpointInfo) error {
	if err := f.call(ctx, "Restore", m.Name, true); err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return f.move(m.Name, []vmruntime.State{vmruntime.StateStopped}, vmruntime.StatePaused)
}

func (f *fakeRuntime) Adopt(context.Context, string) ([]string, error) {
	return f.adopted, nil
}

// fakeAgent records agent verbs through its runtime.
type fakeAgent struct {
	rt   *fakeRuntime
	name string
}

func (a *fakeAgent) Ping(ctx context.Context) error { return a.rt.call(ctx, "Ping", a.name, false) }
func (a *fakeAgent) Quiesce(ctx context.Context) error {
	return a.rt.call(ctx, "Quiesce", a.name, true)
}
func (a *fakeAgent) Thaw(ctx context.Context) error { return a.rt.call(ctx, "Thaw", a.name, false) }
func (a *fakeAgent) Shutdown(ctx context.Context) error {
	return a.rt.call(ctx, "Shutdown", a.name, false)
}

func (a *fakeAgent) Exec(ctx context.Context, argv []string, _ []byte) (vmruntime.ExecResult, error) {
	return vmruntime.ExecResult{}, a.rt.call(ctx, "Exec", a.name, false)
}

// harness is a manifest folder, a state folder, a fake runtime, a fake
// clock and a Reconciler over them.
type harness struct {
	t     *testing.T
	dir   string
	state string
	lock  *fakeLocker
	rt    *fakeRuntime
	clock *clocktesting.FakeClock
	cat   *Catalog
	r     *Reconciler
	mode  StatusMode
	// runtime, when set, replaces the fake runtime rt.
	runtime vmruntime.Runtime
}

var testEpoch = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T) *harness {
	t.Helper()
	lock := &fakeLocker{}
	h := &harness{
		t:     t,
		dir:   t.TempDir(),
		state: t.TempDir(),
		lock:  lock,
		rt:    newFakeRuntime(lock),
		clock: clocktesting.NewFakeClock(testEpoch),
	}
	if err := os.WriteFile(filepath.Join(h.dir, "vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.restart()
	t.Cleanup(h.checkLocked)
	return h
}

// restart replaces the catalog and the Reconciler with new ones over the
// same folders and runtime, as a restarted daemon has.
func (h *harness) restart() {
	h.t.Helper()
	h.cat = NewCatalog(h.dir)
	var rt vmruntime.Runtime = h.rt
	if h.runtime != nil {
		rt = h.runtime
	}
	r, err := New(Config{
		Runtime: rt, Catalog: h.cat, StateDir: h.state, HostLock: h.lock,
		Clock: h.clock, StatusMode: h.mode, SaveTimeout: time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.r = r
	if _, err := h.cat.Relist(); err != nil {
		h.t.Fatal(err)
	}
}

// checkLocked fails the test when a lifecycle call ran without the lock.
func (h *harness) checkLocked() {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	if len(h.rt.unlocked) > 0 {
		h.t.Errorf("lifecycle calls without the host lock: %v", h.rt.unlocked)
	}
}

// manifest is a manifest's text for tests.
type manifest struct {
	name    string
	desired spec.DesiredState
	cpus    int
	disk    bool   // a disk, disk.img in the manifest folder
	noAgent bool   // no agent section
	ready   string // agent.readyTimeout; default 200ms, short for the tests of a hung agent
	extra   string // appended to the spec
}

func (m manifest) text() string {
	cpus := max(m.cpus, 1)
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: vmlet.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: %s\n", m.name)
	fmt.Fprintf(&b, "spec:\n  desiredState: %s\n  cpus: %d\n  memory: 128Mi\n  kernel: vmlinuz\n", m.desired, cpus)
	if m.disk {
		b.WriteString("  disks:\n    - path: disk.img\n")
	}
	if !m.noAgent {
		ready := m.ready
		if ready == "" {
			ready = "200ms"
		}
		fmt.Fprintf(&b, "  agent:\n    port: 5000\n    readyTimeout: %s\n", ready)
	}
	b.WriteString(m.extra)
	return b.String()
}

// write writes the manifest into file (default <name>.yaml), keeping the
// status the file has, and tells the catalog.
func (h *harness) write(m manifest, file ...string) string {
	h.t.Helper()
	path := filepath.Join(h.dir, m.name+".yaml")
	if len(file) > 0 {
		path = filepath.Join(h.dir, file[0])
	}
	data := []byte(m.text())
	if old, err := os.ReadFile(path); err == nil {
		if st := spec.Parse(path, old).Status; st != nil {
			if data, err = spec.ReplaceStatus(data, st); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	if m.disk {
		h.touchDisk(0)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.cat.Update(path)
	return path
}

// touchDisk creates or grows disk.img by n bytes.
func (h *harness) touchDisk(n int) {
	h.t.Helper()
	f, err := os.OpenFile(filepath.Join(h.dir, "disk.img"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) reconcile(key string) (Result, error) {
	h.t.Helper()
	return h.r.Reconcile(h.t.Context(), key)
}

// mustReconcile reconciles key and fails the test on an error.
func (h *harness) mustReconcile(key string) Result {
	h.t.Helper()
	res, err := h.reconcile(key)
	if err != nil {
		h.t.Fatalf("reconcile %q: %v", key, err)
	}
	return res
}

// status returns the status in the manifest at path.
func (h *harness) status(path string) *spec.Status {
	h.t.Helper()
	m, err := spec.Load(path)
	if err != nil {
		h.t.Fatal(err)
	}
	if m.Status == nil {
		h.t.Fatalf("%s has no status", path)
	}
	return m.Status
}

func (h *harness) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(h.state, rel))
	return err == nil
}

func (h *harness) trashEntries() []string {
	h.t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.state, "trash"))
	if err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// condition returns "Status/Reason" of the condition typ in st.
func condition(st *spec.Status, typ string) string {
	c := findCondition(st, typ)
	if c == nil {
		return "absent"
	}
	return string(c.Status) + "/" + c.Reason
}
