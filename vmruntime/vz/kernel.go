package vz

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// kernelFile is the decompressed copy of a gzip-compressed kernel, kept in
// the VM's state folder.
const kernelFile = "vmlinux"

// maxKernelBytes bounds a decompressed kernel, so that a corrupt or
// hostile file cannot fill the disk. Linux arm64 images are tens of MiB.
const maxKernelBytes = 512 << 20

// uncompressedKernel returns path when the kernel there is not
// gzip-compressed. Otherwise it decompresses it into dir and returns the
// copy's path, because VZ's Linux boot loader on Apple silicon takes only
// an uncompressed kernel image, and Debian's arm64 vmlinuz is gzip.
func uncompressedKernel(path, dir string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening kernel: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic, err := r.Peek(2)
	if err != nil || !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return path, nil
	}
	out := filepath.Join(dir, kernelFile)
	if err := gunzipTo(r, out); err != nil {
		return "", fmt.Errorf("decompressing kernel %q: %w", path, err)
	}
	return out, nil
}

// gunzipTo decompresses r into path through a temp file and a rename.
func gunzipTo(r io.Reader, path string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(zr, maxKernelBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxKernelBytes {
		err = fmt.Errorf("decompressed kernel is larger than %d bytes", maxKernelBytes)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
