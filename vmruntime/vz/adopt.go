package vz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// adoptProbeTimeout bounds the state request to one helper during Adopt.
const adoptProbeTimeout = 2 * time.Second

// Adopt finds the helpers still running under stateRoot/vms, left by an
// earlier daemon, and takes them over. A helper counts when its pid file
// names a live process and its socket replies with that pid; stale pid
// files are skipped. It returns the names of the VMs adopted, and of those
// this Runtime already tracks.
func (r *Runtime) Adopt(ctx context.Context, stateRoot string) ([]string, error) {
	vmsDir := filepath.Join(stateRoot, "vms")
	entries, err := os.ReadDir(vmsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", vmsDir, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && r.adoptOne(ctx, e.Name(), filepath.Join(vmsDir, e.Name())) {
			names = append(names, e.Name())
		}
	}
	return names, ctx.Err()
}

// adoptOne takes over the helper in dir and reports whether there is one.
func (r *Runtime) adoptOne(ctx context.Context, name, dir string) bool {
	if v := r.lookup(name); v != nil && !v.exited() {
		return true
	}
	v, resp, ok := probe(ctx, name, dir)
	if !ok {
		return false
	}
	v.notSuspendable = resp.NotSuspendable
	go v.watchPID()
	r.track(v)
	return true
}

// probe returns a handle on the helper in dir when its pid file names a
// live process and its socket replies with that pid.
func probe(ctx context.Context, name, dir string) (*vm, response, bool) {
	pid, err := readPID(filepath.Join(dir, pidFile))
	if err != nil || !processAlive(pid) {
		return nil, response{}, false
	}
	v := &vm{name: name, dir: dir, pid: pid, done: make(chan struct{})}
	pctx, cancel := context.WithTimeout(ctx, adoptProbeTimeout)
	defer cancel()
	resp, err := v.call(pctx, request{Op: opState})
	if err != nil || resp.PID != pid {
		return nil, response{}, false
	}
	return v, resp, true
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("invalid pid file %q: no process id in it", path)
	}
	return pid, nil
}
