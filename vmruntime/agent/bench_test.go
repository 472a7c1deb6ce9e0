package agent

import (
	"testing"
	"time"
)

// BenchmarkPing measures one request round trip through the client and
// Serve over net.Pipe, the protocol's own cost without a guest.
func BenchmarkPing(b *testing.B) {
	c, _ := startAgent(b, newFakeHandler(), nil)
	ctx := withTimeout(b, time.Minute)
	for b.Loop() {
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecOutput measures an exec whose command writes 1 MiB to
// stdout, which the agent returns base64-encoded in one line.
func BenchmarkExecOutput(b *testing.B) {
	c, _ := startAgent(b, newFakeHandler(), nil)
	ctx := withTimeout(b, time.Minute)
	argv := []string{"head", "-c", "1048576", "/dev/zero"}
	b.SetBytes(1 << 20)
	for b.Loop() {
		res, err := c.Exec(ctx, argv, nil)
		if err != nil || len(res.Stdout) != 1<<20 {
			b.Fatalf("Exec: %d bytes, err %v", len(res.Stdout), err)
		}
	}
}
