package vz

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/vmlet/vmlet/vmruntime"
)

// Suspendable returns nil when m can be saved, or an error wrapping
// vmruntime.ErrNotSuspendable with the reason. Save and restore need
// macOS 14 on Apple silicon. While m's helper runs, the reason is the one
// VZ's ValidateSaveRestoreSupport gave for its configuration; otherwise
// only the host is checked.
func (r *Runtime) Suspendable(m *vmruntime.Machine) error {
	reason := r.host.notSuspendable()
	if v := r.lookup(m.Name); v != nil && !v.exited() && reason == "" {
		reason = v.notSuspendable
	}
	if reason != "" {
		return fmt.Errorf("%w: %s", vmruntime.ErrNotSuspendable, reason)
	}
	return nil
}

// Save writes the paused machine's state to path through a temp file, an
// fsync and a rename, and records the macOS version and host with it. The
// file must not exist. A machine that VZ cannot save is refused with an
// error wrapping vmruntime.ErrNotSuspendable, and no save is attempted.
// The machine stays paused; the caller kills it afterwards. Save needs
// macOS 14 on Apple silicon.
func (r *Runtime) Save(ctx context.Context, m *vmruntime.Machine, path string) (vmruntime.CheckpointInfo, error) {
	v, err := r.running(m.Name)
	if err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	if err := r.Suspendable(m); err != nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("saving %q: %w", m.Name, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("saving %q: checkpoint %q already exists", m.Name, path)
	}
	if _, err := v.call(ctx, request{Op: opSave, Path: path}); err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("saving %q: %w", m.Name, err)
	}
	return vmruntime.CheckpointInfo{Bytes: st.Size(), Runtime: r.host.runtimeID()}, nil
}

// CanRestore returns nil when info describes a checkpoint saved by vz on
// this host under the same macOS major and minor version, or an error
// wrapping vmruntime.ErrCheckpointIncompatible that names what differs.
func (r *Runtime) CanRestore(info vmruntime.CheckpointInfo) error {
	if reason := r.host.notSuspendable(); reason != "" {
		return fmt.Errorf("%w: %s", vmruntime.ErrCheckpointIncompatible, reason)
	}
	if reason := compareRuntimeID(info.Runtime, r.host.runtimeID()); reason != "" {
		return fmt.Errorf("%w: %s", vmruntime.ErrCheckpointIncompatible, reason)
	}
	return nil
}

// Restore starts a helper that builds m's machine, restores the checkpoint
// at path into it and returns once the machine is paused. The caller
// resumes it and then calls Connect. It refuses a checkpoint that
// CanRestore refuses. Restore needs macOS 14 on Apple silicon.
func (r *Runtime) Restore(ctx context.Context, m *vmruntime.Machine, path string, info vmruntime.CheckpointInfo) error {
	if err := r.CanRestore(info); err != nil {
		return fmt.Errorf("restoring %q: %w", m.Name, err)
	}
	if err := checkFiles(path); err != nil {
		return fmt.Errorf("restoring %q: %w", m.Name, err)
	}
	cm, err := prepareMachine(m)
	if err != nil {
		return err
	}
	canonical, err := canonicalPath(path)
	if err != nil {
		return err
	}
	_, err = r.start(ctx, cm, canonical)
	return err
}

// host is the runtime's view of the machine it runs on. Tests replace it
// to exercise save and restore off macOS.
type host struct {
	notSuspendable func() string
	runtimeID      func() string
}

// thisHost returns the host vmlet runs on.
func thisHost() host {
	return host{notSuspendable: hostNotSuspendable, runtimeID: runtimeID}
}

// runtimeID describes this host for CheckpointInfo.Runtime, for example
// "vz macos=14.5 arch=arm64 host=3F2504E0-4F89-11D3-9A0C-0305E82C3301".
func runtimeID() string {
	return fmt.Sprintf("vz macos=%s arch=%s host=%s", macOSVersion(), runtime.GOARCH, hostID())
}

// compareRuntimeID returns why a checkpoint saved under saved cannot be
// restored under current, or "" when it can.
//
// NOTE: VZ does not document which macOS updates keep a saved state
// readable. Matching the major and minor version is a guess, and it errs
// on the side of a cold boot.
func compareRuntimeID(saved, current string) string {
	s, c := parseRuntimeID(saved), parseRuntimeID(current)
	switch {
	case s["vz"] != "vz":
		return fmt.Sprintf("checkpoint was not saved by vz (%q)", saved)
	case s["host"] != c["host"]:
		return fmt.Sprintf("checkpoint was saved on host %q, this is %q", s["host"], c["host"])
	case s["arch"] != c["arch"]:
		return fmt.Sprintf("checkpoint was saved on %s, this host is %s", s["arch"], c["arch"])
	case majorMinor(s["macos"]) != majorMinor(c["macos"]):
		return fmt.Sprintf("checkpoint was saved under macOS %s, this host runs %s", s["macos"], c["macos"])
	}
	return ""
}

// parseRuntimeID splits a runtime id into its key=value fields; the first
// field, the backend's name, maps to itself.
func parseRuntimeID(id string) map[string]string {
	fields := map[string]string{}
	for i, f := range strings.Fields(id) {
		k, v, ok := strings.Cut(f, "=")
		if i == 0 && !ok {
			fields[k] = k
			continue
		}
		fields[k] = v
	}
	return fields
}

// majorMinor returns "14.5" for "14.5.1".
func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}
