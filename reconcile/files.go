package reconcile

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data through a temp file in the same
// folder and a rename, with mode 0600. A reader sees the old file or the
// new one, never a mix. It does not fsync: the record it is used for only
// has to survive the daemon, and a host crash ends the VMs as well.
func writeFileAtomic(path string, data []byte) error {
	return writeTemp(path, data, false)
}

// writeFileDurable is writeFileAtomic followed by fsyncs of the file and
// its folder, so the new content survives a host crash.
func writeFileDurable(path string, data []byte) error {
	return writeTemp(path, data, true)
}

func writeTemp(path string, data []byte, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := writeAndClose(f, data, durable); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if durable {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

func writeAndClose(f *os.File, data []byte, durable bool) error {
	_, err := f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a folder so that renames and removals in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing folder %q: %w", dir, err)
	}
	return nil
}
