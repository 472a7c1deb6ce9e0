package controller

import (
	"os"
	"testing"
)

// TestMain removes the benchmark fixtures shared across benchmarks, which
// no single benchmark's cleanup may remove.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range benchFixtures {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}
