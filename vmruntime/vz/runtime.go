package vz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// AgentClient is a guest agent client over a byte stream, as
// github.com/vmlet/vmlet/vmruntime/agent provides it.
type AgentClient interface {
	vmruntime.Agent
	// Handshake runs the agent's boot handshake and sends it cfg.
	Handshake(ctx context.Context, cfg vmruntime.GuestConfig) (vmruntime.Hello, error)
}

// Options configure a Runtime.
type Options struct {
	// Executable is the vmlet binary that runs the helper; the default is
	// the running executable.
	Executable string
	// Args come before the helper's own flags; the default is "vmm".
	Args []string
	// Env is added to the helper's environment.
	Env []string
	// NewAgent wraps a relayed agent connection in a client. Connect
	// returns an error when it is nil.
	NewAgent func(io.ReadWriteCloser) AgentClient
	// AgentAttemptTimeout bounds one boot handshake once the vsock
	// connection is up; a half-open connection after a restore is dropped
	// and dialed again when it passes. The default is 5 s.
	AgentAttemptTimeout time.Duration
}

// Runtime is the vz backend. It implements vmruntime.Runtime,
// vmruntime.Checkpointer and vmruntime.Adopter. Its methods are safe for
// concurrent use.
type Runtime struct {
	opts Options
	host host

	mu  sync.Mutex
	vms map[string]*vm
}

var (
	_ vmruntime.Runtime      = (*Runtime)(nil)
	_ vmruntime.Checkpointer = (*Runtime)(nil)
	_ vmruntime.Adopter      = (*Runtime)(nil)
)

// New returns a Runtime whose VMs keep their state under stateRoot/vms. It
// returns an error when stateRoot is too deep for the helpers' unix
// sockets, which are limited to 104 bytes on macOS and 108 on Linux.
func New(stateRoot string, opts Options) (*Runtime, error) {
	if err := checkSocketRoom(stateRoot); err != nil {
		return nil, err
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the vmlet executable: %w", err)
		}
		opts.Executable = exe
	}
	if opts.Args == nil {
		opts.Args = []string{"vmm"}
	}
	if opts.AgentAttemptTimeout <= 0 {
		opts.AgentAttemptTimeout = 5 * time.Second
	}
	return &Runtime{opts: opts, host: thisHost(), vms: make(map[string]*vm)}, nil
}

// Name returns "vz".
func (r *Runtime) Name() string { return "vz" }

// Boot starts a helper that cold-boots m and returns once the machine
// runs. A missing kernel, initrd, share folder or disk without a size wraps
// vmruntime.ErrMissingFile; a missing disk with a size is created sparse.
func (r *Runtime) Boot(ctx context.Context, m *vmruntime.Machine) error {
	cm, err := prepareMachine(m)
	if err != nil {
		return err
	}
	_, err = r.start(ctx, cm, "")
	return err
}

// start spawns a helper for m and waits until its socket replies.
func (r *Runtime) start(ctx context.Context, m *vmruntime.Machine, restorePath string) (*vm, error) {
	if old := r.lookup(m.Name); old != nil && !old.exited() {
		return nil, fmt.Errorf("vm %q already has a helper, pid %d", m.Name, old.pid)
	}
	// A helper this runtime has not adopted still owns the machine's disks.
	if other, _, ok := probe(ctx, m.Name, m.StateDir); ok {
		return nil, fmt.Errorf("vm %q already runs in helper pid %d, which this daemon has not adopted", m.Name, other.pid)
	}
	v, err := r.spawnHelper(m, restorePath)
	if err != nil {
		return nil, err
	}
	resp, err := v.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	v.notSuspendable = resp.NotSuspendable
	r.track(v)
	return v, nil
}

// prepareMachine checks m's files, creates missing disks that have a size
// and returns a copy of m with every path canonical and the kernel
// uncompressed.
func prepareMachine(m *vmruntime.Machine) (*vmruntime.Machine, error) {
	if err := checkSocketPath(m.Name, m.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state folder: %w", err)
	}
	if err := createDisks(m.Disks); err != nil {
		return nil, err
	}
	if err := checkFiles(machinePaths(m)...); err != nil {
		return nil, fmt.Errorf("booting %q: %w", m.Name, err)
	}
	cm, err := canonicalMachine(m)
	if err != nil {
		return nil, err
	}
	if cm.Kernel, err = uncompressedKernel(cm.Kernel, cm.StateDir); err != nil {
		return nil, err
	}
	return cm, nil
}

// machinePaths returns every host path m needs.
func machinePaths(m *vmruntime.Machine) []string {
	paths := []string{m.Kernel, m.Initrd}
	for _, d := range m.Disks {
		paths = append(paths, d.Path)
	}
	for _, s := range m.Shares {
		paths = append(paths, s.Path)
	}
	return paths
}

// createDisks creates each missing disk that has a size as a sparse file;
// the guest agent formats it.
func createDisks(disks []vmruntime.Disk) error {
	for _, d := range disks {
		if d.SizeBytes <= 0 {
			continue
		}
		f, err := os.OpenFile(d.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if os.IsExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating disk %q: %w", d.Path, err)
		}
		err = f.Truncate(d.SizeBytes)
		f.Close()
		if err != nil {
			return fmt.Errorf("sizing disk %q: %w", d.Path, err)
		}
	}
	return nil
}

// canonicalMachine returns a copy of m whose paths have their symlinks
// resolved, so that the configuration restored matches the one saved.
func canonicalMachine(m *vmruntime.Machine) (*vmruntime.Machine, error) {
	c := *m
	c.Disks = append([]vmruntime.Disk(nil), m.Disks...)
	c.Shares = append([]vmruntime.Share(nil), m.Shares...)
	var err error
	fields := []*string{&c.Kernel, &c.StateDir}
	if c.Initrd != "" {
		fields = append(fields, &c.Initrd)
	}
	for i := range c.Disks {
		fields = append(fields, &c.Disks[i].Path)
	}
	for i := range c.Shares {
		fields = append(fields, &c.Shares[i].Path)
	}
	for _, f := range fields {
		if *f, err = canonicalPath(*f); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// writeMachine writes m where the helper reads it.
func writeMachine(m *vmruntime.Machine) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding machine %q: %w", m.Name, err)
	}
	return writeFileAtomic(filepath.Join(m.StateDir, configFile), b, 0o600)
}

func (r *Runtime) lookup(name string) *vm {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vms[name]
}

func (r *Runtime) track(v *vm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vms[v.name] = v
}

// forget drops v unless another helper replaced it meanwhile.
func (r *Runtime) forget(v *vm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vms[v.name] == v {
		delete(r.vms, v.name)
	}
}

// running returns name's helper, or an error wrapping
// vmruntime.ErrNotRunning.
func (r *Runtime) running(name string) (*vm, error) {
	v := r.lookup(name)
	if v == nil || v.exited() {
		return nil, fmt.Errorf("%w: %q", vmruntime.ErrNotRunning, name)
	}
	return v, nil
}
