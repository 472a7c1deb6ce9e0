//go:build darwin

package main

import (
	"io"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
	"github.com/vmlet/vmlet/vmruntime/vz"
)

// newVZRuntime returns the vz backend, whose helpers are this binary's
// hidden vmm command and keep their state under stateRoot.
func newVZRuntime(stateRoot string) (vmruntime.Runtime, error) {
	return vz.New(stateRoot, vz.Options{NewAgent: newAgentClient})
}

func newAgentClient(conn io.ReadWriteCloser) vz.AgentClient {
	return agent.NewClient(conn)
}

// vzPreferred reports whether --runtime auto picks vz: on macOS 14 or
// later on Apple silicon, where vz can save and restore.
func vzPreferred() bool { return vz.SaveRestoreSupported() }
