package vz

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

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

// minNameRoom is the VM name length that every state folder must leave
// room for in socket paths. Longer names are checked one by one at boot.
const minNameRoom = 20

// maxSocketPath returns the longest unix socket path the system accepts,
// counting the terminating NUL byte that sockaddr_un needs.
func maxSocketPath() int {
	if runtime.GOOS == "darwin" {
		return 104 - 1
	}
	return 108 - 1
}

// checkSocketRoom returns an error when stateRoot is too deep for the
// socket of a VM whose name has minNameRoom characters.
func checkSocketRoom(stateRoot string) error {
	name := strings.Repeat("x", minNameRoom)
	sock := filepath.Join(stateRoot, "vms", name, socketFile)
	if len(sock) > maxSocketPath() {
		return fmt.Errorf("state folder %q is too deep: a helper socket under it, such as %q, needs %d bytes and the limit is %d; choose a shorter --state-dir",
			stateRoot, sock, len(sock), maxSocketPath())
	}
	return nil
}

// checkSocketPath returns an error when the helper socket in dir would be
// longer than unix sockets allow.
func checkSocketPath(name, dir string) error {
	sock := filepath.Join(dir, socketFile)
	if len(sock) > maxSocketPath() {
		return fmt.Errorf("helper socket %q of vm %q is %d bytes, over the limit of %d; use a shorter name or --state-dir",
			sock, name, len(sock), maxSocketPath())
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
