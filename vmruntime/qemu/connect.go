package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
)

// Connect dials the agent's channel, performs the boot handshake with the
// guest configuration of m, and keeps the connection for Agent. It closes
// an earlier connection first, because QEMU's socket serves one client at a
// time. It retries the dial until ctx ends, and the handshake resends its
// hello while the guest boots. A VM without an agent port fails with
// vmruntime.ErrNoAgent.
func (r *Runtime) Connect(ctx context.Context, m *vmruntime.Machine) (vmruntime.Hello, error) {
	if m.AgentPort == 0 {
		return vmruntime.Hello{}, fmt.Errorf("connecting to the agent of %q: %w", m.Name, vmruntime.ErrNoAgent)
	}
	v, err := r.running(m.Name)
	if err != nil {
		return vmruntime.Hello{}, err
	}
	v.setAgent(nil)
	conn, err := r.dialAgent(ctx, m)
	if err != nil {
		return vmruntime.Hello{}, fmt.Errorf("connecting to the agent of %q: %w", m.Name, err)
	}
	client := agent.NewClient(conn)
	hello, err := client.Handshake(ctx, m.GuestConfig("9p"))
	if err != nil {
		client.Close()
		return vmruntime.Hello{}, fmt.Errorf("agent handshake with %q: %w", m.Name, err)
	}
	v.setAgent(client)
	return hello, nil
}

// dialAgent dials vsock or the virtio-serial socket until it connects.
func (r *Runtime) dialAgent(ctx context.Context, m *vmruntime.Machine) (io.ReadWriteCloser, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		conn, err := r.dialAgentOnce(ctx, m)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// dialAgentOnce dials the agent's channel once.
// NOTE: the vsock path has not run against a real guest, because the hosts
// this was tested on have no /dev/vhost-vsock.
func (r *Runtime) dialAgentOnce(ctx context.Context, m *vmruntime.Machine) (io.ReadWriteCloser, error) {
	if r.vsock {
		return vsock.Dial(guestCID(m.Name), m.AgentPort, nil)
	}
	var dialer net.Dialer
	return dialer.DialContext(ctx, "unix", filepath.Join(m.StateDir, agentSocket))
}

// Agent returns the connection Connect made, or vmruntime.ErrNoAgent.
func (r *Runtime) Agent(name string) (vmruntime.Agent, error) {
	v := r.lookup(name)
	if v == nil {
		return nil, fmt.Errorf("agent of %q: %w", name, vmruntime.ErrNoAgent)
	}
	conn := v.currentAgent()
	if conn == nil {
		return nil, fmt.Errorf("agent of %q: %w", name, vmruntime.ErrNoAgent)
	}
	return conn, nil
}
