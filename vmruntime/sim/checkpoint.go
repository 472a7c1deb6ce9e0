package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmlet/vmlet/vmruntime"
)

// checkpointMagic is the first line of every checkpoint the sim writes.
const checkpointMagic = "vmlet-sim-checkpoint 1"

// checkpointHeader is the second line of a checkpoint; the guest's memory
// follows on the third.
type checkpointHeader struct {
	VM          string `json:"vm"`
	BootID      string `json:"bootId"`
	Counter     uint64 `json:"memoryCounter"`
	MachineHash string `json:"machineHash,omitempty"`
}

// Suspendable returns nil: the sim can save every machine.
func (r *Runtime) Suspendable(m *vmruntime.Machine) error { return nil }

// CanRestore returns nil for a checkpoint this version of the sim saved,
// else an error wrapping ErrCheckpointIncompatible.
func (r *Runtime) CanRestore(info vmruntime.CheckpointInfo) error {
	if info.Runtime != Version {
		return fmt.Errorf("checkpoint saved by %q, this is %q: %w",
			info.Runtime, Version, vmruntime.ErrCheckpointIncompatible)
	}
	return nil
}

// Save writes the paused VM's guest memory to a new file at path, mode
// 0600, and fsyncs it. It fails with ErrInvalidState unless the VM is
// paused, and when path exists. The VM stays paused. An injected save
// failure leaves a truncated file at path.
func (r *Runtime) Save(ctx context.Context, m *vmruntime.Machine, path string) (vmruntime.CheckpointInfo, error) {
	if m == nil {
		return vmruntime.CheckpointInfo{}, errors.New("saving: missing machine")
	}
	var info vmruntime.CheckpointInfo
	err := r.operate(ctx, &operation{
		op: "Save", name: m.Name, latency: r.opts.Latency.Save,
		check: requireState(vmruntime.StatePaused),
		apply: func(v *vm) error {
			if err := checkState(v, vmruntime.StatePaused); err != nil {
				return err
			}
			var err error
			info, err = r.writeCheckpoint(v, path)
			return err
		},
	})
	return info, err
}

// writeCheckpoint writes v's guest to path. The caller holds v.mu.
func (r *Runtime) writeCheckpoint(v *vm, path string) (vmruntime.CheckpointInfo, error) {
	data, err := encodeCheckpoint(v)
	if err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	if r.takeFault(v.name, FaultSaveFail) {
		data = data[:len(data)/2]
		err = fmt.Errorf("writing checkpoint: %w", ErrInjected)
	}
	f, openErr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if openErr != nil {
		return vmruntime.CheckpointInfo{}, fmt.Errorf("writing checkpoint: %w", openErr)
	}
	_, writeErr := f.Write(data)
	writeErr = errors.Join(writeErr, f.Sync(), f.Close())
	if err := errors.Join(err, writeErr); err != nil {
		return vmruntime.CheckpointInfo{}, err
	}
	return vmruntime.CheckpointInfo{Bytes: int64(len(data)), Runtime: Version}, nil
}

// encodeCheckpoint returns the checkpoint of v's guest.
func encodeCheckpoint(v *vm) ([]byte, error) {
	header := checkpointHeader{
		VM: v.name, BootID: v.state.Guest.BootID,
		Counter: v.state.Guest.Counter, MachineHash: v.state.MachineHash,
	}
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic + "\n")
	enc := json.NewEncoder(&buf)
	if err := errors.Join(enc.Encode(header), enc.Encode(v.state.Guest)); err != nil {
		return nil, fmt.Errorf("encoding checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// Restore starts the stopped VM from the checkpoint at path with the guest
// memory and boot id it saved. The VM comes back paused; the caller resumes
// it and then calls Connect. It fails with ErrInvalidState when the VM's
// process exists, with ErrCheckpointIncompatible when info or the file is
// not a checkpoint of this machine, and when the file is damaged.
func (r *Runtime) Restore(ctx context.Context, m *vmruntime.Machine, path string, info vmruntime.CheckpointInfo) error {
	if m == nil {
		return errors.New("restoring: missing machine")
	}
	if err := r.CanRestore(info); err != nil {
		return fmt.Errorf("restoring %q: %w", m.Name, err)
	}
	header, saved, err := readCheckpoint(path, m)
	if err != nil {
		return fmt.Errorf("restoring %q: %w", m.Name, err)
	}
	return r.operate(ctx, &operation{
		op: "Restore", name: m.Name, latency: r.opts.Latency.Restore, guest: header.BootID,
		check: requireState(vmruntime.StateStopped),
		apply: func(v *vm) error {
			if r.takeFault(v.name, FaultRestoreFail) {
				return fmt.Errorf("reading checkpoint: %w", ErrInjected)
			}
			v.state = vmState{
				State: vmruntime.StatePaused, PID: newPID(),
				MachineHash: m.MachineHash, Guest: saved,
			}
			return nil
		},
	})
}

// readCheckpoint reads the checkpoint at path and checks that it was saved
// from m.
func readCheckpoint(path string, m *vmruntime.Machine) (checkpointHeader, guest, error) {
	var header checkpointHeader
	var saved guest
	f, err := os.Open(path)
	if err != nil {
		return header, saved, fmt.Errorf("reading checkpoint: %w", err)
	}
	defer f.Close()

	if err := decodeCheckpoint(bufio.NewReader(f), &header, &saved); err != nil {
		return header, saved, fmt.Errorf("reading checkpoint %q: %w", path, err)
	}
	if header.VM != m.Name {
		return header, saved, fmt.Errorf("checkpoint %q is of vm %q: %w",
			path, header.VM, vmruntime.ErrCheckpointIncompatible)
	}
	if m.MachineHash != "" && header.MachineHash != "" && header.MachineHash != m.MachineHash {
		return header, saved, fmt.Errorf("checkpoint %q is of machine %s, not %s: %w",
			path, header.MachineHash, m.MachineHash, vmruntime.ErrCheckpointIncompatible)
	}
	return header, saved, nil
}

// decodeCheckpoint parses a checkpoint's three lines.
func decodeCheckpoint(r *bufio.Reader, header *checkpointHeader, saved *guest) error {
	magic, err := r.ReadString('\n')
	if err != nil || magic != checkpointMagic+"\n" {
		return errors.New("not a sim checkpoint")
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(header); err != nil {
		return fmt.Errorf("damaged header: %w", err)
	}
	if err := dec.Decode(saved); err != nil {
		return fmt.Errorf("damaged guest memory: %w", unexpectedEOF(err))
	}
	return nil
}

// unexpectedEOF turns io.EOF, a file cut before the memory, into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
