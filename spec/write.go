package spec

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// errNoExchange means the filesystem cannot swap two names atomically.
var errNoExchange = errors.New("atomic exchange not supported")

// Hooks for tests: exchangeFiles swaps two names, beforeSwap runs between
// the temp file's fsync and the swap.
var (
	exchangeFiles = exchange
	beforeSwap    func(target string)
)

// WriteStatus writes st into the manifest at path, whose content the caller
// read as read, changing only the top-level status member (see
// ReplaceStatus). The write is atomic and durable: a temp file in the same
// folder, named so that the watcher ignores it, is fsynced and swapped in,
// and the folder is fsynced. The file's mode and, where allowed, its owner
// are kept; a symlink is written through to its target.
//
// The swap is an atomic exchange, so no edit by a writer that replaces the
// file by rename is lost. When what comes out of the swap differs from
// read, the user's file is swapped back, WriteStatus returns ErrConflict,
// and the caller re-reads. A writer that rewrites the file in place before
// the swap is detected the same way. One that does so after the swap can
// still lose its edit. Where the filesystem has no atomic exchange, the
// file is re-read and compared before a plain rename.
//
// WriteStatus returns ErrNotWritable when no write bit is set for anyone
// (honoured even for root) or the write fails with a permission or
// read-only filesystem error. vmlet's writers to one folder are serialized
// with flock(2) on the folder, across processes.
func WriteStatus(path string, read []byte, st *Status) error {
	out, err := ReplaceStatus(read, st)
	if err != nil {
		return fmt.Errorf("writing status to %q: %w", path, err)
	}
	if bytes.Equal(out, read) {
		return nil
	}
	if err := replaceManifest(path, read, out); err != nil {
		return fmt.Errorf("writing status to %q: %w", path, err)
	}
	return nil
}

// SetDesiredState sets spec.desiredState in the manifest at path, changing
// only that value's bytes (or adding the member where the spec has none),
// with the same atomic write as WriteStatus. It retries when the file
// changes under it.
func SetDesiredState(path string, state DesiredState) error {
	target, err := resolveLink(path)
	if err != nil {
		return fmt.Errorf("setting desired state in %q: %w", path, err)
	}
	for range 3 {
		err = setDesiredState(target, state)
		if !errors.Is(err, ErrConflict) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("setting desired state in %q: %w", path, err)
	}
	return nil
}

func setDesiredState(target string, state DesiredState) error {
	read, err := os.ReadFile(target)
	if err != nil {
		return err
	}
	out, err := ReplaceDesiredState(read, state)
	if err != nil || bytes.Equal(out, read) {
		return err
	}
	return replaceManifest(target, read, out)
}

// replaceManifest swaps out in for the manifest at path, if it still holds
// read.
func replaceManifest(path string, read, out []byte) error {
	target, err := resolveLink(path)
	if err != nil {
		return err
	}
	unlock, err := lockFolder(filepath.Dir(target))
	if err != nil {
		return err
	}
	defer unlock()
	info, err := os.Stat(target)
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o222 == 0 {
		return fmt.Errorf("%w: no write bit is set", ErrNotWritable)
	}
	tmp, err := writeTemp(target, out, info.Mode().Perm(), info)
	if err != nil {
		return notWritable(err)
	}
	err = swapIfUnchanged(tmp, target, read)
	// Removing the temp file (the old content after a swap) before the
	// folder's fsync lets one journal commit cover both.
	os.Remove(tmp)
	return errors.Join(err, syncDir(filepath.Dir(target)))
}

// resolveLink returns the file a symlink at path points to, or path.
func resolveLink(path string) (string, error) {
	info, err := os.Lstat(path)
	if err != nil || info.Mode()&os.ModeSymlink == 0 {
		return path, err
	}
	return filepath.EvalSymlinks(path)
}

// swapIfUnchanged exchanges tmp and target, and swaps back when what came
// out is not read. Without an atomic exchange it compares, then renames.
// The caller fsyncs the folder.
func swapIfUnchanged(tmp, target string, read []byte) error {
	if beforeSwap != nil {
		beforeSwap(target)
	}
	err := exchangeFiles(tmp, target)
	if errors.Is(err, errNoExchange) {
		return renameIfUnchanged(tmp, target, read)
	}
	if err != nil {
		return notWritable(err)
	}
	if sameContent(tmp, read) {
		return nil
	}
	if err := exchangeFiles(tmp, target); err != nil {
		return fmt.Errorf("restoring the file written since it was read: %w", err)
	}
	return ErrConflict
}

func renameIfUnchanged(tmp, target string, read []byte) error {
	if !sameContent(target, read) {
		return ErrConflict
	}
	return notWritable(os.Rename(tmp, target))
}

// sameContent reports whether the file at path holds exactly want.
func sameContent(path string, want []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	got, err := io.ReadAll(io.LimitReader(f, int64(len(want))+1))
	return err == nil && bytes.Equal(got, want)
}

// notWritable marks permission and read-only filesystem errors with
// ErrNotWritable.
func notWritable(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %w", ErrNotWritable, err)
	}
	return err
}

// WriteFile writes data to path atomically and durably: a temp file in the
// same folder (a dotfile the watcher ignores) is written, fsynced and
// renamed over path, and the folder is fsynced. The new file has mode and,
// where the caller may set it, the owner and group of the regular file it
// replaces. It follows no symlink and compares nothing: the last writer
// wins.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, data, mode, replacedFile(path))
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}

// replacedFile returns the file information of the regular file at path,
// or nil when there is none.
func replacedFile(path string) os.FileInfo {
	info, err := os.Lstat(path)
	if err != nil || !info.Mode().IsRegular() {
		return nil
	}
	return info
}

// writeTemp writes data to a new fsynced file beside path, named
// ".NAME.vmlet-tmp-RANDOM", with mode and, when like is not nil, the owner
// of like. It returns the temp file's path.
func writeTemp(path string, data []byte, mode os.FileMode, like os.FileInfo) (string, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".vmlet-tmp-"+randomSuffix())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	err = fillTemp(f, data, mode, like)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

func fillTemp(f *os.File, data []byte, mode os.FileMode, like os.FileInfo) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if like != nil {
		keepOwner(f, like)
	}
	return f.Sync()
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing folder %q: %w", dir, err)
	}
	return nil
}

// WriteStatusFile writes st to path, the status file of a manifest that
// cannot hold its own (<state>/vms/<name>/status.yaml), creating its folder
// with mode 0700. The file is the status mapping in YAML, written with
// WriteFile.
func WriteStatusFile(path string, st *Status) error {
	text, err := blockYAML(st, 0, 2)
	if err != nil {
		return fmt.Errorf("writing status file %q: %w", path, err)
	}
	if text == "" {
		text = "{}\n"
	}
	data := []byte(text)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing status file %q: %w", path, err)
	}
	return WriteFile(path, data, 0o644)
}

// ReadStatusFile reads a status file written by WriteStatusFile. When the
// file does not exist the error wraps os.ErrNotExist.
func ReadStatusFile(path string) (*Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading status file: %w", err)
	}
	root, err := parseDocument(path, data)
	if err != nil {
		return nil, fmt.Errorf("reading status file: %w", err)
	}
	loadSchemas()
	d := &decoder{file: path, lines: make(map[string]int, 32)}
	d.value(root, statusSchema, "status")
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("reading status file: %w", d.errs)
	}
	st := &Status{}
	if err := strictJSON(d.buf, st); err != nil {
		return nil, fmt.Errorf("reading status file %q: %w", path, err)
	}
	return st, nil
}
