package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds every manifest fixture under testdata as a seed, beside
// the corpus in testdata/fuzz.
func addSeeds(f *testing.F) {
	f.Helper()
	for _, pattern := range []string{"testdata/*.yaml", "testdata/*.json", "testdata/writeback/*.in.*"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(base))
	for _, c := range blockEdgeCases {
		f.Add([]byte(c.data))
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// hashes and writes status without error.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := Parse("fuzz.yaml", data)
		if m.Err == nil && m.VM == nil {
			t.Fatal("a valid manifest has no VM")
		}
		if m.Err != nil && m.VM != nil && m.VM.SpecHash() == "" {
			t.Fatal("empty spec hash")
		}
		if m.Err == nil {
			m.VM.SpecHash()
			m.VM.MachineHash()
			if _, err := ReplaceStatus(data, testStatus()); err != nil {
				t.Fatalf("ReplaceStatus on a valid manifest: %v", err)
			}
		}
	})
}

// FuzzReplaceStatus checks that a status write either fails or yields a
// document that holds that status and the same bytes outside it.
func FuzzReplaceStatus(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := ReplaceStatus(data, testStatus())
		if err != nil {
			return
		}
		got := Parse("fuzz.yaml", out)
		if !got.WellFormed {
			t.Fatalf("the result does not parse: %v", got.Err)
		}
		assertSameStatus(t, got.Status, testStatus())
		a, errA := ReplaceStatus(data, nil)
		b, errB := ReplaceStatus(out, nil)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("removing status from the input: %v; from the output: %v", errA, errB)
		}
		if errA != nil {
			// Status was the only member: removing it leaves no mapping.
			return
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("bytes outside status changed:\n%q\nvs\n%q", a, b)
		}
		before := Parse("fuzz.yaml", data)
		if before.Err == nil && (got.Err != nil || got.VM.SpecHash() != before.VM.SpecHash()) {
			t.Fatalf("the spec changed: %v", got.Err)
		}
	})
}
