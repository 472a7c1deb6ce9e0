package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// CorruptedFile is the name of the file, in StateRoot/vms/<name>/, that
// lists the boot ids of the VM's guests the hazard detector marked
// corrupted, one a line. It is separate from the state file because the
// detector in another process appends to it while this one runs the VM.
const CorruptedFile = "sim-corrupted"

// Operation is one lifecycle operation as the trace records it.
type Operation struct {
	Op        string    `json:"op"`
	VM        string    `json:"vm"`
	StateRoot string    `json:"stateRoot"`
	PID       int       `json:"pid"`             // the process that ran it
	Guest     string    `json:"guest,omitempty"` // the boot id of the guest it concerned
	Began     time.Time `json:"began"`           // on the clock of the Runtime that ran it
}

// Overlap is a lifecycle operation that began while another VM's operation
// was in flight.
type Overlap struct {
	InFlight Operation `json:"inFlight"`
	Began    Operation `json:"began"`
}

// String describes the overlap in one line.
func (o Overlap) String() string {
	return fmt.Sprintf("%s of %q (pid %d) began while %s of %q (pid %d) was in flight",
		o.Began.Op, o.Began.VM, o.Began.PID, o.InFlight.Op, o.InFlight.VM, o.InFlight.PID)
}

// record is one line of the trace file: the begin or end of an operation,
// or an overlap the detector found.
type record struct {
	Event     string     `json:"event"`
	ID        string     `json:"id,omitempty"`
	Operation *Operation `json:"operation,omitempty"`
	Overlap   *Overlap   `json:"overlap,omitempty"`
}

// The events of a trace record.
const (
	eventBegin   = "begin"
	eventEnd     = "end"
	eventOverlap = "overlap"
)

// operationSeq numbers the operations of this process, across Runtimes.
var operationSeq atomic.Uint64

// tracer is the hazard detector: it appends records to the shared trace
// file under flock(2) and follows what other processes append.
type tracer struct {
	mu       sync.Mutex // serializes this process's use of file and its lock
	file     *os.File
	offset   int64                // how far the trace has been read
	partial  bool                 // the trace ends in an unfinished line
	inFlight map[string]Operation // by record id
}

// openTracer opens the trace file at path, creating it if missing.
func openTracer(path string) (*tracer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("opening trace %q: %w", path, err)
	}
	f, err := openShared(path)
	if err != nil {
		return nil, fmt.Errorf("opening trace %q: %w", path, err)
	}
	return &tracer{file: f, inFlight: map[string]Operation{}}, nil
}

// openShared opens path for appending. An existing file is opened without
// O_CREAT, which Linux's fs.protected_regular refuses for another user's
// file in a sticky folder such as /tmp.
func openShared(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// close closes the trace file.
func (t *tracer) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.file.Close()
}

// begin records the start of op and returns its record id. It first looks
// at every operation in flight on the host: each one on another VM, by a
// process still alive, overlaps op, so it records the overlap and marks both
// guests corrupted.
func (t *tracer) begin(op Operation) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	unlock, err := t.lock()
	if err != nil {
		return "", err
	}
	defer unlock()

	if err := t.catchUp(); err != nil {
		return "", err
	}
	id := strconv.Itoa(op.PID) + "-" + strconv.FormatUint(operationSeq.Add(1), 10)
	var out bytes.Buffer
	for _, other := range t.overlapping(op) {
		ov := Overlap{InFlight: other, Began: op}
		if err := markOverlap(ov); err != nil {
			return "", err
		}
		appendRecord(&out, record{Event: eventOverlap, Overlap: &ov})
	}
	appendRecord(&out, record{Event: eventBegin, ID: id, Operation: &op})
	if err := t.write(out.Bytes()); err != nil {
		return "", err
	}
	t.inFlight[id] = op
	return id, nil
}

// end records the end of the operation begin returned id for.
func (t *tracer) end(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	unlock, err := t.lock()
	if err != nil {
		return err
	}
	defer unlock()

	if err := t.catchUp(); err != nil {
		return err
	}
	var out bytes.Buffer
	appendRecord(&out, record{Event: eventEnd, ID: id})
	if err := t.write(out.Bytes()); err != nil {
		return err
	}
	delete(t.inFlight, id)
	return nil
}

// overlapping returns the operations in flight on other VMs than op's, in
// the order they began. Operations of processes that died mid-operation
// are dropped.
func (t *tracer) overlapping(op Operation) []Operation {
	var found []Operation
	for id, other := range t.inFlight {
		if other.VM == op.VM && other.StateRoot == op.StateRoot {
			continue
		}
		if !processAlive(other.PID) {
			delete(t.inFlight, id)
			continue
		}
		found = append(found, other)
	}
	slices.SortFunc(found, func(a, b Operation) int { return a.Began.Compare(b.Began) })
	return found
}

