package spec

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/writeback")

// testStatus is the status the write-back tests write.
func testStatus() *Status {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	return &Status{
		Phase:            PhaseRunning,
		ObservedSpecHash: "9c1e0f3a2b7d",
		Conditions: []Condition{{
			Type: ConditionReady, Status: ConditionTrue, Reason: "AgentReady",
			Message: "guest agent answered: ready #1", LastTransitionTime: Time{at},
		}},
		Checkpoint: &Checkpoint{Bytes: 98304000, SavedAt: Time{at}, MachineHash: "123456789012", Runtime: "qemu 7.2.0 pc-i440fx-7.2"},
		Restarts:   1,
	}
}

func writebackInputs(t *testing.T) []string {
	t.Helper()
	inputs, err := filepath.Glob("testdata/writeback/*.in.*")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no write-back fixtures: %v", err)
	}
	return inputs
}

func TestReplaceStatusGolden(t *testing.T) {
	for _, in := range writebackInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data := readFile(t, in)
			out, err := ReplaceStatus(data, testStatus())
			if err != nil {
				t.Fatalf("ReplaceStatus: %v", err)
			}
			golden := strings.Replace(in, ".in.", ".golden.", 1)
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readFile(t, golden); !bytes.Equal(out, want) {
				t.Errorf("output differs from %s:\n%s", golden, out)
			}
		})
	}
}

// TestReplaceStatusKeepsUserBytes checks, for every fixture, that the
// status written parses back as written, that the spec hash is unchanged,
// and that removing the status again gives the same bytes as removing it
// from the input: nothing outside the member moved.
func TestReplaceStatusKeepsUserBytes(t *testing.T) {
	for _, in := range writebackInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data := readFile(t, in)
			before := Parse(in, data)
			if before.Err != nil {
				t.Fatalf("fixture is invalid: %v", before.Err)
			}
			out, err := ReplaceStatus(data, testStatus())
			if err != nil {
				t.Fatalf("ReplaceStatus: %v", err)
			}
			after := Parse(in, out)
			if after.Err != nil {
				t.Fatalf("output is invalid: %v", after.Err)
			}
			if after.VM.SpecHash() != before.VM.SpecHash() {
				t.Errorf("spec hash changed: %s, was %s", after.VM.SpecHash(), before.VM.SpecHash())
			}
			assertSameStatus(t, after.Status, testStatus())
			assertSameWithoutStatus(t, data, out)
		})
	}
}

func assertSameStatus(t *testing.T, got, want *Status) {
	t.Helper()
	g, _ := toJSON(got)
	w, _ := toJSON(want)
	if g != w {
		t.Errorf("status read back = %s, want %s", g, w)
	}
}

func assertSameWithoutStatus(t *testing.T, a, b []byte) {
	t.Helper()
	strippedA, err := ReplaceStatus(a, nil)
	if err != nil {
		t.Fatalf("removing status: %v", err)
	}
	strippedB, err := ReplaceStatus(b, nil)
	if err != nil {
		t.Fatalf("removing status: %v", err)
	}
	if !bytes.Equal(strippedA, strippedB) {
		t.Errorf("bytes outside status changed:\n%q\nvs\n%q", strippedA, strippedB)
	}
}

func TestReplaceStatusTwiceIsStable(t *testing.T) {
	for _, in := range writebackInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			first, err := ReplaceStatus(readFile(t, in), testStatus())
			if err != nil {
				t.Fatal(err)
			}
			second, err := ReplaceStatus(first, testStatus())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Errorf("rewriting the same status changed the file:\n%s\nvs\n%s", first, second)
			}
		})
	}
}

func TestReplaceStatusRemovesAddedStatus(t *testing.T) {
	for _, in := range writebackInputs(t) {
		data := readFile(t, in)
		if bytes.Contains(data, []byte("status")) {
			continue
		}
		t.Run(filepath.Base(in), func(t *testing.T) {
			out, err := ReplaceStatus(data, testStatus())
			if err != nil {
				t.Fatal(err)
			}
			back, err := ReplaceStatus(out, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data) {
				t.Errorf("adding then removing status changed the file:\n%q\nwant\n%q", back, data)
			}
		})
	}
}

func TestReplaceStatusRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"not YAML", "a: [1\n"},
		{"empty", ""},
		{"list", "- a\n"},
		{"two status members", "a: 1\nstatus: {}\nstatus: {}\n"},
		{"status with an anchor", "{a: 1, status: &s {phase: X}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReplaceStatus([]byte(tt.data), testStatus()); err == nil {
				t.Error("ReplaceStatus succeeded")
			}
		})
	}
}

func TestReplaceDesiredState(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "spec:\n  desiredState: Running # on\n  cpus: 2\n",
			"spec:\n  desiredState: Stopped # on\n  cpus: 2\n"},
		{"double quoted", "spec:\n  desiredState: \"Running\"\n", "spec:\n  desiredState: \"Stopped\"\n"},
		{"single quoted", "spec: {desiredState: 'Running', cpus: 2}\n", "spec: {desiredState: 'Stopped', cpus: 2}\n"},
		{"JSON", "{\"spec\": {\"cpus\": 2, \"desiredState\": \"Running\"}}", "{\"spec\": {\"cpus\": 2, \"desiredState\": \"Stopped\"}}"},
		{"missing in block", "spec:\n  cpus: 2\n", "spec:\n  desiredState: Stopped\n  cpus: 2\n"},
		{"missing in JSON", "{\n  \"spec\": {\n    \"cpus\": 2\n  }\n}\n",
			"{\n  \"spec\": {\n    \"desiredState\": \"Stopped\",\n    \"cpus\": 2\n  }\n}\n"},
		{"missing in flow", "spec: {cpus: 2}\n", "spec: {desiredState: Stopped, cpus: 2}\n"},
		{"CRLF", "spec:\r\n  cpus: 2\r\n", "spec:\r\n  desiredState: Stopped\r\n  cpus: 2\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplaceDesiredState([]byte(tt.in), Stopped)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var blockEdgeCases = []struct {
	name string
	data string
}{
	{"block scalar with hash lines", "a: 1\nstatus:\n  phase: |\n    x\n    # not a comment\nb: 2\n"},
	{"comments at column 1 inside", "a: 1\nstatus:\n  phase: X\n# inside\n  restarts: 1\n\n# before b\nb: 2\n"},
	{"flow value over lines", "a: 1\nstatus: {phase: X,\n  restarts: 1}\nb: 2\n"},
	{"quoted key", "a: 1\n\"status\": {phase: X}\nb: 2\n"},
	{"tab after colon", "a: 1\nstatus:\t{phase: X}\n"},
	{"end marker then comment", "a: 1\n...\n# after the end\n"},
	{"end marker after status", "a: 1\nstatus: {}\n...\n"},
	{"indented root", "  a: 1\n  b:\n    c: 2\n"},
	{"alias into status", "x: &p Running\nstatus: {phase: *p}\n"},
	{"null status", "a: 1\nstatus:\nb: 2\n"},
	{"status is a list", "a: 1\nstatus:\n- 1\n- 2\nb: 2\n"},
}

// TestReplaceStatusBlockEdges covers block documents whose status member
// is hard to delimit. Each result must parse, hold the status and keep
// every byte outside the member.
func TestReplaceStatusBlockEdges(t *testing.T) {
	for _, tt := range blockEdgeCases {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			out, err := ReplaceStatus(data, testStatus())
			if err != nil {
				t.Fatalf("ReplaceStatus: %v", err)
			}
			got := Parse("vm.yaml", out)
			if !got.WellFormed {
				t.Fatalf("the result does not parse: %v\n%s", got.Err, out)
			}
			assertSameStatus(t, got.Status, testStatus())
			assertSameWithoutStatus(t, data, out)
		})
	}
}

func TestReplaceStatusRejectsUnsafeBlock(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"anchor used elsewhere", "status: &s {phase: X}\nother: *s\n"},
		{"complex key", "a: 1\n? status\n: {phase: X}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReplaceStatus([]byte(tt.data), testStatus()); err == nil {
				t.Error("ReplaceStatus succeeded")
			}
		})
	}
}
