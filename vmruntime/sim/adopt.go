package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/vmlet/vmlet/vmruntime"
)

// Adopt loads the state of every VM in stateRoot, so that Observe reads it
// from memory, and returns the sorted names of the VMs whose process runs or
// is paused. stateRoot must be the Runtime's StateRoot.
func (r *Runtime) Adopt(ctx context.Context, stateRoot string) ([]string, error) {
	if filepath.Clean(stateRoot) != filepath.Clean(r.opts.StateRoot) {
		return nil, fmt.Errorf("adopting from %q: the runtime's state folder is %q", stateRoot, r.opts.StateRoot)
	}
	entries, err := os.ReadDir(filepath.Join(stateRoot, "vms"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("adopting: %w", err)
	}
	var names []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("adopting: %w", err)
		}
		running, err := r.adopt(e)
		if err != nil {
			return nil, fmt.Errorf("adopting %q: %w", e.Name(), err)
		}
		if running {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// adopt loads the VM of one entry of the vms folder, drops its agent
// connection, and reports whether its process exists.
func (r *Runtime) adopt(e fs.DirEntry) (bool, error) {
	if !e.IsDir() || validateName(e.Name()) != nil {
		return false, nil
	}
	v, err := r.lookup(e.Name())
	if err != nil {
		return false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()

	// The agent connection belonged to the earlier daemon's process, as it
	// does with the real backends: the adopter connects again.
	v.state.AgentConnected = false
	return v.state.State != vmruntime.StateStopped, nil
}
