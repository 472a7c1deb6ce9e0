package vz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// agentRetryDelay separates the daemon's handshake attempts.
const agentRetryDelay = 250 * time.Millisecond

// agentConn is a live agent client and the relayed connection under it.
type agentConn struct {
	client AgentClient
	conn   *bufferedConn
}

// Connect connects to m's agent through the helper's vsock relay and runs
// the boot handshake, which sends m's guest configuration. It retries until
// ctx ends, because the first connection after a restore can be half-open.
// It does not thaw the guest after a restore: the caller does.
func (r *Runtime) Connect(ctx context.Context, m *vmruntime.Machine) (vmruntime.Hello, error) {
	v, err := r.running(m.Name)
	if err != nil {
		return vmruntime.Hello{}, err
	}
	if m.AgentPort == 0 {
		return vmruntime.Hello{}, fmt.Errorf("%w: vm %q has no agent port", vmruntime.ErrNoAgent, m.Name)
	}
	if r.opts.NewAgent == nil {
		return vmruntime.Hello{}, errors.New("vz runtime has no agent client configured")
	}
	return r.handshakeUntil(ctx, v, m)
}

// handshakeUntil retries handshake until it succeeds, the helper ends or
// ctx ends.
func (r *Runtime) handshakeUntil(ctx context.Context, v *vm, m *vmruntime.Machine) (vmruntime.Hello, error) {
	cfg := m.GuestConfig("virtiofs")
	for {
		hello, err := r.handshake(ctx, v, m.AgentPort, cfg)
		if err == nil {
			return hello, nil
		}
		if v.exited() {
			return hello, fmt.Errorf("agent of %q: machine stopped: %s", m.Name, v.exitReason())
		}
		select {
		case <-ctx.Done():
			return hello, fmt.Errorf("waiting for agent of %q: %w (last error: %v)", m.Name, ctx.Err(), err)
		case <-time.After(agentRetryDelay):
		}
	}
}

// handshake makes one attempt: the helper dials the guest port, retrying
// while ctx lasts, then the handshake itself is bounded by
// Options.AgentAttemptTimeout.
func (r *Runtime) handshake(ctx context.Context, v *vm, port uint32, cfg vmruntime.GuestConfig) (vmruntime.Hello, error) {
	req := request{Op: opAgent, Port: port, Timeout: remaining(ctx)}
	conn, _, err := v.open(ctx, req)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return vmruntime.Hello{}, err
	}
	client := r.opts.NewAgent(conn)
	actx, cancel := context.WithTimeout(ctx, r.opts.AgentAttemptTimeout)
	defer cancel()
	hello, err := client.Handshake(actx, cfg)
	if err != nil {
		(&agentConn{client: client, conn: conn}).close()
		return hello, fmt.Errorf("agent handshake of %q: %w", v.name, err)
	}
	v.setAgent(&agentConn{client: client, conn: conn})
	return hello, nil
}

// remaining returns the time left before ctx's deadline, or zero when it
// has none.
func remaining(ctx context.Context) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return time.Until(deadline)
}

// Agent returns the agent connection Connect established, or an error
// wrapping vmruntime.ErrNoAgent.
func (r *Runtime) Agent(name string) (vmruntime.Agent, error) {
	v := r.lookup(name)
	if v == nil {
		return nil, fmt.Errorf("%w: vm %q is not running", vmruntime.ErrNoAgent, name)
	}
	a := v.currentAgent()
	if a == nil {
		return nil, fmt.Errorf("%w: vm %q", vmruntime.ErrNoAgent, name)
	}
	return a.client, nil
}

func (v *vm) currentAgent() *agentConn {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.agent
}

// setAgent replaces v's agent connection and closes the one before.
func (v *vm) setAgent(a *agentConn) {
	v.mu.Lock()
	old := v.agent
	v.agent = a
	v.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// close closes the client, which closes the connection under it, or the
// connection alone when the client has no Close.
func (a *agentConn) close() {
	if c, ok := a.client.(io.Closer); ok {
		_ = c.Close()
		return
	}
	a.conn.Close()
}

// kernelCmdline returns m's kernel command line: the virtio console first,
// then the agent's channel, then the manifest's own arguments.
func kernelCmdline(m *vmruntime.Machine) string {
	line := "console=hvc0"
	if m.AgentPort != 0 {
		line += " vmlet.agent=vsock:" + strconv.FormatUint(uint64(m.AgentPort), 10)
	}
	if m.Cmdline != "" {
		line += " " + m.Cmdline
	}
	return line
}
