package vz

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmlet/vmlet/vmruntime"
)

func TestBootMissingFile(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	tests := []struct {
		name   string
		modify func(*vmruntime.Machine)
	}{
		{name: "kernel", modify: func(m *vmruntime.Machine) { m.Kernel = filepath.Join(root, "nope") }},
		{name: "initrd", modify: func(m *vmruntime.Machine) { m.Initrd = filepath.Join(root, "nope.img") }},
		{name: "disk without size", modify: func(m *vmruntime.Machine) { m.Disks[0].SizeBytes = 0 }},
		{name: "share", modify: func(m *vmruntime.Machine) {
			m.Shares = []vmruntime.Share{{Tag: "t", Path: filepath.Join(root, "nodir")}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(t, root, strings.ReplaceAll(tt.name, " ", "-"))
			tt.modify(m)
			err := r.Boot(t.Context(), m)
			if !errors.Is(err, vmruntime.ErrMissingFile) {
				t.Errorf("Boot error = %v, want ErrMissingFile", err)
			}
		})
	}
}

func TestBootFailureNamesReason(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root, envFailStart+"=VZErrorDomain code 2")
	m := newMachine(t, root, "broken")
	err := r.Boot(t.Context(), m)
	if err == nil || !strings.Contains(err.Error(), "VZErrorDomain code 2") {
		t.Errorf("Boot error = %v, want the helper's reason", err)
	}
	if o := observe(t, r, m.Name); o.State != vmruntime.StateStopped {
		t.Errorf("Observe after a failed boot = %+v, want Stopped", o)
	}
}

