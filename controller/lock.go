package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// StateLockName is the lock file in the state folder that keeps a second
// daemon off the same state folder.
const StateLockName = "vmlet.lock"

// ErrStateLocked means another daemon holds the state folder's lock.
var ErrStateLocked = errors.New("state folder is in use by another vmlet daemon")

// StateLock is the exclusive flock(2) on <state>/vmlet.lock that one daemon
// holds for its whole life. The file contains the holder's pid.
type StateLock struct {
	file *os.File
}

// LockStateDir takes the lock of stateDir without waiting. When another
// process holds it, the error wraps ErrStateLocked and names that process's
// pid as written in the lock file.
func LockStateDir(stateDir string) (*StateLock, error) {
	path := filepath.Join(stateDir, StateLockName)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening state lock %q: %w", path, err)
	}
	err = flock(file, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		pid := readPID(file)
		file.Close()
		return nil, fmt.Errorf("locking %q: %w (held by pid %s)", path, ErrStateLocked, pid)
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("locking %q: %w", path, err)
	}
	if err := writePID(file); err != nil {
		file.Close()
		return nil, fmt.Errorf("writing pid to %q: %w", path, err)
	}
	return &StateLock{file: file}, nil
}

// Unlock releases the lock. The file stays, so that the next daemon opens
// the same inode.
func (l *StateLock) Unlock() error {
	return l.file.Close()
}

func readPID(file *os.File) string {
	buf := make([]byte, 32)
	n, _ := file.ReadAt(buf, 0)
	pid := string(bytes.TrimSpace(buf[:n]))
	if pid == "" {
		return "unknown"
	}
	return pid
}

func writePID(file *os.File) error {
	if err := file.Truncate(0); err != nil {
		return err
	}
	_, err := file.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// HostLock is the host-wide lifecycle lock: an flock(2) on a file that
// every vmlet on the host shares, held for the length of one VM lifecycle
// transition. It implements reconcile.Locker.
//
// The file is locked through a read-only descriptor, so every user who can
// read it can take the lock. An existing file is opened without O_CREAT,
// because Linux's fs.protected_regular rejects O_CREAT on another user's
// file in a sticky folder such as /tmp, even for root. A missing file is
// created with mode 0644 and O_EXCL.
type HostLock struct {
	path string
}

// NewHostLock returns the lock on the file at path. Nothing is opened until
// Lock.
func NewHostLock(path string) *HostLock {
	return &HostLock{path: path}
}

// Check opens the lock file, creating it where it is missing, so that a
// daemon learns of an unusable path at start rather than at its first
// transition.
func (l *HostLock) Check() error {
	file, err := l.open()
	if err != nil {
		return err
	}
	return file.Close()
}

// Poll intervals of HostLock.Lock while another process holds the lock.
// flock(2) cannot be interrupted by a context, so a held lock is polled
// with LOCK_NB, starting fast because transitions are often short.
const (
	hostLockMinPoll = time.Millisecond
	hostLockMaxPoll = 20 * time.Millisecond
)

// Lock blocks until the lock is held or ctx ends, and returns the function
// that releases it. Each call opens its own descriptor, so two callers in
// one process exclude each other as two processes do.
func (l *HostLock) Lock(ctx context.Context) (func(), error) {
	file, err := l.open()
	if err != nil {
		return nil, err
	}
	if err := l.acquire(ctx, file); err != nil {
		file.Close()
		return nil, err
	}
	return func() { file.Close() }, nil
}

func (l *HostLock) acquire(ctx context.Context, file *os.File) error {
	poll := hostLockMinPoll
	for {
		err := flock(file, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("locking host lock %q: %w", l.path, err)
		}
		timer := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("waiting for host lock %q: %w", l.path, context.Cause(ctx))
		case <-timer.C:
		}
		poll = min(2*poll, hostLockMaxPoll)
	}
}

// open opens the lock file read-only, creating it first where it is
// missing.
func (l *HostLock) open() (*os.File, error) {
	file, err := os.Open(l.path)
	if err == nil {
		return file, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("opening host lock %q: %w", l.path, err)
	}
	if err := l.create(); err != nil {
		return nil, err
	}
	file, err = os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("opening host lock %q: %w", l.path, err)
	}
	return file, nil
}

// create makes the lock file with mode 0644 whatever the umask. Another
// process creating it at the same moment is not an error.
func (l *HostLock) create() error {
	file, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating host lock %q: %w", l.path, err)
	}
	defer file.Close()
	if err := file.Chmod(0o644); err != nil {
		return fmt.Errorf("creating host lock %q: %w", l.path, err)
	}
	return nil
}

// flock calls flock(2), retrying when a signal interrupts it.
func flock(file *os.File, how int) error {
	for {
		err := syscall.Flock(int(file.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
