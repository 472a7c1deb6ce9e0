package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/vmlet/vmlet/spec"
)

var errTest = errors.New("test error")

func wrap(err error) error { return fmt.Errorf("wrapped: %w", err) }

// logLines collects what a logger writes, at every verbosity.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{Verbosity: 9})
}

func (l *logLines) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func TestLogging(t *testing.T) {
	h := newHarness(t)
	lines := &logLines{}
	ctx := logr.NewContext(t.Context(), lines.logger())
	path := h.write(manifest{name: "web", desired: spec.Running})

	if _, err := h.r.Reconcile(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	var transitions []string
	for _, l := range lines.take() {
		if strings.Contains(l, `"msg"="Transition"`) {
			transitions = append(transitions, l)
		}
	}
	if len(transitions) != 1 {
		t.Fatalf("transition lines = %q, want one", transitions)
	}
	for _, key := range []string{`"from"="Stopped"`, `"to"="Running"`, `"duration"=`, `"result"="ok"`} {
		if !strings.Contains(transitions[0], key) {
			t.Errorf("transition line %s lacks %s", transitions[0], key)
		}
	}

	h.cat.Update(path)
	if _, err := h.r.Reconcile(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := lines.take(); len(got) > 0 {
		t.Errorf("a reconcile with nothing to do logged %q", got)
	}

	h.write(manifest{name: "web", desired: spec.Running, extra: "  cpus: 0\n"})
	for range 2 {
		if _, err := h.r.Reconcile(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
	errorLines := 0
	for _, l := range lines.take() {
		if strings.Contains(l, `"error"=`) {
			errorLines++
		}
	}
	if errorLines != 1 {
		t.Errorf("invalid manifest logged %d errors over two reconciles, want 1", errorLines)
	}
}

func TestTransitionErrorReason(t *testing.T) {
	h := newHarness(t)
	bring(h, spec.Running, false)
	h.write(manifest{name: "web", desired: spec.Suspended})
	h.rt.failNext("Save", "web", errTest)
	_, err := h.reconcile("web")
	if !errors.Is(err, errTest) {
		t.Fatalf("error = %v, want the save's error wrapped", err)
	}
	if got := Reason(err); got != "TransitionFailed" {
		t.Errorf("reason = %q", got)
	}
	if IsTerminal(err) {
		t.Error("a failed save is terminal; it must be retried")
	}
}