func TestRestoreRefusesIncompatible(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	m := newMachine(t, root, "stale")
	path := filepath.Join(root, "stale.ckpt")
	if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info := vmruntime.CheckpointInfo{Runtime: "vz macos=13.6 arch=arm64 host=test-host"}
	if err := r.Restore(t.Context(), m, path, info); !errors.Is(err, vmruntime.ErrCheckpointIncompatible) {
		t.Errorf("Restore error = %v, want ErrCheckpointIncompatible", err)
	}
	if _, err := os.Stat(filepath.Join(m.StateDir, callsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a helper was started for a checkpoint that cannot be restored")
	}
}

func TestCompareRuntimeID(t *testing.T) {
	t.Parallel()
	const current = "vz macos=14.5 arch=arm64 host=A"
	tests := []struct {
		name  string
		saved string
		want  string // a substring of the reason; "" for compatible
	}{
		{name: "same", saved: current},
		{name: "patch update", saved: "vz macos=14.5.1 arch=arm64 host=A"},
		{name: "other host", saved: "vz macos=14.5 arch=arm64 host=B", want: "host"},
		{name: "other macOS", saved: "vz macos=15.0 arch=arm64 host=A", want: "macOS"},
		{name: "other arch", saved: "vz macos=14.5 arch=amd64 host=A", want: "amd64"},
		{name: "qemu", saved: "qemu 7.2.0 pc-i440fx-7.2", want: "not saved by vz"},
		{name: "empty", saved: "", want: "not saved by vz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := compareRuntimeID(tt.saved, current)
			if tt.want == "" && got != "" {
				t.Errorf("compareRuntimeID = %q, want compatible", got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("compareRuntimeID = %q, want a reason naming %q", got, tt.want)
			}
		})
	}
}

func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "private", "var")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "var")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	resolvedDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr bool
	}{
		{name: "through symlink", path: filepath.Join(link, "vm.ckpt"), want: filepath.Join(resolvedDir, "private", "var", "vm.ckpt")},
		{name: "already canonical", path: filepath.Join(real, "vm.ckpt"), want: filepath.Join(resolvedDir, "private", "var", "vm.ckpt")},
		{name: "relative", path: "vm.ckpt", wantErr: true},
		{name: "missing folder", path: filepath.Join(dir, "nope", "vm.ckpt"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := canonicalPath(tt.path)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("canonicalPath(%q) error = %v, want error %v", tt.path, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("canonicalPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestBootCanonicalizesPaths(t *testing.T) {
	t.Parallel()
	root := newStateRoot(t)
	r := newTestRuntime(t, root)
	link := filepath.Join(root, "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, root, "canon")
	m.Kernel = filepath.Join(link, "vmlinuz")
	boot(t, r, m)

	written, err := readMachine(m.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(resolved, "vmlinuz"); written.Kernel != want {
		t.Errorf("helper's kernel path = %q, want %q", written.Kernel, want)
	}
}

func TestKernelCmdline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    vmruntime.Machine
		want string
	}{
		{name: "bare", want: "console=hvc0"},
		{name: "agent", m: vmruntime.Machine{AgentPort: 5000}, want: "console=hvc0 vmlet.agent=vsock:5000"},
		{name: "agent and cmdline", m: vmruntime.Machine{AgentPort: 7, Cmdline: "quiet"}, want: "console=hvc0 vmlet.agent=vsock:7 quiet"},
		{name: "cmdline", m: vmruntime.Machine{Cmdline: "quiet loglevel=3"}, want: "console=hvc0 quiet loglevel=3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := kernelCmdline(&tt.m); got != tt.want {
				t.Errorf("kernelCmdline = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewRejectsDeepStateRoot(t *testing.T) {
	t.Parallel()
	deep := "/" + strings.Repeat("d", 90)
	if _, err := New(deep, Options{}); err == nil || !strings.Contains(err.Error(), "too deep") {
		t.Errorf("New(%q) error = %v, want a too-deep error", deep, err)
	}
	if _, err := New("/Users/someone/.vmlet/state", Options{}); err != nil {
		t.Errorf("New(a Mac's default state folder) error = %v, want none", err)
	}
}

func TestBootRejectsLongSocketPath(t *testing.T) {
	t.Parallel()
	root := filepath.Join(newStateRoot(t), strings.Repeat("r", 30))
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	r := newTestRuntime(t, root)
	m := newMachine(t, root, strings.Repeat("n", 63))
	err := r.Boot(t.Context(), m)
	if err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("Boot error = %v, want the socket path limit", err)
	}
}

func TestReadLineBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxLine+10) + "\n"
	var v request
	if err := readLine(bufio.NewReader(strings.NewReader(long)), &v); err == nil {
		t.Error("readLine accepted a line over the bound")
	}
	ok := `{"op":"state"}` + "\n"
	if err := readLine(bufio.NewReader(strings.NewReader(ok)), &v); err != nil || v.Op != opState {
		t.Errorf("readLine = %+v, %v, want op state", v, err)
	}
}

func TestUncompressedKernel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	image := bytes.Repeat([]byte("ARM64 kernel image "), 1000)
	plain := filepath.Join(dir, "Image")
	if err := os.WriteFile(plain, image, 0o600); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(image)
	zw.Close()
	compressed := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(compressed, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()

	got, err := uncompressedKernel(plain, stateDir)
	if err != nil || got != plain {
		t.Errorf("uncompressedKernel(plain) = %q, %v, want the same path", got, err)
	}
	got, err = uncompressedKernel(compressed, stateDir)
	if err != nil {
		t.Fatalf("uncompressedKernel(gzip): %v", err)
	}
	if want := filepath.Join(stateDir, kernelFile); got != want {
		t.Errorf("uncompressedKernel(gzip) = %q, want %q", got, want)
	}
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, image) {
		t.Errorf("decompressed kernel differs from the image (%v)", err)
	}
}

func TestUncompressedKernelCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(corrupt, []byte{0x1f, 0x8b, 8, 0, 1, 2, 3}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := uncompressedKernel(corrupt, dir); err == nil {
		t.Error("uncompressedKernel accepted a corrupt gzip stream")
	}
	if _, err := os.Stat(filepath.Join(dir, kernelFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left after a failed decompression: %v", err)
	}
}
