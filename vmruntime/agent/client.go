package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmlet/vmlet/vmruntime"
)

// Intervals between hello attempts during Handshake. The first retry comes
// quickly because after a restore the agent is already running. Later ones
// back off, so a slow boot does not fill the channel with hellos.
const (
	helloFirstRetry = 100 * time.Millisecond
	helloMaxRetry   = time.Second
)

// Client speaks the agent protocol over one connection; it implements
// vmruntime.Agent. Its methods are safe for concurrent use: requests are
// sent one at a time, each waiting for its response, and a caller waiting
// its turn gives up when its context ends.
type Client struct {
	conn io.ReadWriteCloser
	// turn holds one token; a request takes it for its whole exchange.
	turn   chan struct{}
	nextID atomic.Uint64
	// resync is set when a write failed part way, so the next write starts
	// with a newline. It is guarded by turn.
	resync bool

	mu      sync.Mutex
	pending map[uint64]chan Response

	done      chan struct{} // closed when readLoop returns
	readErr   error         // the read error that ended readLoop, set before done closes
	closeOnce sync.Once
	closeErr  error
}

var _ vmruntime.Agent = (*Client)(nil)

// NewClient returns a Client that owns conn and starts reading responses
// from it. Request ids start at a random number, so that a response left in
// the channel by an earlier client, such as one from before a snapshot
// restore, does not match a request of this one. Writes are bounded by the
// request's context only when conn has a SetWriteDeadline method, as a
// net.Conn does. Call Close to release conn.
func NewClient(conn io.ReadWriteCloser) *Client {
	c := &Client{
		conn:    conn,
		turn:    make(chan struct{}, 1),
		pending: make(map[uint64]chan Response),
		done:    make(chan struct{}),
	}
	c.turn <- struct{}{}
	c.nextID.Store(rand.Uint64() >> 12)
	go c.readLoop()
	return c
}

// Close closes the connection and waits for the reading goroutine to end.
// Requests in flight fail with ErrClosed. It may be called more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.conn.Close()
		<-c.done
	})
	return c.closeErr
}

// Handshake sends hello until the agent responds, then sends cfg and waits
// for the agent to apply it (format blank disks, mount disks and shares).
// After a restore the channel may be half-open or hold stale bytes, so each
// hello gets a fresh request id and is sent again, with growing intervals up
// to a second, until an answer to one of them arrives. Handshake is bounded
// by ctx and returns the agent's hello.
func (c *Client) Handshake(ctx context.Context, cfg vmruntime.GuestConfig) (vmruntime.Hello, error) {
	if err := c.acquire(ctx); err != nil {
		return vmruntime.Hello{}, fmt.Errorf("agent %s: %w", OpHello, err)
	}
	defer c.release()

	hello, err := c.hello(ctx)
	if err != nil {
		return vmruntime.Hello{}, err
	}
	if _, err := c.exchange(ctx, Request{Op: OpConfigure, Config: &cfg}); err != nil {
		return vmruntime.Hello{}, err
	}
	return hello, nil
}

// Ping checks that the agent responds.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpPing})
	return err
}

// Quiesce requests the agent to sync, flush the block devices and freeze the
// mounted filesystems. Writes in the guest block until Thaw.
func (c *Client) Quiesce(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpQuiesce})
	return err
}

// Thaw requests the agent to unfreeze the filesystems Quiesce froze.
func (c *Client) Thaw(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpThaw})
	return err
}

// Shutdown requests the agent to sync, unmount and power the guest off. The
// agent responds before it powers off, but the response can still be lost
// when the VM process ends first, so callers should also watch the process.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpShutdown})
	return err
}

// Exec runs argv in the guest with stdin as its standard input and returns
// its exit code and output, each stream cut at MaxOutput bytes. When ctx has
// a deadline, the agent kills the command a little before it, so the output
// so far still arrives. The result then comes with an error.
func (c *Client) Exec(ctx context.Context, argv []string, stdin []byte) (vmruntime.ExecResult, error) {
	req, err := newExecRequest(ctx, argv, stdin)
	if err != nil {
		return vmruntime.ExecResult{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpExec, Exec: req})
	if resp.Exec != nil {
		return *resp.Exec, err
	}
	if err == nil {
		err = fmt.Errorf("agent %s: response has no result", OpExec)
	}
	return vmruntime.ExecResult{}, err
}

// newExecRequest checks argv and stdin and derives the command's timeout
// from ctx's deadline, less a tenth (at most a second) for the response.
func newExecRequest(ctx context.Context, argv []string, stdin []byte) (*ExecRequest, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("agent %s: empty argv", OpExec)
	}
	if len(stdin) > MaxStdin {
		return nil, fmt.Errorf("agent %s: stdin of %d bytes is over the %d byte limit",
			OpExec, len(stdin), MaxStdin)
	}
	req := &ExecRequest{Argv: argv, Stdin: stdin}
	deadline, ok := ctx.Deadline()
	if !ok {
		return req, nil
	}
	remaining := time.Until(deadline)
	timeout := remaining - min(remaining/10, time.Second)
	req.TimeoutMillis = max(timeout.Milliseconds(), 1)
	return req, nil
}

// call sends req in its turn and waits for the response.
func (c *Client) call(ctx context.Context, req Request) (Response, error) {
	if err := c.acquire(ctx); err != nil {
		return Response{}, fmt.Errorf("agent %s: %w", req.Op, err)
	}
	defer c.release()
	return c.exchange(ctx, req)
}

