package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// SpecHash returns 12 hex digits of the SHA-256 of the spec's canonical
// JSON. Reformatting the file, reordering keys, editing comments, writing
// a quantity another way (1Gi or 1024Mi) or spelling out a default changes
// nothing. Any other change to the spec changes the hash. A status whose
// observedSpecHash differs from it is stale.
func (vm *VirtualMachine) SpecHash() string {
	return hashSpec(canonicalSpec(&vm.Spec))
}

// MachineHash is SpecHash without the fields that do not change the
// machine: desiredState, stopTimeout and agent.readyTimeout. A running VM
// needs a restart, and a checkpoint is stale, when it changes.
func (vm *VirtualMachine) MachineHash() string {
	s := canonicalSpec(&vm.Spec)
	s.DesiredState = ""
	s.StopTimeout = nil
	if s.Agent != nil {
		s.Agent.ReadyTimeout = nil
	}
	return hashSpec(s)
}

// StopTimeoutOrDefault returns spec.stopTimeout, or DefaultStopTimeout when
// the manifest leaves it out.
func (s *Spec) StopTimeoutOrDefault() time.Duration {
	if s.StopTimeout == nil {
		return DefaultStopTimeout
	}
	return s.StopTimeout.Duration
}

// ReadyTimeoutOrDefault returns spec.agent.readyTimeout, or
// DefaultReadyTimeout when the manifest leaves it out.
func (s *Spec) ReadyTimeoutOrDefault() time.Duration {
	if s.Agent == nil || s.Agent.ReadyTimeout == nil {
		return DefaultReadyTimeout
	}
	return s.Agent.ReadyTimeout.Duration
}

// canonicalSpec returns a deep copy of s with defaults filled in and each
// quantity written as its byte count.
func canonicalSpec(s *Spec) *Spec {
	c := *s
	c.Memory = canonicalQuantity(s.Memory)
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	c.StopTimeout = &Duration{s.StopTimeoutOrDefault()}
	c.Disks = make([]Disk, len(s.Disks))
	for i, d := range s.Disks {
		if d.Size != nil {
			size := canonicalQuantity(*d.Size)
			d.Size = &size
		}
		c.Disks[i] = d
	}
	c.SharedDirectories = append([]SharedDirectory(nil), s.SharedDirectories...)
	if s.Agent != nil {
		c.Agent = &Agent{Port: s.Agent.Port, ReadyTimeout: &Duration{s.ReadyTimeoutOrDefault()}}
	}
	return &c
}

func canonicalQuantity(q Quantity) Quantity {
	return Quantity{Text: strconv.FormatInt(q.Bytes, 10), Bytes: q.Bytes}
}

func hashSpec(s *Spec) string {
	data, err := json.Marshal(s)
	if err != nil {
		// Every field of Spec marshals; this cannot happen.
		panic("spec: encoding spec for its hash: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}
