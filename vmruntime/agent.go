package vmruntime

import "context"

// Hello is the guest agent's boot handshake.
type Hello struct {
	Version string `json:"version"`
	// BootID is the guest kernel's boot id. It stays the same across a
	// suspend and resume and changes on every cold boot.
	BootID string `json:"bootId"`
}

// ExecResult is the outcome of a command run in the guest.
type ExecResult struct {
	ExitCode int    `json:"exitCode"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	// Truncated is true when the output passed the agent's bound and was cut.
	Truncated bool `json:"truncated,omitempty"`
}

// Agent is a live connection to a guest agent. Its methods are safe for
// concurrent use: requests are serialized on the one channel.
type Agent interface {
	Ping(ctx context.Context) error
	// Quiesce syncs, flushes block devices and freezes mounted filesystems.
	Quiesce(ctx context.Context) error
	// Thaw undoes Quiesce.
	Thaw(ctx context.Context) error
	// Shutdown requests that the guest power off.
	Shutdown(ctx context.Context) error
	Exec(ctx context.Context, argv []string, stdin []byte) (ExecResult, error)
}
