package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime"
)

// Files of a VM's state folder that hold its checkpoint.
const (
	checkpointFile     = "checkpoint"
	checkpointMetaFile = "checkpoint.json"
	// checkpointTempFile is where Save writes before the rename; one found
	// at start is what an interrupted suspend left.
	checkpointTempFile = "checkpoint.tmp"
)

// checkpointMeta describes a checkpoint: what it was saved from and the
// state of the disks at the time, so a resume can refuse a changed machine
// or a changed disk.
type checkpointMeta struct {
	Bytes       int64       `json:"bytes"`
	SavedAt     time.Time   `json:"savedAt"`
	MachineHash string      `json:"machineHash"`
	Runtime     string      `json:"runtime"`
	Disks       []diskStamp `json:"disks,omitempty"`
}

// diskStamp is a disk's size and modification time at the save.
type diskStamp struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	// Missing is true when no file was at Path: the sim runtime boots
	// without disk files, while the real backends create them at boot.
	Missing bool `json:"missing,omitempty"`
}

func (r *Reconciler) checkpointPath(name string) string {
	return filepath.Join(r.vmDir(name), checkpointFile)
}

func (r *Reconciler) checkpointTempPath(name string) string {
	return filepath.Join(r.vmDir(name), checkpointTempFile)
}

func (r *Reconciler) checkpointMetaPath(name string) string {
	return filepath.Join(r.vmDir(name), checkpointMetaFile)
}

// readCheckpoint returns the VM's checkpoint metadata, or nil when the VM
// has no checkpoint. A checkpoint is there once its file has its final name;
// the metadata is written before that rename.
func (r *Reconciler) readCheckpoint(name string) (*checkpointMeta, error) {
	if _, err := os.Lstat(r.checkpointPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	data, err := os.ReadFile(r.checkpointMetaPath(name))
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint metadata of %q: %w", name, err)
	}
	meta := &checkpointMeta{}
	if err := json.Unmarshal(data, meta); err != nil {
		return nil, fmt.Errorf("reading the checkpoint metadata of %q: %w", name, err)
	}
	return meta, nil
}

// writeCheckpointMeta writes the metadata durably, before the checkpoint
// file is renamed to its final name.
func (r *Reconciler) writeCheckpointMeta(name string, meta *checkpointMeta) error {
	data, err := json.MarshalIndent(meta, "", "  ")
	if err == nil {
		err = writeFileDurable(r.checkpointMetaPath(name), data)
	}
	if err != nil {
		return fmt.Errorf("writing the checkpoint metadata of %q: %w", name, err)
	}
	return nil
}

// stampDisks records the size and modification time of each disk.
func stampDisks(disks []vmruntime.Disk) ([]diskStamp, error) {
	var stamps []diskStamp
	for _, d := range disks {
		fi, err := os.Stat(d.Path)
		if errors.Is(err, fs.ErrNotExist) {
			stamps = append(stamps, diskStamp{Path: d.Path, Missing: true})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading disk %q: %w", d.Path, err)
		}
		stamps = append(stamps, diskStamp{Path: d.Path, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
	}
	return stamps, nil
}

// changedDisk returns a message naming the first disk whose size or
// modification time differs from the stamp, or "" when none does.
func changedDisk(stamps []diskStamp) string {
	for _, s := range stamps {
		fi, err := os.Stat(s.Path)
		if s.Missing && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if s.Missing {
			return fmt.Sprintf("disk %q appeared since the save", s.Path)
		}
		if err != nil {
			return fmt.Sprintf("disk %q changed since the save: %v", s.Path, err)
		}
		if fi.Size() != s.Size || !fi.ModTime().Equal(s.ModTime) {
			return fmt.Sprintf("disk %q changed since the save (size or modification time)", s.Path)
		}
	}
	return ""
}

// statusCheckpoint is the checkpoint as status shows it.
func (meta *checkpointMeta) status() *spec.Checkpoint {
	if meta == nil {
		return nil
	}
	return &spec.Checkpoint{
		Bytes:       meta.Bytes,
		SavedAt:     spec.Time{Time: meta.SavedAt.UTC().Truncate(time.Second)},
		MachineHash: meta.MachineHash,
		Runtime:     meta.Runtime,
	}
}

// deleteCheckpoint removes a checkpoint a resume has consumed: the running
// VM holds that state now, and restoring it again would fork the guest from
// its disks.
func (r *Reconciler) deleteCheckpoint(name string) error {
	if err := os.Remove(r.checkpointPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the checkpoint of %q: %w", name, err)
	}
	if err := os.Remove(r.checkpointMetaPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the checkpoint of %q: %w", name, err)
	}
	return syncDir(r.vmDir(name))
}

// removeTempCheckpoint deletes what an interrupted save left. Nothing is
// lost because a save only completes with the rename, before the VM
// process ends, so the process still has the memory.
func (r *Reconciler) removeTempCheckpoint(name string) error {
	err := os.Remove(r.checkpointTempPath(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the temp checkpoint of %q: %w", name, err)
	}
	return nil
}

func (r *Reconciler) trashDir() string {
	return filepath.Join(r.cfg.StateDir, "trash")
}

// trashCheckpoint moves the VM's checkpoint and its metadata into a new
// trash entry, <state>/trash/<time>-<name>, where PurgeTrash deletes it once
// the retention window has passed.
func (r *Reconciler) trashCheckpoint(name string) error {
	entry, err := r.newTrashEntry(name)
	if err != nil {
		return fmt.Errorf("moving the checkpoint of %q to the trash: %w", name, err)
	}
	for _, file := range []string{checkpointFile, checkpointMetaFile} {
		err := os.Rename(filepath.Join(r.vmDir(name), file), filepath.Join(entry, file))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("moving the checkpoint of %q to the trash: %w", name, err)
		}
	}
	if err := syncDir(entry); err != nil {
		return err
	}
	return syncDir(r.vmDir(name))
}

// trashTimeLayout names trash entries so that they sort by time.
const trashTimeLayout = "20060102T150405.000000000Z"

// newTrashEntry creates an empty trash entry for name, 0700.
func (r *Reconciler) newTrashEntry(name string) (string, error) {
	if err := ensureDir(r.trashDir()); err != nil {
		return "", err
	}
	base := r.cfg.Clock.Now().UTC().Format(trashTimeLayout) + "-" + name
	for i := 0; ; i++ {
		entry := filepath.Join(r.trashDir(), base)
		if i > 0 {
			entry += "." + strconv.Itoa(i)
		}
		err := os.Mkdir(entry, 0o700)
		if !errors.Is(err, fs.ErrExist) {
			return entry, err
		}
	}
}

// PurgeTrash deletes trash entries older than the retention window. An
// entry's age comes from the time in its name, or from its modification
// time where the name has none.
func (r *Reconciler) PurgeTrash() error {
	entries, err := os.ReadDir(r.trashDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("purging the trash: %w", err)
	}
	cutoff := r.cfg.Clock.Now().Add(-r.cfg.TrashRetention)
	var errs []error
	for _, e := range entries {
		if trashedAt(e).Before(cutoff) {
			errs = append(errs, os.RemoveAll(filepath.Join(r.trashDir(), e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("purging the trash: %w", err)
	}
	return nil
}

// trashedAt returns when a trash entry was made.
func trashedAt(e fs.DirEntry) time.Time {
	stamp, _, _ := strings.Cut(e.Name(), "-")
	if t, err := time.Parse(trashTimeLayout, stamp); err == nil {
		return t
	}
	fi, err := e.Info()
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
