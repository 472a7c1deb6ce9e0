package qemu

import (
	"context"
	"path/filepath"
	"sort"
)

// Adopt scans stateRoot/vms/*/ for pid files of QEMU processes that are
// still alive and take over their state folder, and registers each under
// its folder's name. It connects to each one's QMP socket, and one that does
// not respond yet is dialed again by the next command. The agent connection is
// made again by Connect. Adopt returns the adopted names, sorted.
func (r *Runtime) Adopt(ctx context.Context, stateRoot string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(stateRoot, "vms", "*"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, dir := range dirs {
		if r.adoptDir(ctx, dir) {
			names = append(names, filepath.Base(dir))
		}
	}
	sort.Strings(names)
	return names, nil
}

// adoptDir registers the QEMU of one state folder if its process is alive.
func (r *Runtime) adoptDir(ctx context.Context, dir string) bool {
	pid, err := readPidFile(filepath.Join(dir, pidFile))
	if err != nil {
		return false
	}
	proc, alive := adoptProcess(pid, dir)
	if !alive {
		return false
	}
	name := filepath.Base(dir)
	if v := r.lookup(name); v != nil && v.process().alive() {
		return true
	}
	v := &vm{name: name, stateDir: dir, proc: proc}
	r.register(v)
	// A QMP socket that does not respond now is dialed again by the next
	// command, so the error does not stop the adoption.
	if _, err := v.monitor(ctx); err == nil {
		cancelOrphanMigration(ctx, v)
	}
	return true
}

// cancelOrphanMigration cancels a save that an earlier daemon started and
// did not live to finish. Left running, it would keep the guest paused
// behind the caller's back and make the next save fail with "migration in
// progress".
func cancelOrphanMigration(ctx context.Context, v *vm) {
	var info migrationInfo
	if v.execute(ctx, "query-migrate", nil, &info) != nil {
		return
	}
	switch info.Status {
	case "setup", "active", "device", "pre-switchover":
		cancelMigration(v)
	}
}
