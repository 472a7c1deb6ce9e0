package vz

import (
	"testing"
)

// BenchmarkObserve measures one state request to a running helper over
// its unix socket.
func BenchmarkObserve(b *testing.B) {
	root := newStateRoot(b)
	r := newTestRuntime(b, root)
	m := newMachine(b, root, "observed")
	if err := r.Boot(b.Context(), m); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Kill(b.Context(), m.Name) })

	for b.Loop() {
		if _, err := r.Observe(b.Context(), m.Name); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBootKill measures starting a fake helper, waiting for its
// socket and ending it: the cost of the helper process around VZ's own.
func BenchmarkBootKill(b *testing.B) {
	root := newStateRoot(b)
	r := newTestRuntime(b, root)
	m := newMachine(b, root, "cycled")
	for b.Loop() {
		if err := r.Boot(b.Context(), m); err != nil {
			b.Fatal(err)
		}
		if err := r.Kill(b.Context(), m.Name); err != nil {
			b.Fatal(err)
		}
	}
}
