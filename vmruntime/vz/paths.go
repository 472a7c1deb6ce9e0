package vz

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vmlet/vmlet/vmruntime"
)

// Files in a VM's state folder. Names are short because a unix socket's
// path is limited to 104 bytes on macOS.
const (
	socketFile    = "vmm.sock"
	pidFile       = "vmm.pid"
	exitFile      = "vmm.exit"
	logFile       = "vmm.log"
	configFile    = "machine.json"
	machineIDFile = "machine-id"
)

// maxNameLength is the longest VM name: a DNS-1123 label.
const maxNameLength = 63

// maxSocketPath returns the longest unix socket path the system accepts,
// counting the terminating NUL byte that sockaddr_un needs.
func maxSocketPath() int {
	if runtime.GOOS == "darwin" {
		return 104 - 1
	}
	return 108 - 1
}

// checkSocketRoom returns an error when the socket of a VM with the
// longest name would not fit under stateRoot.
func checkSocketRoom(stateRoot string) error {
	longest := len(filepath.Join(stateRoot, "vms")) + 1 + maxNameLength + 1 + len(socketFile)
	if longest > maxSocketPath() {
		return fmt.Errorf("state folder %q is too deep: helper sockets under it need %d bytes, the limit is %d",
			stateRoot, longest, maxSocketPath())
	}
	return nil
}

// canonicalPath returns path with its folder's symlinks resolved, so that
// VZ gets the same path at save and at restore (on macOS /var is a symlink
// to /private/var). The file itself need not exist.
func canonicalPath(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("path %q is not absolute", path)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("resolving %q: %w", path, err)
	}
	return filepath.Join(dir, filepath.Base(path)), nil
}

// writeFileAtomic writes data to path through a temp file and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %q: %w", tmp, err)
	}
	return commitFile(tmp, path)
}

// commitFile fsyncs tmp, renames it to path and fsyncs the folder, so the
// new file survives a crash.
func commitFile(tmp, path string) error {
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %q: %w", tmp, err)
	}
	return syncFile(filepath.Dir(path))
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %q to sync: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", path, err)
	}
	return nil
}

// checkFiles returns an error wrapping vmruntime.ErrMissingFile for the
// first of paths that does not exist.
func checkFiles(paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q", vmruntime.ErrMissingFile, p)
		} else if err != nil {
			return fmt.Errorf("checking %q: %w", p, err)
		}
	}
	return nil
}
