package spec

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// ListManifests returns the paths of the manifests in dir (see
// IsManifestName), sorted. Only regular files and symlinks to regular files
// are listed: sub-folders, FIFOs, devices and broken links are skipped.
func ListManifests(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading manifest folder: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if !IsManifestName(e.Name()) || !isRegularEntry(dir, e) {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	slices.Sort(paths)
	return paths, nil
}

// isRegularEntry reports whether e is a regular file or a symlink to one.
func isRegularEntry(dir string, e fs.DirEntry) bool {
	if e.Type().IsRegular() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	info, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && info.Mode().IsRegular()
}

// StatusFilePath returns where the status of the VM name goes when its
// manifest cannot hold it: <stateDir>/vms/<name>/status.yaml. The name
// must be a valid one (see IsValidName).
func StatusFilePath(stateDir, name string) string {
	return filepath.Join(stateDir, "vms", name, "status.yaml")
}

// CurrentStatus returns the status for the manifest: the one in the file,
// or the one in its status file under stateDir. When both exist, it
// prefers the one whose observedSpecHash matches the manifest's current
// spec, so that a stale status kept in the file (one committed to git, say)
// does not hide the daemon's. When both or neither match, the newer file
// wins. It returns nil when neither has a status.
func (m *Manifest) CurrentStatus(stateDir string) *Status {
	if !IsValidName(m.Name) {
		return m.Status
	}
	path := StatusFilePath(stateDir, m.Name)
	st, err := ReadStatusFile(path)
	if err != nil {
		return m.Status
	}
	if m.Status == nil {
		return st
	}
	inFile, inState := m.observesCurrentSpec(m.Status), m.observesCurrentSpec(st)
	if inFile != inState {
		return pick(inState, st, m.Status)
	}
	return pick(newerThan(path, m.Path), st, m.Status)
}

// observesCurrentSpec reports whether st was written for the manifest's
// current spec. It is false for a manifest that did not decode.
func (m *Manifest) observesCurrentSpec(st *Status) bool {
	return m.VM != nil && st.ObservedSpecHash == m.VM.SpecHash()
}

func pick(first bool, a, b *Status) *Status {
	if first {
		return a
	}
	return b
}

// newerThan reports whether the file at path was modified after the file
// at other, or other cannot be read.
func newerThan(path, other string) bool {
	info, err := os.Stat(path)
	if err != nil {
		return false
	}
	otherInfo, err := os.Stat(other)
	return err != nil || info.ModTime().After(otherInfo.ModTime())
}
