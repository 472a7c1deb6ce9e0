package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// maxBandwidth lifts QEMU's migration bandwidth cap, 128 MiB/s by default,
// which would otherwise bound the speed of writing a checkpoint. The value
// is in bytes per second.
const maxBandwidth = 1 << 40

// migrationPollInterval is how often a save polls query-migrate. A save of
// a few hundred MiB takes a few hundred milliseconds, so a coarser poll
// would add a noticeable share to it.
const migrationPollInterval = 2 * time.Millisecond

// fdName names the descriptor passed to QEMU for a checkpoint.
const fdName = "vmlet-checkpoint"

// Suspendable returns an error wrapping vmruntime.ErrNotSuspendable when m
// has shares: QEMU blocks migration while a 9p share is mounted.
func (r *Runtime) Suspendable(m *vmruntime.Machine) error {
	if len(m.Shares) > 0 {
		return fmt.Errorf("%w: qemu cannot migrate a guest with virtio-9p shares", vmruntime.ErrNotSuspendable)
	}
	return nil
}

// Save migrates the paused VM into a temporary file beside path, fsyncs
// it, renames it to path and fsyncs the folder. The file is 0600. On
// failure, a full disk included, nothing is left at path or at the
// temporary name, and the VM stays paused and alive, so Resume can run it
// again. path must not exist.
func (r *Runtime) Save(ctx context.Context, m *vmruntime.Machine, path string) (vmruntime.CheckpointInfo, error) {
	v, err := r.running(m.Name)
	if err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	if _, err := os.Lstat(path); err == nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("saving %q: %q: %w", m.Name, path, os.ErrExist)
	}
	size, err := saveTo(ctx, v, path)
	if err != nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("saving %q to %q: %w", m.Name, path, err)
	}
	return vmruntime.CheckpointInfo{Bytes: size, Runtime: r.RuntimeString()}, nil
}

// saveTo writes the migration stream to a temporary file and renames it to
// path once it is durable. It returns the file's size.
func saveTo(ctx context.Context, v *vm, path string) (int64, error) {
	temp := partialPath(path)
	// A partial file left by a save that a killed daemon never finished
	// is useless, and only one save of a VM runs at a time.
	if err := os.Remove(temp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	f, err := os.OpenFile(temp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	size, err := migrateTo(ctx, v, f)
	closeErr := f.Close()
	if err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(temp, path)
	}
	if err != nil {
		os.Remove(temp)
		return 0, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		os.Remove(path)
		return 0, err
	}
	return size, nil
}

// partialPath returns the hidden name a checkpoint for path is written
// under until it is durable.
func partialPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial")
}

// migrateTo streams the VM's state into f and fsyncs it.
func migrateTo(ctx context.Context, v *vm, f *os.File) (int64, error) {
	params := map[string]any{"max-bandwidth": maxBandwidth}
	if err := v.execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return 0, err
	}
	mon, err := v.monitor(ctx)
	if err != nil {
		return 0, err
	}
	if err := mon.executeWithFile(ctx, "getfd", map[string]string{"fdname": fdName}, nil, f); err != nil {
		return 0, err
	}
	if err := v.execute(ctx, "migrate", map[string]string{"uri": "fd:" + fdName}, nil); err != nil {
		closeFD(v)
		return 0, err
	}
	if err := awaitMigration(ctx, v, f); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("fsync: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// closeFD drops the descriptor a failed migrate command left with QEMU.
func closeFD(v *vm) {
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	defer cancel()
	v.execute(ctx, "closefd", map[string]string{"fdname": fdName}, nil)
}

// migrationInfo is the part of query-migrate's reply that Save reads.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// awaitMigration polls query-migrate until the migration completes or
// fails, starting writeback of f at each poll so that disk writes overlap
// the migration. When ctx ends first it cancels the migration and waits
// for QEMU to let go of the file.
func awaitMigration(ctx context.Context, v *vm, f *os.File) error {
	ticker := time.NewTicker(migrationPollInterval)
	defer ticker.Stop()
	for {
		var info migrationInfo
		if err := v.execute(ctx, "query-migrate", nil, &info); err != nil {
			cancelMigration(v)
			return err
		}
		switch info.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", info.Status, info.ErrorDesc)
		}
		startWriteback(f)
		select {
		case <-ticker.C:
		case <-ctx.Done():
			cancelMigration(v)
			return ctx.Err()
		}
	}
}