// exchange sends req with a new id and waits for its response. The caller
// holds the turn.
func (c *Client) exchange(ctx context.Context, req Request) (Response, error) {
	answers := make(chan Response, 1)
	req.ID = c.register(answers)
	defer c.unregister(req.ID)

	if err := c.send(ctx, req, false); err != nil {
		return Response{}, err
	}
	resp, err := c.await(ctx, answers, nil)
	if err != nil {
		return Response{}, fmt.Errorf("agent %s: %w", req.Op, err)
	}
	return resp, responseError(req.Op, resp)
}

// hello sends hello requests until one is answered. The caller holds the
// turn.
func (c *Client) hello(ctx context.Context) (vmruntime.Hello, error) {
	answers := make(chan Response, 1)
	var ids []uint64
	defer func() {
		for _, id := range ids {
			c.unregister(id)
		}
	}()
	interval := helloFirstRetry
	for {
		id := c.register(answers)
		ids = append(ids, id)
		if err := c.send(ctx, Request{ID: id, Op: OpHello}, true); err != nil {
			return vmruntime.Hello{}, err
		}
		retry := time.NewTimer(interval)
		resp, err := c.await(ctx, answers, retry.C)
		retry.Stop()
		switch {
		case errors.Is(err, errRetry):
			interval = min(2*interval, helloMaxRetry)
			continue
		case err != nil:
			return vmruntime.Hello{}, fmt.Errorf("agent %s: %w", OpHello, err)
		}
		return helloOf(resp)
	}
}

// helloOf returns the hello a response carries.
func helloOf(resp Response) (vmruntime.Hello, error) {
	if err := responseError(OpHello, resp); err != nil {
		return vmruntime.Hello{}, err
	}
	if resp.Hello == nil {
		return vmruntime.Hello{}, fmt.Errorf("agent %s: response has no hello", OpHello)
	}
	return *resp.Hello, nil
}

// responseError returns the error the agent reported in resp, if any.
func responseError(op string, resp Response) error {
	if resp.Error == "" {
		return nil
	}
	return &RemoteError{Op: op, Message: resp.Error}
}

// errRetry reports to hello that its retry interval passed without a
// response.
var errRetry = errors.New("no response yet")

// await waits for a response on answers. It fails when ctx ends, when the
// connection breaks, and with errRetry when retry fires.
func (c *Client) await(ctx context.Context, answers <-chan Response, retry <-chan time.Time) (Response, error) {
	select {
	case resp := <-answers:
		return resp, nil
	case <-retry:
		return Response{}, errRetry
	case <-c.done:
		return Response{}, fmt.Errorf("%w: %w", ErrClosed, c.readErr)
	case <-ctx.Done():
		return Response{}, context.Cause(ctx)
	}
}

// acquire waits for the turn to send a request. It fails at once when the
// connection is closed.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case <-c.done:
		return fmt.Errorf("%w: %w", ErrClosed, c.readErr)
	default:
	}
	select {
	case <-c.turn:
		return nil
	case <-c.done:
		return fmt.Errorf("%w: %w", ErrClosed, c.readErr)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *Client) release() { c.turn <- struct{}{} }

// register returns a new request id whose response goes to answers.
func (c *Client) register(answers chan Response) uint64 {
	id := c.nextID.Add(1)
	c.mu.Lock()
	c.pending[id] = answers
	c.mu.Unlock()
	return id
}

func (c *Client) unregister(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// deliver hands resp to the request waiting for its id. A response with no
// waiting request, or a second response to the same channel, is dropped.
func (c *Client) deliver(resp Response) {
	c.mu.Lock()
	answers, ok := c.pending[resp.ID]
	c.mu.Unlock()
	if !ok {
		return
	}
	select {
	case answers <- resp:
	default:
	}
}

// send writes req as one line. With lead, or after a write that failed part
// way, the line starts with a newline that ends any torn line before it. The
// caller holds the turn.
func (c *Client) send(ctx context.Context, req Request, lead bool) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("agent %s: encoding request: %w", req.Op, err)
	}
	if lead || c.resync {
		data = append([]byte("\n"), data...)
	}
	data = append(data, '\n')

	n, err := c.write(ctx, data)
	c.resync = n > 0 && n < len(data)
	select {
	case <-c.done:
		err = errors.Join(err, ErrClosed)
	default:
	}
	if err != nil {
		return fmt.Errorf("agent %s: writing request: %w", req.Op, err)
	}
	return nil
}

// writeDeadliner is the part of net.Conn that bounds a write.
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// write writes data to the connection, bounded by ctx when the connection
// supports write deadlines.
func (c *Client) write(ctx context.Context, data []byte) (int, error) {
	wd, ok := c.conn.(writeDeadliner)
	if !ok {
		return c.conn.Write(data)
	}
	// Only the context sets a deadline, so that a write that times out
	// reports the context's error.
	if err := wd.SetWriteDeadline(time.Time{}); err != nil {
		return 0, err
	}
	expired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = wd.SetWriteDeadline(time.Unix(1, 0))
		close(expired)
	})
	n, err := c.conn.Write(data)
	if !stop() {
		// Wait until the past deadline is set, so it cannot land on the
		// next request's write.
		<-expired
		err = errors.Join(err, context.Cause(ctx))
	}
	return n, err
}

// readLoop reads responses until the connection fails and hands each to the
// request waiting for it. Lines that do not parse are stale or torn bytes
// and are skipped.
func (c *Client) readLoop() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		line, err := readLine(r, MaxLine)
		if errors.Is(err, ErrLineTooLong) {
			continue
		}
		if err != nil {
			c.readErr = err
			return
		}
		var resp Response
		if json.Unmarshal(line, &resp) != nil {
			continue
		}
		c.deliver(resp)
	}
}
