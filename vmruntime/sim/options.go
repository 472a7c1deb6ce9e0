package sim

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// Options configure a Runtime.
type Options struct {
	// StateRoot is the daemon's state folder. Each VM keeps its state in
	// StateRoot/vms/<name>/. Required.
	StateRoot string

	// Latency is how long each operation takes.
	Latency Latencies

	// TraceFile is the hazard detector's trace. Runtimes that share it, in
	// one process or several, detect each other's overlaps. The default is
	// StateRoot/sim-trace, which only Runtimes over the same state folder
	// share.
	//
	// NOTE: the trace grows by about 240 bytes per operation and is never
	// truncated, because other processes read it at their own offsets.
	TraceFile string

	// Clock measures latencies and stamps trace records. The default is the
	// real clock.
	Clock clock.Clock
}

// Latencies are the durations of the runtime's operations. Zero means the
// operation returns at once.
type Latencies struct {
	Boot    time.Duration
	Connect time.Duration
	Pause   time.Duration
	Resume  time.Duration
	Save    time.Duration
	Restore time.Duration
	Stop    time.Duration
	Kill    time.Duration
}

// latencyKeys lists the operation names ParseLatencies accepts.
const latencyKeys = "all, boot, connect, pause, resume, save, restore, stop, kill"

// ParseLatencies parses a comma-separated list of operation=duration pairs,
// such as "boot=200ms,save=500ms", where each duration is in the syntax of
// time.ParseDuration. The operation "all" sets every latency; later pairs
// override earlier ones. An empty spec returns zero latencies.
func ParseLatencies(spec string) (Latencies, error) {
	var l Latencies
	for _, pair := range splitList(spec) {
		if err := l.set(pair); err != nil {
			return Latencies{}, err
		}
	}
	return l, nil
}

// set applies one operation=duration pair.
func (l *Latencies) set(pair string) error {
	key, value, ok := strings.Cut(pair, "=")
	key = strings.TrimSpace(key)
	if !ok {
		return fmt.Errorf("latency %q: missing \"=\" (use boot=200ms)", pair)
	}
	d, err := time.ParseDuration(strings.TrimSpace(value))
	if err != nil {
		return fmt.Errorf("latency %q: %w", pair, err)
	}
	if d < 0 {
		return fmt.Errorf("latency %q: duration is negative", pair)
	}
	field := l.field(key)
	if field == nil && key != "all" {
		return fmt.Errorf("latency %q: unknown operation %q (use %s)", pair, key, latencyKeys)
	}
	if key == "all" {
		*l = Latencies{d, d, d, d, d, d, d, d}
		return nil
	}
	*field = d
	return nil
}

// field returns the latency an operation name selects, or nil.
func (l *Latencies) field(key string) *time.Duration {
	fields := map[string]*time.Duration{
		"boot": &l.Boot, "connect": &l.Connect, "pause": &l.Pause,
		"resume": &l.Resume, "save": &l.Save, "restore": &l.Restore,
		"stop": &l.Stop, "kill": &l.Kill,
	}
	return fields[key]
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(spec string) []string {
	var items []string
	for item := range strings.SplitSeq(spec, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
