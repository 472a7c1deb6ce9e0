package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/vmlet/vmlet/vmruntime"
	"github.com/vmlet/vmlet/vmruntime/agent"
)

// Polling intervals of the serial channel.
const (
	// portPoll is how often the agent looks for the virtio-serial port
	// while it has not appeared yet.
	portPoll = 50 * time.Millisecond
	// hangupPoll is how often the agent reads the port again while the
	// host end is closed, when every read returns end of file at once.
	hangupPoll = 20 * time.Millisecond
	// servePause is the wait before serving again after a failure.
	servePause = 500 * time.Millisecond
)

// serveChannel serves h on ch until ctx ends.
func serveChannel(ctx context.Context, ch channel, h agent.Handler) error {
	if ch.Serial {
		return serveSerial(ctx, h)
	}
	return serveVsock(ctx, ch.VsockPort, h)
}

// serveSerial serves h on the virtio-serial port. A host that goes away
// does not close the port, so the agent keeps reading it and opens it again
// only after an error.
func serveSerial(ctx context.Context, h agent.Handler) error {
	log := logr.FromContextOrDiscard(ctx)
	for ctx.Err() == nil {
		dev, err := waitForPort(ctx, vmruntime.AgentSerialPort)
		if err != nil {
			return err
		}
		log.Info("Serving", "device", dev)
		err = serveDevice(ctx, dev, h)
		log.Error(err, "Serving ended, opening the port again", "device", dev)
		sleep(ctx, servePause)
	}
	return ctx.Err()
}

// serveDevice opens dev and serves h on it until reading or writing fails.
func serveDevice(ctx context.Context, dev string, h agent.Handler) error {
	// A blocking descriptor: Go's poller is not needed for one port, and
	// blocking reads and writes keep the port's hangup handling simple.
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", dev, err)
	}
	f := os.NewFile(uintptr(fd), dev)
	defer f.Close()
	port := struct {
		io.Reader
		io.Writer
	}{&hangupReader{ctx: ctx, r: f}, f}
	return agent.Serve(ctx, port, h)
}

// hangupReader reads a virtio-serial port across host disconnects. While
// no host is connected, a read of the port returns end of file at once, so
// hangupReader waits and reads again instead of ending the stream.
type hangupReader struct {
	ctx context.Context
	r   io.Reader
}

func (h *hangupReader) Read(p []byte) (int, error) {
	for {
		n, err := h.r.Read(p)
		if n > 0 || !errors.Is(err, io.EOF) {
			return n, err
		}
		if !sleep(h.ctx, hangupPoll) {
			return 0, h.ctx.Err()
		}
	}
}

// waitForPort returns the device of the virtio-serial port with the given
// name, waiting until it appears: ports show up only after the host side
// announces them.
func waitForPort(ctx context.Context, name string) (string, error) {
	for {
		dev, err := findPort(name)
		if err == nil {
			return dev, nil
		}
		if !sleep(ctx, portPoll) {
			return "", fmt.Errorf("waiting for virtio-serial port %q: %w", name, ctx.Err())
		}
	}
}

// findPort returns /dev/vportNpM for the port whose
// /sys/class/virtio-ports/vportNpM/name is name.
func findPort(name string) (string, error) {
	paths, err := filepath.Glob("/sys/class/virtio-ports/*/name")
	if err != nil {
		return "", err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(data)) == name {
			dev := "/dev/" + filepath.Base(filepath.Dir(p))
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
	}
	return "", fmt.Errorf("virtio-serial port %q: %w", name, os.ErrNotExist)
}

// serveVsock accepts connections on the vsock port and serves each in a
// goroutine of its own, so that a connection left half-open by a restore
// does not keep a new one waiting. The handler serializes the requests.
// NOTE: no test runs this path: the test hosts have no /dev/vhost-vsock
// for QEMU and no vsock loopback transport.
func serveVsock(ctx context.Context, port uint32, h agent.Handler) error {
	l, err := listenVsock(ctx, port)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	logr.FromContextOrDiscard(ctx).Info("Serving", "vsockPort", port)
	for {
		conn, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accepting on vsock port %d: %w", port, err)
		}
		go serveConn(ctx, conn, h)
	}
}

// listenVsock listens on port, retrying while the vsock transport module
// is still loading.
func listenVsock(ctx context.Context, port uint32) (*vsock.Listener, error) {
	for {
		l, err := vsock.Listen(port, nil)
		if err == nil {
			return l, nil
		}
		if !sleep(ctx, servePause) {
			return nil, fmt.Errorf("listening on vsock port %d: %w", port, err)
		}
	}
}

// serveConn serves h on one vsock connection until it fails.
func serveConn(ctx context.Context, conn net.Conn, h agent.Handler) {
	defer conn.Close()
	err := agent.Serve(ctx, conn, h)
	logr.FromContextOrDiscard(ctx).V(1).Info("Connection ended", "remote", conn.RemoteAddr().String(), "reason", err.Error())
}

// sleep waits for d and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
