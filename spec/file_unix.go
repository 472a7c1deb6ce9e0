//go:build unix

package spec

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockFolder takes an exclusive flock(2) on dir, opened read-only, so that
// vmlet's writers to manifests in one folder run one at a time across
// processes. It blocks until the lock is free.
func lockFolder(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking folder %q: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// keepOwner gives f the owner and group of like. It fails silently where
// the caller may not change the owner, as an unprivileged user may not.
func keepOwner(f *os.File, like os.FileInfo) {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return
	}
	_ = f.Chown(int(st.Uid), int(st.Gid))
}
