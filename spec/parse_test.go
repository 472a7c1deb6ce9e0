package spec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// base is a valid manifest; the cases below edit it. Its line numbers
// matter: the expected errors name them.
const base = `apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: builder
spec:
  desiredState: Running
  cpus: 2
  memory: 512Mi
  kernel: vmlinuz
  stopTimeout: 30s
`

// edit returns base with each old string replaced by the new one that
// follows it.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	out := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(out, pairs[i]) {
			t.Fatalf("base has no %q", pairs[i])
		}
		out = strings.Replace(out, pairs[i], pairs[i+1], 1)
	}
	return out
}

func errorLines(m *Manifest) []string {
	if m.Err == nil {
		return nil
	}
	return strings.Split(m.Err.Error(), "\n")
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		edit []string
		want []string
	}{
		{"unknown field", []string{"  cpus: 2\n", "  cpus: 2\n  cpu: 3\n"},
			[]string{`vm.yaml:8: spec.cpu: unknown field`}},
		{"unknown field case", []string{"  cpus: 2", "  CPUs: 2"},
			[]string{`vm.yaml:7: spec.CPUs: unknown field (did you mean "cpus"?)`}},
		{"duplicate key", []string{"  cpus: 2\n", "  cpus: 2\n  cpus: 4\n"},
			[]string{`vm.yaml:8: spec.cpus: duplicate key (first at line 7)`}},
		{"duplicate top-level key", []string{"kind: VirtualMachine\n", "kind: VirtualMachine\nkind: VirtualMachine\n"},
			[]string{`vm.yaml:3: kind: duplicate key (first at line 2)`}},
		{"cpus quoted", []string{"cpus: 2", `cpus: "2"`},
			[]string{`vm.yaml:7: spec.cpus: must be an integer, not "2"`}},
		{"cpus float", []string{"cpus: 2", "cpus: 2.5"},
			[]string{`vm.yaml:7: spec.cpus: must be an integer, not 2.5`}},
		{"cpus list", []string{"cpus: 2", "cpus: [2]"},
			[]string{`vm.yaml:7: spec.cpus: must be an integer, not a list`}},
		{"cpus block scalar", []string{"cpus: 2", "cpus: |\n    one\n    two"},
			[]string{`vm.yaml:7: spec.cpus: must be an integer, not "one\ntwo\n"`}},
		{"key with newline", []string{"  cpus: 2\n", "  cpus: 2\n  \"cpu\\nx\": 1\n"},
			[]string{`vm.yaml:8: "spec.cpu\nx": unknown field`}},
		{"cpus octal", []string{"cpus: 2", "cpus: 010"},
			[]string{`vm.yaml:7: spec.cpus: "010" is ambiguous (octal in YAML 1.1, decimal in 1.2): write 8 or 10`}},
		{"cpus two leading zeros", []string{"cpus: 2", "cpus: 0010"},
			[]string{`vm.yaml:7: spec.cpus: "0010" is ambiguous (octal in YAML 1.1, decimal in 1.2): write 8 or 10`}},
		{"cpus leading zero not octal", []string{"cpus: 2", "cpus: 09"},
			[]string{`vm.yaml:7: spec.cpus: "09" has a leading zero: write 9`}},
		{"cpus leading zero same value", []string{"cpus: 2", "cpus: 02"},
			[]string{`vm.yaml:7: spec.cpus: "02" has a leading zero: write 2`}},
		{"cpus underscore", []string{"cpus: 2", "cpus: 1_0"},
			[]string{`vm.yaml:7: spec.cpus: "1_0" is not allowed: write a plain decimal number (10)`}},
		{"cpus binary", []string{"cpus: 2", "cpus: 0b10"},
			[]string{`vm.yaml:7: spec.cpus: "0b10" is not allowed: write a plain decimal number (2)`}},
		{"cpus hexadecimal", []string{"cpus: 2", "cpus: 0x1_0"},
			[]string{`vm.yaml:7: spec.cpus: "0x1_0" is not allowed: write a plain decimal number (16)`}},
		{"cpus octal 0o", []string{"cpus: 2", "cpus: 0o10"},
			[]string{`vm.yaml:7: spec.cpus: "0o10" is not allowed: write a plain decimal number (8)`}},
		{"cpus quoted octal", []string{"cpus: 2", `cpus: "010"`},
			[]string{`vm.yaml:7: spec.cpus: must be an integer, not "010"`}},
		{"cpus plus sign", []string{"cpus: 2", "cpus: +300"},
			[]string{`vm.yaml:7: spec.cpus: 300 is out of range (use 1 to 256)`}},
		{"cpus zero", []string{"cpus: 2", "cpus: 0"},
			[]string{`vm.yaml:7: spec.cpus: 0 is out of range (use 1 to 256)`}},
		{"cpus too many", []string{"cpus: 2", "cpus: 257"},
			[]string{`vm.yaml:7: spec.cpus: 257 is out of range (use 1 to 256)`}},
		{"cpus missing", []string{"  cpus: 2\n", ""},
			[]string{`vm.yaml:5: spec.cpus: required field is missing`}},
		{"memory not a quantity", []string{"512Mi", "12Qi"},
			[]string{`vm.yaml:8: spec.memory: "12Qi" is not a quantity (use 512Mi, 2Gi)`}},
		{"memory decimal suffix", []string{"512Mi", "1G"},
			[]string{`vm.yaml:8: spec.memory: "1G" is not a whole number of MiB (use 1Gi, or 953Mi for the same size rounded down)`}},
		{"memory bytes not MiB", []string{"512Mi", "536870913"},
			[]string{`vm.yaml:8: spec.memory: "536870913" is not a whole number of MiB (use 512Mi)`}},
		{"memory too small", []string{"512Mi", "32Mi"},
			[]string{`vm.yaml:8: spec.memory: "32Mi" is out of range (use 64Mi to 1Ti)`}},
		{"memory too large", []string{"512Mi", "2Ti"},
			[]string{`vm.yaml:8: spec.memory: "2Ti" is out of range (use 64Mi to 1Ti)`}},
		{"memory fraction of a byte", []string{"512Mi", "0.5"},
			[]string{`vm.yaml:8: spec.memory: "0.5" is not a whole number of bytes`}},
		{"memory negative", []string{"512Mi", "-1Gi"},
			[]string{`vm.yaml:8: spec.memory: "-1Gi" is negative`}},
		{"memory missing", []string{"  memory: 512Mi\n", ""},
			[]string{`vm.yaml:5: spec.memory: required field is missing (use 512Mi, 2Gi)`}},
		{"desired state wrong case", []string{"desiredState: Running", "desiredState: running"},
			[]string{`vm.yaml:6: spec.desiredState: "running" is not a desired state (use "Running"; the value is case-sensitive)`}},
		{"desired state unknown", []string{"desiredState: Running", "desiredState: Paused"},
			[]string{`vm.yaml:6: spec.desiredState: "Paused" is not a desired state (use Running, Suspended or Stopped)`}},
		{"desired state missing", []string{"  desiredState: Running\n", ""},
			[]string{`vm.yaml:5: spec.desiredState: required field is missing (use Running, Suspended or Stopped)`}},
		{"name upper case", []string{"name: builder", "name: Builder"},
			[]string{`vm.yaml:4: metadata.name: "Builder" has upper case letters (use "builder")`}},
		{"name parent folder", []string{"name: builder", "name: .."},
			[]string{`vm.yaml:4: metadata.name: ".." is not a DNS-1123 label (use lower case letters, digits and '-', starting and ending with a letter or digit)`}},
		{"name slash", []string{"name: builder", "name: a/b"},
			[]string{`vm.yaml:4: metadata.name: "a/b" is not a DNS-1123 label (use lower case letters, digits and '-', starting and ending with a letter or digit)`}},
		{"name too long", []string{"name: builder", "name: " + strings.Repeat("a", 64)},
			[]string{`vm.yaml:4: metadata.name: "` + strings.Repeat("a", 64) + `" is longer than 63 characters`}},
		{"name missing", []string{"  name: builder\n", "  labels: {a: b}\n"},
			[]string{`vm.yaml:3: metadata.name: required field is missing`}},
		{"api version", []string{"vmlet.dev/v1alpha1", "v1"},
			[]string{`vm.yaml:1: apiVersion: "v1" is not supported (use vmlet.dev/v1alpha1)`}},
		{"kind", []string{"kind: VirtualMachine", "kind: Pod"},
			[]string{`vm.yaml:2: kind: "Pod" is not supported (use VirtualMachine)`}},
		{"spec missing", []string{"spec:\n  desiredState: Running\n  cpus: 2\n  memory: 512Mi\n  kernel: vmlinuz\n  stopTimeout: 30s\n", ""},
			[]string{`vm.yaml: spec: required field is missing`}},
		{"spec not a mapping", []string{"spec:\n  desiredState: Running\n  cpus: 2\n  memory: 512Mi\n  kernel: vmlinuz\n  stopTimeout: 30s\n", "spec: [1]\n"},
			[]string{`vm.yaml:5: spec: must be a mapping, not a list`}},
		{"kernel missing", []string{"  kernel: vmlinuz\n", ""},
			[]string{`vm.yaml:5: spec.kernel: required field is missing`}},
		{"network wrong case", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  network: NAT\n"},
			[]string{`vm.yaml:10: spec.network: "NAT" is not a network (use "nat"; the value is case-sensitive)`}},
		{"network unknown", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  network: bridge\n"},
			[]string{`vm.yaml:10: spec.network: "bridge" is not a network (use none or nat)`}},
		{"duration without unit", []string{"stopTimeout: 30s", "stopTimeout: 30"},
			[]string{`vm.yaml:10: spec.stopTimeout: "30" is not a duration (use 30s, 1m30s)`}},
		{"duration zero", []string{"stopTimeout: 30s", "stopTimeout: 0s"},
			[]string{`vm.yaml:10: spec.stopTimeout: must be positive, not 0s`}},
		{"boolean from YAML 1.1", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks:\n    - path: a.img\n      readOnly: yes\n"},
			[]string{`vm.yaml:12: spec.disks[0].readOnly: yes is not a boolean in YAML 1.2 (use true or false)`}},
		{"disk mount path relative", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks:\n    - path: a.img\n      mountPath: work\n"},
			[]string{`vm.yaml:12: spec.disks[0].mountPath: "work" is not an absolute path in the guest`}},
		{"disk path twice", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks:\n    - path: a.img\n    - path: a.img\n"},
			[]string{`vm.yaml:12: spec.disks[1].path: "a.img" is also used by spec.disks[0]`}},
		{"disk size not MiB", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks:\n    - path: a.img\n      size: 1500k\n"},
			[]string{`vm.yaml:12: spec.disks[0].size: "1500k" is not a positive whole number of MiB (use 1Gi, 512Mi)`}},
		{"disk path missing", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  disks:\n    - size: 1Gi\n"},
			[]string{`vm.yaml:11: spec.disks[0].path: required field is missing`}},
		{"share tag twice", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  sharedDirectories:\n    - {tag: a, path: /srv}\n    - {tag: a, path: /tmp}\n"},
			[]string{`vm.yaml:12: spec.sharedDirectories[1].tag: "a" is also used by spec.sharedDirectories[0]`}},
		{"share tag too long", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  sharedDirectories:\n    - {tag: " + strings.Repeat("t", 37) + ", path: /srv}\n"},
			[]string{`vm.yaml:11: spec.sharedDirectories[0].tag: "` + strings.Repeat("t", 37) + `" is longer than 36 bytes`}},
		{"agent port missing", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  agent: {readyTimeout: 10s}\n"},
			[]string{`vm.yaml:10: spec.agent.port: required field is missing`}},
		{"agent port too large", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  agent: {port: 4294967296}\n"},
			[]string{`vm.yaml:10: spec.agent.port: 4294967296 is out of range for this field`}},
		{"merge key", []string{"  cpus: 2\n", "  <<: {cpus: 2}\n"},
			[]string{`vm.yaml:5: spec.cpus: required field is missing`, `vm.yaml:7: spec.<<: merge keys are not supported`}},
		{"label value not text", []string{"  name: builder\n", "  name: builder\n  labels: {a: [1]}\n"},
			[]string{`vm.yaml:5: metadata.labels.a: must be text, not a list`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse("vm.yaml", []byte(edit(t, tt.edit...)))
			got := errorLines(m)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if !m.WellFormed {
				t.Error("WellFormed is false for a document that parses")
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	data := edit(t, "name: builder", "name: Builder", "Running", "running", "cpus: 2", `cpus: "2"`,
		"512Mi", "12Qi", "stopTimeout: 30s", "stopTimeout: 30")
	m := Parse("vm.yaml", []byte(data))
	want := []string{
		`vm.yaml:4: metadata.name: "Builder" has upper case letters (use "builder")`,
		`vm.yaml:6: spec.desiredState: "running" is not a desired state (use "Running"; the value is case-sensitive)`,
		`vm.yaml:7: spec.cpus: must be an integer, not "2"`,
		`vm.yaml:8: spec.memory: "12Qi" is not a quantity (use 512Mi, 2Gi)`,
		`vm.yaml:10: spec.stopTimeout: "30" is not a duration (use 30s, 1m30s)`,
	}
	if got := errorLines(m); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m.Name != "Builder" {
		t.Errorf("Name = %q, want the name even of an invalid manifest", m.Name)
	}
	if m.VM != nil {
		t.Error("VM is set for a manifest whose fields did not decode")
	}
}

func TestParseKeepsYAML11Text(t *testing.T) {
	tests := []struct {
		name string
		edit []string
		get  func(*VirtualMachine) string
		want string
	}{
		{"no in a string", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  cmdline: no\n"},
			func(vm *VirtualMachine) string { return vm.Spec.Cmdline }, "no"},
		{"off in a label", []string{"  name: builder\n", "  name: builder\n  labels: {debug: off}\n"},
			func(vm *VirtualMachine) string { return vm.Metadata.Labels["debug"] }, "off"},
		{"version number", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  cmdline: 1.10\n"},
			func(vm *VirtualMachine) string { return vm.Spec.Cmdline }, "1.10"},
		{"octal-looking", []string{"  kernel: vmlinuz\n", "  kernel: vmlinuz\n  cmdline: 0755\n"},
			func(vm *VirtualMachine) string { return vm.Spec.Cmdline }, "0755"},
		{"name no", []string{"name: builder", "name: no"},
			func(vm *VirtualMachine) string { return vm.Metadata.Name }, "no"},
		{"true in a path", []string{"kernel: vmlinuz", "kernel: true"},
			func(vm *VirtualMachine) string { return vm.Spec.Kernel }, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse("vm.yaml", []byte(edit(t, tt.edit...)))
			if m.Err != nil {
				t.Fatalf("Parse: %v", m.Err)
			}
			if got := tt.get(m.VM); got != tt.want {
				t.Errorf("value = %q, want %q as written", got, tt.want)
			}
		})
	}
}

func TestParseRejectsFile(t *testing.T) {
	bomb := "a: &a [x,x,x,x,x,x,x,x,x]\n"
	for _, c := range "bcdefghi" {
		prev := string(c - 1)
		bomb += string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
	}
	tests := []struct {
		name string
		data string
		want error
	}{
		{"too large", base + "# " + strings.Repeat("x", MaxManifestSize) + "\n", ErrTooLarge},
		{"empty", "", ErrEmpty},
		{"only blanks", "  \n\n", ErrEmpty},
		{"only comments", "# nothing\n", ErrEmpty},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00", ErrBinary},
		{"invalid UTF-8", "name: \xff\xfe\n", ErrBinary},
		{"two documents", base + "---\n" + base, ErrMultiDocument},
		{"alias bomb", bomb, ErrAliases},
		{"syntax", "spec: [1\n", ErrSyntax},
		{"tab indentation", "spec:\n\tcpus: 2\n", ErrSyntax},
		{"top-level list", "- a\n- b\n", ErrNotMapping},
		{"top-level scalar", "hello\n", ErrNotMapping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse("vm.yaml", []byte(tt.data))
			if !errors.Is(m.Err, tt.want) {
				t.Fatalf("Err = %v, want %v", m.Err, tt.want)
			}
			if m.WellFormed {
				t.Error("WellFormed is true for a rejected file")
			}
			if lines := errorLines(m); len(lines) != 1 {
				t.Errorf("got %d lines, want one: %q", len(lines), lines)
			}
		})
	}
}

func TestParseSyntaxErrorLine(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string
	}{
		{name: "unclosed flow sequence", text: "a: 1\nb: [1\nc: 2\n",
			want: "vm.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		{name: "unclosed flow mapping", text: "a: 1\nb: {c: 1\nd: 2\n",
			want: "vm.yaml:2: invalid YAML: did not find expected ',' or '}'"},
		{name: "misindented key", text: "a:\n  b: 1\n c: 2\n",
			want: "vm.yaml:3: invalid YAML: did not find expected key"},
		{name: "unclosed on the last line", text: "a: 1\nb: [\n",
			want: "vm.yaml:2: invalid YAML: did not find expected node content"},
		{name: "scanner error", text: "a: b\nc: d: e\n",
			want: "vm.yaml:2: invalid YAML: mapping values are not allowed in this context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse("vm.yaml", []byte(tt.text)).FirstError(); got != tt.want {
				t.Errorf("FirstError = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTypical(t *testing.T) {
	m := loadTestdata(t, "typical.yaml")
	if m.Err != nil {
		t.Fatalf("Err = %v", m.Err)
	}
	s := m.VM.Spec
	if s.Memory.Bytes != 512<<20 || s.CPUs != 2 || s.DesiredState != Running {
		t.Errorf("spec = %+v", s)
	}
	if len(s.Disks) != 1 || s.Disks[0].Size.Bytes != 2<<30 || s.Disks[0].MountPath != "/work" {
		t.Errorf("disks = %+v", s.Disks)
	}
	if s.Agent == nil || s.Agent.Port != 5000 || s.ReadyTimeoutOrDefault().Seconds() != 60 {
		t.Errorf("agent = %+v", s.Agent)
	}
	if m.Status == nil || m.Status.Phase != PhaseRunning || m.Status.Checkpoint.Bytes != 98304000 {
		t.Errorf("status = %+v", m.Status)
	}
	if m.Status.Conditions[0].LastTransitionTime.IsZero() {
		t.Error("lastTransitionTime not decoded")
	}
}

func TestParseJSONAndFlow(t *testing.T) {
	want := loadTestdata(t, "typical.yaml").VM.SpecHash()
	for _, name := range []string{"typical.json", "typical-flow.yaml"} {
		t.Run(name, func(t *testing.T) {
			m := loadTestdata(t, name)
			if m.Err != nil {
				t.Fatalf("Err = %v", m.Err)
			}
			if got := m.VM.SpecHash(); got != want {
				t.Errorf("SpecHash = %s, want %s as for the block YAML", got, want)
			}
		})
	}
}

func loadTestdata(t *testing.T, name string) *Manifest {
	t.Helper()
	m, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseMissingFilesWarn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := edit(t, "  kernel: vmlinuz\n", "  kernel: vmlinuz\n  initrd: initrd.img\n"+
		"  disks:\n    - path: new.img\n      size: 1Gi\n    - path: old.img\n")
	m := Parse(filepath.Join(dir, "vm.yaml"), []byte(data))
	if m.Err != nil {
		t.Fatalf("Err = %v; a missing file must only warn", m.Err)
	}
	want := []string{
		filepath.Join(dir, "vm.yaml") + `:10: spec.initrd: "` + filepath.Join(dir, "initrd.img") + `" does not exist on this host`,
		filepath.Join(dir, "vm.yaml") + `:14: spec.disks[1].path: "` + filepath.Join(dir, "old.img") + `" does not exist on this host`,
	}
	if got := strings.Split(m.Warnings.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseStatusProblemIsWarning(t *testing.T) {
	m := Parse("vm.yaml", []byte(base+"status:\n  phase: Running\n  color: blue\n"))
	if m.Err != nil {
		t.Fatalf("Err = %v; a damaged status must not invalidate the manifest", m.Err)
	}
	if m.Status != nil {
		t.Errorf("Status = %+v, want nil for a status that does not decode", m.Status)
	}
	if len(m.Warnings) == 0 || m.Warnings[0].Field != "status.color" || !m.Warnings[0].Warning {
		t.Errorf("Warnings = %v", m.Warnings)
	}
}

func TestResolve(t *testing.T) {
	m := &Manifest{Path: "/etc/vmlet/manifests/vm.yaml"}
	tests := []struct{ name, in, want string }{
		{"relative", "images/vmlinuz", "/etc/vmlet/manifests/images/vmlinuz"},
		{"parent", "../images/vmlinuz", "/etc/vmlet/images/vmlinuz"},
		{"absolute", "/boot//vmlinuz", "/boot/vmlinuz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Resolve(tt.in); got != tt.want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIsManifestName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"vm.yaml", true}, {"vm.yml", true}, {"vm.json", true}, {"/a/b/vm.yaml", true},
		{".vm.yaml", false}, {"vm.yaml~", false}, {".vm.yaml.swp", false}, {"4913", false},
		{".vm.yaml.vmlet-tmp-0a1b2c", false}, {"vm.txt", false}, {"vm.YAML", false}, {"..data", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsManifestName(tt.name); got != tt.want {
				t.Errorf("IsManifestName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestLoadNotFound(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load error = %v, want os.ErrNotExist", err)
	}
}

func TestLoadLargeFileStopsReading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, bytes.Repeat([]byte("#"), 3*MaxManifestSize), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(m.Err, ErrTooLarge) || len(m.Data) > MaxManifestSize+1 {
		t.Errorf("Err = %v, read %d bytes", m.Err, len(m.Data))
	}
}

func TestParseLimitsProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	for i := range 2 * MaxProblems {
		b.WriteString("unknown" + strconv.Itoa(i) + ": 1\n")
	}
	lines := errorLines(Parse("vm.yaml", []byte(b.String())))
	if len(lines) != MaxProblems+1 {
		t.Fatalf("got %d lines, want %d", len(lines), MaxProblems+1)
	}
	if want := "vm.yaml: 50 more problems not shown"; lines[MaxProblems] != want {
		t.Errorf("last line = %q, want %q", lines[MaxProblems], want)
	}
}

func TestParseCachedMatchesFresh(t *testing.T) {
	data := readFile(t, "testdata/typical.yaml")
	cached := Parse("a.yaml", data)
	setHook(t, &cacheDocuments, false)
	fresh := Parse("a.yaml", data)
	if cached.VM.SpecHash() != fresh.VM.SpecHash() || cached.Name != fresh.Name {
		t.Error("a cached parse differs from a fresh one")
	}
}

func TestParseDuplicateInLargeMapping(t *testing.T) {
	var labels strings.Builder
	labels.WriteString("  labels:\n    dup: a\n")
	for i := range 40 {
		labels.WriteString("    k" + strconv.Itoa(i) + ": {}\n")
	}
	labels.WriteString("    dup: b\n")
	data := edit(t, "  name: builder\n", "  name: builder\n"+labels.String())
	want := "vm.yaml:47: metadata.labels.dup: duplicate key (first at line 6)"
	got := errorLines(Parse("vm.yaml", []byte(data)))
	if len(got) == 0 || got[len(got)-1] != want {
		t.Errorf("errors = %q, want last %q", got, want)
	}
}

func TestParseConcurrent(t *testing.T) {
	data := readFile(t, "testdata/typical.yaml")
	want := Parse("a.yaml", data).VM.SpecHash()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got := Parse("a.yaml", data).VM.SpecHash(); got != want {
					t.Errorf("SpecHash = %s, want %s", got, want)
				}
				if _, err := ReplaceStatus(data, testStatus()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
