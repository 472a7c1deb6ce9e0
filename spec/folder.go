package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ListManifests returns the paths of the manifests in dir (see
// IsManifestName), sorted. Sub-folders are not read.
func ListManifests(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading manifest folder: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.IsDir() || !IsManifestName(e.Name()) {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	slices.Sort(paths)
	return paths, nil
}

// StatusFilePath returns where the status of the VM name goes when its
// manifest cannot hold it: <stateDir>/vms/<name>/status.yaml. The name
// must be a valid one (see IsValidName).
func StatusFilePath(stateDir, name string) string {
	return filepath.Join(stateDir, "vms", name, "status.yaml")
}

// CurrentStatus returns the manifest's status, or the one in its status
// file under stateDir where the manifest has none or the status file is
// newer than the manifest. It returns nil when neither has a status.
func (m *Manifest) CurrentStatus(stateDir string) *Status {
	if !IsValidName(m.Name) {
		return m.Status
	}
	path := StatusFilePath(stateDir, m.Name)
	info, err := os.Stat(path)
	if err != nil || (m.Status != nil && !newerThan(info, m.Path)) {
		return m.Status
	}
	st, err := ReadStatusFile(path)
	if err != nil {
		return m.Status
	}
	return st
}

func newerThan(info os.FileInfo, path string) bool {
	other, err := os.Stat(path)
	return err != nil || info.ModTime().After(other.ModTime())
}