// cancelMigration stops a migration whose caller gave up, and waits a
// bounded time for QEMU to report it over.
func cancelMigration(v *vm) {
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	defer cancel()
	v.execute(ctx, "migrate_cancel", nil, nil)
	for ctx.Err() == nil {
		var info migrationInfo
		if v.execute(ctx, "query-migrate", nil, &info) != nil {
			return
		}
		if info.Status != "active" && info.Status != "cancelling" && info.Status != "setup" {
			return
		}
		time.Sleep(pollInterval)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %q: %w", dir, err)
	}
	return nil
}

// formatRuntime returns the text a checkpoint records, such as
// "qemu 7.2.22 pc-i440fx-7.2".
func formatRuntime(version, machineType string) string {
	return "qemu " + version + " " + machineType
}

// parseRuntime splits a recorded runtime text into QEMU's version and the
// machine type.
func parseRuntime(text string) (version [3]int, machineType string, err error) {
	fields := strings.Fields(text)
	if len(fields) != 3 || fields[0] != "qemu" {
		return version, "", fmt.Errorf("%w: runtime %q is not \"qemu VERSION MACHINETYPE\"", vmruntime.ErrCheckpointIncompatible, text)
	}
	version, err = parseVersion(fields[1])
	if err != nil {
		return version, "", fmt.Errorf("%w: runtime %q: %w", vmruntime.ErrCheckpointIncompatible, text, err)
	}
	return version, fields[2], nil
}

func parseVersion(text string) ([3]int, error) {
	var version [3]int
	parts := strings.Split(text, ".")
	if len(parts) != 3 {
		return version, fmt.Errorf("invalid version %q", text)
	}
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return version, fmt.Errorf("invalid version %q", text)
		}
		version[i] = n
	}
	return version, nil
}

// CanRestore accepts a checkpoint whose machine type this binary has and
// whose QEMU version is this one or older: QEMU keeps versioned machine
// types restorable by later releases, not by earlier ones.
func (r *Runtime) CanRestore(info vmruntime.CheckpointInfo) error {
	saved, machineType, err := parseRuntime(info.Runtime)
	if err != nil {
		return err
	}
	if !r.machineTypes[machineType] {
		return fmt.Errorf("%w: machine type %q is not supported by %s", vmruntime.ErrCheckpointIncompatible, machineType, r.RuntimeString())
	}
	current, err := parseVersion(r.version)
	if err != nil {
		return err
	}
	if compareVersions(saved, current) > 0 {
		return fmt.Errorf("%w: saved by qemu %s, newer than this qemu %s", vmruntime.ErrCheckpointIncompatible,
			strings.Fields(info.Runtime)[1], r.version)
	}
	return nil
}

func compareVersions(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return 0
}

// Restore starts a new QEMU for m with the machine type info records,
// loads the checkpoint at path into it and returns once the guest is
// paused with the saved state. The caller resumes it. A failed restore
// leaves no process behind and the checkpoint untouched.
func (r *Runtime) Restore(ctx context.Context, m *vmruntime.Machine, path string, info vmruntime.CheckpointInfo) error {
	if err := r.CanRestore(info); err != nil {
		return err
	}
	_, machineType, _ := parseRuntime(info.Runtime)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %q", vmruntime.ErrMissingFile, path)
	}
	if err != nil {
		return fmt.Errorf("restoring %q: %w", m.Name, err)
	}
	defer f.Close()
	v, err := r.start(ctx, m, r.launchFor(m, machineType, true))
	if err != nil {
		return err
	}
	if err := migrateFrom(ctx, r, v, f); err != nil {
		r.abandon(v)
		return fmt.Errorf("restoring %q from %q: %w", m.Name, path, err)
	}
	return nil
}

// migrateFrom feeds f to a QEMU started with -incoming defer and waits for
// the guest to arrive paused.
func migrateFrom(ctx context.Context, r *Runtime, v *vm, f *os.File) error {
	mon, err := v.monitor(ctx)
	if err != nil {
		return err
	}
	if err := mon.executeWithFile(ctx, "getfd", map[string]string{"fdname": fdName}, nil, f); err != nil {
		return err
	}
	if err := v.execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + fdName}, nil); err != nil {
		return err
	}
	return r.awaitStatus(ctx, v, "paused", "postmigrate")
}
