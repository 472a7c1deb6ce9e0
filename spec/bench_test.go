package spec

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// BenchmarkParse parses and validates a typical manifest: one YAML parse
// gives both the values and their lines. The cache of parsed documents is
// off, so each iteration parses.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/typical.yaml")
	if err != nil {
		b.Fatal(err)
	}
	setHook(b, &cacheDocuments, false)
	b.SetBytes(int64(len(data)))
	defer reportCPU(b)()
	for b.Loop() {
		if m := Parse("/nonexistent/typical.yaml", data); m.Err != nil {
			b.Fatal(m.Err)
		}
	}
}

// BenchmarkWriteStatus writes a changed status into a typical manifest:
// the edit, the temp file and its fsync, the atomic exchange, the
// comparison and the folder's fsync. As in the daemon, the manifest was
// loaded before the write (untimed), so its parsed document is reused.
// Compare it with BenchmarkWriteFile.
func BenchmarkWriteStatus(b *testing.B) {
	path := filepath.Join(b.TempDir(), "vm.yaml")
	if err := os.WriteFile(path, readBenchFile(b), 0o644); err != nil {
		b.Fatal(err)
	}
	st := testStatus()
	defer reportCPU(b)()
	for b.Loop() {
		b.StopTimer()
		m := loadBench(b, path)
		st.Restarts++
		b.StartTimer()
		if err := WriteStatus(path, m.Data, st); err != nil {
			b.Fatal(err)
		}
	}
}

func loadBench(b *testing.B, path string) *Manifest {
	b.Helper()
	m, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkWriteFile is the bare durable write of a manifest of the same
// size: temp file, fsync, rename, folder fsync.
func BenchmarkWriteFile(b *testing.B) {
	data, err := ReplaceStatus(readBenchFile(b), testStatus())
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "vm.yaml")
	defer reportCPU(b)()
	for b.Loop() {
		if err := WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func readBenchFile(b *testing.B) []byte {
	b.Helper()
	data, err := os.ReadFile("testdata/typical.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// reportCPU adds the process's CPU time per operation (user and system,
// all threads) as the metric cpu-ns/op. On a busy machine wall-clock
// ns/op includes time spent waiting for a core; CPU time does not.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkYAMLNodeParse is the floor under BenchmarkParse: yaml.v3 parsing
// the same manifest into a node tree and nothing else.
func BenchmarkYAMLNodeParse(b *testing.B) {
	data := readBenchFile(b)
	defer reportCPU(b)()
	for b.Loop() {
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteStatusRatio alternates a status write (as in
// BenchmarkWriteStatus) and a bare durable write of the same size in one
// loop, so that both see the same load on the machine. It reports the
// status write's rate as a fraction of the bare write's
// (status-rate/bare-rate; 1 means as fast).
func BenchmarkWriteStatusRatio(b *testing.B) {
	read := readBenchFile(b)
	dir := b.TempDir()
	path, barePath := filepath.Join(dir, "vm.yaml"), filepath.Join(dir, "bare.yaml")
	if err := os.WriteFile(path, read, 0o644); err != nil {
		b.Fatal(err)
	}
	bare, err := ReplaceStatus(read, testStatus())
	if err != nil {
		b.Fatal(err)
	}
	st := testStatus()
	var statusTime, bareTime time.Duration
	for b.Loop() {
		m := loadBench(b, path)
		st.Restarts++
		start := time.Now()
		if err := WriteStatus(path, m.Data, st); err != nil {
			b.Fatal(err)
		}
		statusTime += time.Since(start)
		start = time.Now()
		if err := WriteFile(barePath, bare, 0o644); err != nil {
			b.Fatal(err)
		}
		bareTime += time.Since(start)
	}
	b.ReportMetric(float64(bareTime)/float64(statusTime), "status-rate/bare-rate")
}
