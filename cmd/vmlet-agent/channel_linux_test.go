package main

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// scriptedReader returns its chunks one per Read, with io.EOF for an empty
// chunk, the way a virtio-serial port reads while its host end is closed.
type scriptedReader struct {
	chunks []string
	reads  int
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	s.reads++
	if len(s.chunks) == 0 {
		return 0, io.ErrClosedPipe
	}
	chunk := s.chunks[0]
	s.chunks = s.chunks[1:]
	if chunk == "" {
		return 0, io.EOF
	}
	return copy(p, chunk), nil
}

func TestHangupReaderReadsAcrossEOF(t *testing.T) {
	src := &scriptedReader{chunks: []string{"", "", "hello\n", "", "ping\n"}}
	r := &hangupReader{ctx: t.Context(), r: src}
	buf := make([]byte, 64)

	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello\n" {
		t.Fatalf("first Read = %q, %v; want %q after two hangups", buf[:n], err, "hello\n")
	}
	n, err = r.Read(buf)
	if err != nil || string(buf[:n]) != "ping\n" {
		t.Fatalf("second Read = %q, %v; want %q", buf[:n], err, "ping\n")
	}
	if src.reads != 5 {
		t.Errorf("underlying reads = %d, want 5", src.reads)
	}
	if _, err := r.Read(buf); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after the port failed: err = %v, want %v", err, io.ErrClosedPipe)
	}
}

func TestHangupReaderStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	src := &scriptedReader{chunks: make([]string, 1000)}
	r := &hangupReader{ctx: ctx, r: src}

	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read while the host stays away: err = %v, want %v", err, context.DeadlineExceeded)
	}
}
