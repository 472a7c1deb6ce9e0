package sim

import (
	"fmt"
	"strings"
)

// FaultKind names a fault the runtime can inject. Its value is the word
// ParseFaults accepts.
type FaultKind string

// The faults a Runtime can inject.
const (
	// FaultSaveFail makes the VM's next Save fail after its latency, leaving
	// a truncated file at the path, as a hypervisor that fails mid-write
	// does. Each injection fails one Save.
	FaultSaveFail FaultKind = "save-fail"
	// FaultRestoreFail makes the VM's next Restore fail after its latency,
	// leaving the VM stopped. Each injection fails one Restore.
	FaultRestoreFail FaultKind = "restore-fail"
	// FaultCrash kills the VM's process at once: Observe reports it Stopped
	// with Exit set. A VM that is not running is left alone.
	FaultCrash FaultKind = "crash"
	// FaultHangAgent makes the VM's agent stop responding: Connect and every
	// Agent call block until their context ends, and Stop waits the
	// machine's StopTimeout before it kills the VM. It lasts, across boots,
	// until a FaultReleaseAgent for the same VM.
	FaultHangAgent FaultKind = "hang-agent"
	// FaultReleaseAgent undoes FaultHangAgent.
	FaultReleaseAgent FaultKind = "release-agent"
)

// faultKinds lists the kinds ParseFaults accepts, for its error message.
const faultKinds = "save-fail, restore-fail, crash, hang-agent, release-agent"

// Fault is one fault to inject into one VM.
type Fault struct {
	Kind FaultKind
	VM   string
}

// FailNextSave returns the fault that fails the VM's next Save.
func FailNextSave(name string) Fault { return Fault{FaultSaveFail, name} }

// FailNextRestore returns the fault that fails the VM's next Restore.
func FailNextRestore(name string) Fault { return Fault{FaultRestoreFail, name} }

// Crash returns the fault that kills the VM's process at once.
func Crash(name string) Fault { return Fault{FaultCrash, name} }

// HangAgent returns the fault that makes the VM's agent stop responding.
func HangAgent(name string) Fault { return Fault{FaultHangAgent, name} }

// ReleaseAgent returns the fault that undoes HangAgent.
func ReleaseAgent(name string) Fault { return Fault{FaultReleaseAgent, name} }

// String returns the fault in the syntax ParseFaults accepts.
func (f Fault) String() string { return string(f.Kind) + "=" + f.VM }

// ParseFaults parses a comma-separated list of kind=vm pairs, such as
// "save-fail=web,restore-fail=db,hang-agent=ci". An empty spec returns no
// faults.
func ParseFaults(spec string) ([]Fault, error) {
	var faults []Fault
	for _, pair := range splitList(spec) {
		f, err := parseFault(pair)
		if err != nil {
			return nil, err
		}
		faults = append(faults, f)
	}
	return faults, nil
}

// parseFault parses one kind=vm pair.
func parseFault(pair string) (Fault, error) {
	kind, name, ok := strings.Cut(pair, "=")
	if !ok {
		return Fault{}, fmt.Errorf("fault %q: missing \"=\" (use save-fail=web)", pair)
	}
	f := Fault{FaultKind(strings.TrimSpace(kind)), strings.TrimSpace(name)}
	if err := f.validate(); err != nil {
		return Fault{}, fmt.Errorf("fault %q: %w", pair, err)
	}
	return f, nil
}

// validate checks the fault's kind and VM name.
func (f Fault) validate() error {
	switch f.Kind {
	case FaultSaveFail, FaultRestoreFail, FaultCrash, FaultHangAgent, FaultReleaseAgent:
	default:
		return fmt.Errorf("unknown kind %q (use %s)", f.Kind, faultKinds)
	}
	return validateName(f.VM)
}

// faultSet is the set of faults pending for one VM.
type faultSet struct {
	saveFails    int
	restoreFails int
	agentHung    bool
}

// Inject injects f. It is safe to call at any time from any goroutine. A
// crash takes effect before Inject returns. The other faults take effect at
// the VM's next matching operation, even if the VM does not exist yet. It
// fails for an unknown kind or an invalid VM name, and when a crash cannot
// be written to the VM's state file.
func (r *Runtime) Inject(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("injecting fault %q: %w", f, err)
	}
	if f.Kind == FaultCrash {
		return r.crash(f.VM)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	fs := r.faultsOf(f.VM)
	switch f.Kind {
	case FaultSaveFail:
		fs.saveFails++
	case FaultRestoreFail:
		fs.restoreFails++
	case FaultHangAgent:
		fs.agentHung = true
	case FaultReleaseAgent:
		fs.agentHung = false
	}
	return nil
}

// faultsOf returns the VM's pending faults. The caller holds r.mu.
func (r *Runtime) faultsOf(name string) *faultSet {
	fs := r.faults[name]
	if fs == nil {
		fs = &faultSet{}
		r.faults[name] = fs
	}
	return fs
}

// takeFault consumes one pending save or restore failure and reports
// whether there was one.
func (r *Runtime) takeFault(name string, kind FaultKind) bool {
	r.mu.Lock()
	defer r.mu.Unlock()

	fs := r.faultsOf(name)
	count := &fs.saveFails
	if kind == FaultRestoreFail {
		count = &fs.restoreFails
	}
	if *count == 0 {
		return false
	}
	*count--
	return true
}

// agentHung reports whether the VM's agent hangs.
func (r *Runtime) agentHung(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults[name] != nil && r.faults[name].agentHung
}
