package sim

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkBoot boots a new VM per iteration at zero latency: the state
// file, the trace records and the folder the VM's state lives in.
func BenchmarkBoot(b *testing.B) {
	r := benchRuntime(b)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if err := r.Boot(ctx, machine("vm"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSave saves a paused VM per iteration to a new, fsynced file.
func BenchmarkSave(b *testing.B) {
	r := benchRuntime(b)
	ctx := b.Context()
	m := machine("web")
	if err := r.Boot(ctx, m); err != nil {
		b.Fatal(err)
	}
	if err := r.Pause(ctx, m.Name); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		if _, err := r.Save(ctx, m, filepath.Join(dir, strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRestore restores a VM per iteration and kills it again; the
// kill is timed too.
func BenchmarkRestore(b *testing.B) {
	r := benchRuntime(b)
	ctx := b.Context()
	m := machine("web")
	path := filepath.Join(b.TempDir(), "checkpoint")
	if err := errors.Join(r.Boot(ctx, m), r.Pause(ctx, m.Name)); err != nil {
		b.Fatal(err)
	}
	info, err := r.Save(ctx, m, path)
	if err := errors.Join(err, r.Kill(ctx, m.Name)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := errors.Join(r.Restore(ctx, m, path, info), r.Kill(ctx, m.Name)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserve observes one of 10,000 VMs per iteration, as a daemon's
// re-list does.
func BenchmarkObserve(b *testing.B) {
	r := benchRuntime(b)
	ctx := b.Context()
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("vm%d", i)
	}
	i := 0
	for b.Loop() {
		if _, err := r.Observe(ctx, names[i%len(names)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAdopt measures a new Runtime adopting 1,000 running VMs.
func BenchmarkAdopt(b *testing.B) {
	root := b.TempDir()
	r := benchRuntimeAt(b, root)
	for i := range 1000 {
		if err := r.Boot(b.Context(), machine(fmt.Sprintf("vm%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		next := benchRuntimeAt(b, root)
		names, err := next.Adopt(b.Context(), root)
		if err != nil || len(names) != 1000 {
			b.Fatalf("Adopt = %d names, %v", len(names), err)
		}
		next.Close()
	}
}

// benchRuntime returns a zero-latency Runtime over a fresh state folder.
func benchRuntime(b *testing.B) *Runtime {
	b.Helper()
	return benchRuntimeAt(b, b.TempDir())
}

// benchRuntimeAt returns a zero-latency Runtime over root.
func benchRuntimeAt(b *testing.B, root string) *Runtime {
	b.Helper()
	r, err := New(Options{StateRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// BenchmarkBootKill boots and kills the same VM per iteration: the
// per-operation cost once the VM's folder exists.
func BenchmarkBootKill(b *testing.B) {
	r := benchRuntime(b)
	ctx := b.Context()
	m := machine("web")
	for b.Loop() {
		if err := errors.Join(r.Boot(ctx, m), r.Kill(ctx, m.Name)); err != nil {
			b.Fatal(err)
		}
	}
}