// lock takes the trace file's flock and returns its release.
func (t *tracer) lock() (func(), error) {
	fd := int(t.file.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX)
		if err == nil {
			return func() { syscall.Flock(fd, syscall.LOCK_UN) }, nil
		}
		if !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("locking trace %q: %w", t.file.Name(), err)
		}
	}
}

// catchUp reads the records appended since the last call and updates the
// operations in flight. A trace that shrank was replaced and is read
// again from the start. The caller holds the flock.
func (t *tracer) catchUp() error {
	info, err := t.file.Stat()
	if err != nil {
		return fmt.Errorf("reading trace: %w", err)
	}
	if info.Size() < t.offset {
		t.offset = 0
		clear(t.inFlight)
	}
	if info.Size() == t.offset {
		t.partial = false
		return nil
	}
	buf := make([]byte, info.Size()-t.offset)
	if _, err := t.file.ReadAt(buf, t.offset); err != nil {
		return fmt.Errorf("reading trace %q: %w", t.file.Name(), err)
	}
	// A process that died mid-write can leave a line without its newline.
	// The line stays unread until a later write ends it, and then it fails
	// to parse and is skipped.
	complete := bytes.LastIndexByte(buf, '\n') + 1
	t.offset += int64(complete)
	t.partial = complete < len(buf)
	for line := range bytes.Lines(buf[:complete]) {
		t.apply(line)
	}
	return nil
}

// apply updates the operations in flight with one trace line. Lines that do
// not parse are skipped.
func (t *tracer) apply(line []byte) {
	var rec record
	if json.Unmarshal(line, &rec) != nil {
		return
	}
	switch {
	case rec.Event == eventBegin && rec.Operation != nil:
		t.inFlight[rec.ID] = *rec.Operation
	case rec.Event == eventEnd:
		delete(t.inFlight, rec.ID)
	}
}

// write appends out to the trace in one write, so that a record is never
// interleaved with another process's. The caller holds the flock and has
// caught up, so out lands at the offset read so far, and the offset moves
// past it. The caller applies out to the operations in flight itself.
// Where a process that died mid-write left a line unfinished, a leading
// newline ends it and the offset stays, so catchUp reads out back.
func (t *tracer) write(out []byte) error {
	if t.partial {
		out = append([]byte{'\n'}, out...)
	}
	if _, err := t.file.Write(out); err != nil {
		return fmt.Errorf("writing trace %q: %w", t.file.Name(), err)
	}
	if !t.partial {
		t.offset += int64(len(out))
	}
	return nil
}

// appendRecord appends rec and a newline to out.
func appendRecord(out *bytes.Buffer, rec record) {
	data, _ := json.Marshal(rec) // a record has nothing json cannot encode
	out.Write(data)
	out.WriteByte('\n')
}

// markOverlap marks the guests of both operations of ov corrupted.
func markOverlap(ov Overlap) error {
	if err := markCorrupted(ov.InFlight); err != nil {
		return err
	}
	return markCorrupted(ov.Began)
}

// markCorrupted appends the operation's guest to its VM's corrupted list.
func markCorrupted(op Operation) error {
	dir := filepath.Join(op.StateRoot, "vms", op.VM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("marking %q corrupted: %w", op.VM, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, CorruptedFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("marking %q corrupted: %w", op.VM, err)
	}
	guest := op.Guest
	if guest == "" {
		guest = "unknown"
	}
	_, err = f.WriteString(guest + "\n")
	return errors.Join(err, f.Close())
}

// processAlive reports whether a process with the pid exists.
func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Overlaps returns the overlaps recorded in the trace file, in the order
// they were found. A missing trace file has none.
func Overlaps(traceFile string) ([]Overlap, error) {
	f, err := os.Open(traceFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading trace: %w", err)
	}
	defer f.Close()

	var found []Overlap
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var rec record
		if json.Unmarshal(scanner.Bytes(), &rec) == nil && rec.Overlap != nil {
			found = append(found, *rec.Overlap)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading trace %q: %w", traceFile, err)
	}
	return found, nil
}

// Corrupted reports whether the hazard detector ever marked a guest of the
// VM name in stateRoot corrupted, whether or not that guest still runs.
func Corrupted(stateRoot, name string) (bool, error) {
	guests, err := corruptedGuests(filepath.Join(stateRoot, "vms", name))
	return len(guests) > 0, err
}

// corruptedGuests returns the boot ids of the guests in the VM folder dir
// that were marked corrupted.
func corruptedGuests(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, CorruptedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading corruption marks: %w", err)
	}
	return splitLines(data), nil
}

// splitLines returns the non-empty lines of data.
func splitLines(data []byte) []string {
	var lines []string
	for line := range bytes.Lines(data) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			lines = append(lines, string(line))
		}
	}
	return lines
}
