package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// Boot cold-boots m and returns once QMP responds and the guest runs. It
// creates each missing disk that has a size as a sparse file. A missing
// kernel, initrd, share or disk without a size fails with an error wrapping
// vmruntime.ErrMissingFile. A failed boot leaves no process behind.
func (r *Runtime) Boot(ctx context.Context, m *vmruntime.Machine) error {
	v, err := r.start(ctx, m, r.launchFor(m, r.machineType, false))
	if err != nil {
		return err
	}
	if err := r.awaitStatus(ctx, v, "running"); err != nil {
		r.abandon(v)
		return fmt.Errorf("booting %q: %w", m.Name, err)
	}
	return nil
}

func (r *Runtime) launchFor(m *vmruntime.Machine, machineType string, incoming bool) launch {
	return launch{machine: m, machineType: machineType, accel: r.accel, vsock: r.vsock, incoming: incoming}
}

// start prepares m's files, starts its QEMU and connects to QMP.
func (r *Runtime) start(ctx context.Context, m *vmruntime.Machine, l launch) (*vm, error) {
	if err := r.prepare(m); err != nil {
		return nil, err
	}
	logPath := filepath.Join(m.StateDir, qemuLogFile)
	v := &vm{name: m.Name, stateDir: m.StateDir, logStart: fileSize(logPath)}
	proc, err := startProcess(r.binary, l.args(), m.StateDir, logPath)
	if err != nil {
		return nil, err
	}
	v.proc = proc
	r.register(v)
	if err := awaitMonitor(ctx, v); err != nil {
		r.abandon(v)
		return nil, fmt.Errorf("starting qemu for %q: %w", m.Name, v.errorWithLog(err))
	}
	return v, nil
}

// prepare checks m's files and state folder and creates missing disks.
func (r *Runtime) prepare(m *vmruntime.Machine) error {
	if v := r.lookup(m.Name); v != nil && v.process().alive() {
		return fmt.Errorf("starting %q: qemu process %d is still running", m.Name, v.process().pid)
	}
	if err := checkStateDir(m.StateDir); err != nil {
		return err
	}
	if err := os.MkdirAll(m.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	for _, name := range []string{pidFile, qmpSocket, agentSocket} {
		os.Remove(filepath.Join(m.StateDir, name))
	}
	if err := checkFiles(m); err != nil {
		return err
	}
	return createDisks(m.Disks)
}

// checkFiles makes sure the kernel, initrd and shares exist, and every disk
// that has no size to create it with.
func checkFiles(m *vmruntime.Machine) error {
	paths := []string{m.Kernel}
	if m.Initrd != "" {
		paths = append(paths, m.Initrd)
	}
	for _, share := range m.Shares {
		paths = append(paths, share.Path)
	}
	for _, disk := range m.Disks {
		if disk.SizeBytes <= 0 {
			paths = append(paths, disk.Path)
		}
	}
	for _, path := range paths {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q", vmruntime.ErrMissingFile, path)
		} else if err != nil {
			return fmt.Errorf("checking %q: %w", path, err)
		}
	}
	return nil
}

// createDisks creates each missing disk that has a size as a sparse file.
func createDisks(disks []vmruntime.Disk) error {
	for _, disk := range disks {
		if disk.SizeBytes <= 0 {
			continue
		}
		if err := createSparse(disk.Path, disk.SizeBytes); err != nil {
			return err
		}
	}
	return nil
}

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating disk %q: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		os.Remove(path)
		return fmt.Errorf("sizing disk %q: %w", path, err)
	}
	return nil
}

// awaitMonitor dials the QMP socket until QEMU replies, the process exits
// or ctx ends.
func awaitMonitor(ctx context.Context, v *vm) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		_, err := v.monitor(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ticker.C:
		case <-v.process().exited():
			return fmt.Errorf("%s before QMP responded", v.process().exitReason())
		case <-ctx.Done():
			return fmt.Errorf("waiting for qmp: %w", ctx.Err())
		}
	}
}

// awaitStatus polls query-status until QEMU reports one of want.
func (r *Runtime) awaitStatus(ctx context.Context, v *vm, want ...string) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		status, err := v.status(ctx)
		if err == nil && slices.Contains(want, status) {
			return nil
		}
		if !v.process().alive() {
			return v.errorWithLog(errors.New(v.process().exitReason()))
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for status %v (last %q, %v): %w", want, status, err, ctx.Err())
		}
	}
}

// abandon kills a process that failed to start or restore and waits up to
// killTimeout for it to end.
func (r *Runtime) abandon(v *vm) {
	v.setEnding()
	proc := v.process()
	proc.signal(sigkill)
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	proc.wait(ctx)
	v.release()
}

// fileSize returns the size of path, or 0 when it cannot be read.
func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}
