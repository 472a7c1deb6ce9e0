package controller

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockStateDirSecondHolderFails(t *testing.T) {
	dir := t.TempDir()
	first, err := LockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockStateDir(dir)
	if !errors.Is(err, ErrStateLocked) {
		t.Fatalf("second LockStateDir error = %v, want ErrStateLocked", err)
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), "pid "+pid) {
		t.Errorf("second LockStateDir error = %q, want the holder's pid %s", err, pid)
	}

	must(t, first.Unlock())
	again, err := LockStateDir(dir)
	if err != nil {
		t.Fatalf("LockStateDir after Unlock: %v", err)
	}
	must(t, again.Unlock())
}

func TestHostLockCreatesMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.lock")
	unlock, err := NewHostLock(path).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o644 {
		t.Errorf("created lock file mode = %v, want 0644", got)
	}
}

func TestHostLockReadOnlyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.lock")
	writeFile(t, path, "")
	must(t, os.Chmod(path, 0o444))
	unlock, err := NewHostLock(path).Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock on a read-only file: %v", err)
	}
	unlock()
}

func TestHostLockBoundedByContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.lock")
	unlock, err := NewHostLock(path).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = NewHostLock(path).Lock(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Lock while held, context cancelled: error = %v, want context.Canceled", err)
	}
}

// TestHostLockExcludes takes the lock from many goroutines, each through
// its own HostLock as separate daemons would, and checks that no two
// holders ever overlap. The control run without the lock shows that the
// check sees overlaps when they happen.
func TestHostLockExcludes(t *testing.T) {
	tests := []struct {
		name        string
		lock        bool
		wantOverlap bool
	}{
		{name: "locked", lock: true, wantOverlap: false},
		{name: "control without lock", lock: false, wantOverlap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "host.lock")
			var holders, overlaps atomic.Int32
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 20 {
						holdBriefly(t, path, tt.lock, &holders, &overlaps)
					}
				})
			}
			wg.Wait()
			if got := overlaps.Load() > 0; got != tt.wantOverlap {
				t.Errorf("overlapping holders seen = %v (%d), want %v", got, overlaps.Load(), tt.wantOverlap)
			}
		})
	}
}

func holdBriefly(t *testing.T, path string, lock bool, holders, overlaps *atomic.Int32) {
	if lock {
		unlock, err := NewHostLock(path).Lock(t.Context())
		if err != nil {
			t.Error(err)
			return
		}
		defer unlock()
	}
	if holders.Add(1) > 1 {
		overlaps.Add(1)
	}
	time.Sleep(time.Millisecond)
	holders.Add(-1)
}
