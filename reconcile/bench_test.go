package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vmlet/vmlet/spec"
	"github.com/vmlet/vmlet/vmruntime/sim"
)

// converged is a manifest folder and a state folder of n VMs that run, with
// their status written, over the sim runtime at zero latency.
type converged struct {
	dir, state string
	keys       []string
}

func newConverged(b *testing.B, n int) *converged {
	b.Helper()
	c := &converged{dir: b.TempDir(), state: b.TempDir()}
	if err := os.WriteFile(filepath.Join(c.dir, "vmlinuz"), []byte("kernel"), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		m := manifest{name: fmt.Sprintf("vm-%05d", i), desired: spec.Running, ready: "60s"}
		if err := os.WriteFile(filepath.Join(c.dir, m.name+".yaml"), []byte(m.text()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	r, rt := c.start(b)
	defer rt.Close()
	for _, k := range c.keys {
		if _, err := r.Reconcile(b.Context(), k); err != nil {
			b.Fatal(err)
		}
	}
	// The periodic relist of the running daemon, which parses the files its
	// status writes changed and saves the parse cache.
	if _, err := r.cfg.Catalog.Relist(); err != nil {
		b.Fatal(err)
	}
	return c
}

// start is what a restarted daemon does before its first reconcile: a new
// runtime, adoption and a relist.
func (c *converged) start(b *testing.B) (*Reconciler, *sim.Runtime) {
	b.Helper()
	rt, err := sim.New(sim.Options{StateRoot: c.state})
	if err != nil {
		b.Fatal(err)
	}
	cat := NewCatalog(c.dir)
	r, err := New(Config{Runtime: rt, Catalog: cat, StateDir: c.state})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.Adopt(b.Context()); err != nil {
		b.Fatal(err)
	}
	if c.keys, err = cat.Relist(); err != nil {
		b.Fatal(err)
	}
	return r, rt
}

// BenchmarkRestartConverged measures a daemon restart over 10,000
// converged manifests: adopt, list, parse, observe, and nothing to write.
func BenchmarkRestartConverged(b *testing.B) {
	c := newConverged(b, benchVMs)
	ctx := context.Background()
	for b.Loop() {
		r, rt := c.start(b)
		for _, k := range c.keys {
			if _, err := r.Reconcile(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
		rt.Close()
	}
	b.ReportMetric(float64(len(c.keys)), "vms")
}

// BenchmarkReconcileIdle measures one reconcile of a converged VM that has
// nothing to do.
func BenchmarkReconcileIdle(b *testing.B) {
	c := newConverged(b, 1)
	r, rt := c.start(b)
	defer rt.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := r.Reconcile(ctx, "vm-00000"); err != nil {
			b.Fatal(err)
		}
	}
}

// benchVMs is the number of manifests of BenchmarkRestartConverged.
var benchVMs = envInt("VMLET_BENCH_VMS", 10_000)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkFirstSync measures the first reconcile of new manifests: a boot
// at zero latency and one durable status write each. It reports status
// writes per second beside the rate of bare durable writes (spec.WriteFile)
// of the same files measured in the same run.
func BenchmarkFirstSync(b *testing.B) {
	const n = 500
	ctx := context.Background()
	var syncTime, bareTime time.Duration
	for b.Loop() {
		c := &converged{dir: b.TempDir(), state: b.TempDir()}
		data := make(map[string][]byte)
		for i := range n {
			m := manifest{name: fmt.Sprintf("vm-%05d", i), desired: spec.Running, ready: "60s"}
			path := filepath.Join(c.dir, m.name+".yaml")
			data[path] = []byte(m.text())
			if err := os.WriteFile(path, data[path], 0o644); err != nil {
				b.Fatal(err)
			}
		}
		r, rt := c.start(b)
		start := time.Now()
		for _, k := range c.keys {
			if _, err := r.Reconcile(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
		syncTime += time.Since(start)
		rt.Close()

		start = time.Now()
		for path, d := range data {
			if err := spec.WriteFile(path, d, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		bareTime += time.Since(start)
	}
	writes := float64(n * b.N)
	b.ReportMetric(writes/syncTime.Seconds(), "status-writes/s")
	b.ReportMetric(writes/bareTime.Seconds(), "bare-writes/s")
}
