package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
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

// FuzzYAMLString checks that every string the status emitter writes reads
// back as that string, never as a boolean, number, null or other text.
func FuzzYAMLString(f *testing.F) {
	for _, s := range []string{"Running", "True", "no", "off", "1.10", "9c1e0f3a2b7d", "12345e678901",
		"0x1F", "a: b", "a #b", "", " x", "x ", "-", "~", "null", "2026-12-04T10:00:00Z", "line\nbreak", "é", "'q'", "a\u0085b", "a\u2028b", "\ufeffx", "\x7f", "tab\there"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("k: "+yamlString(s)+"\n"), &n); err != nil {
			t.Fatalf("%q written as %s does not parse: %v", s, yamlString(s), err)
		}
		v := n.Content[0].Content[1]
		if v.Tag != "!!str" || v.Value != s {
			t.Fatalf("%q written as %s reads back as %s %q", s, yamlString(s), v.Tag, v.Value)
		}
	})
}
