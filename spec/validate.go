package spec

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Bounds of a spec.
const (
	MinCPUs      = 1
	MaxCPUs      = 256
	MinMemory    = 64 << 20
	MaxMemory    = 1 << 40
	MaxNameLen   = 63
	MaxTagLength = 36
)

const mib = 1 << 20

// validator checks the values of a decoded manifest and reports each
// problem at the line of its field, or of the nearest enclosing field.
type validator struct {
	file  string
	lines map[string]int
	bad   map[string]bool
	errs  ErrorList
}

func (v *validator) fail(field, format string, args ...any) {
	for f := field; f != ""; f = parent(f) {
		if v.bad[f] {
			// Decoding reported this field or one that holds it.
			return
		}
	}
	v.errs = append(v.errs, &FieldError{
		File: v.file, Line: v.lineOf(field), Field: field, Message: fmt.Sprintf(format, args...),
	})
}

// lineOf returns the line of field, or of the nearest enclosing field that
// the file has, or 0.
func (v *validator) lineOf(field string) int {
	for field != "" {
		if line, ok := v.lines[field]; ok {
			return line
		}
		field = parent(field)
	}
	return 0
}

func (v *validator) has(field string) bool {
	_, ok := v.lines[field]
	return ok
}

func (v *validator) validate(vm *VirtualMachine) {
	v.typeMeta(vm)
	v.name(vm.Metadata.Name)
	if !v.has("spec") {
		v.fail("spec", "required field is missing")
		return
	}
	v.spec(&vm.Spec)
}

func (v *validator) typeMeta(vm *VirtualMachine) {
	switch {
	case vm.APIVersion == "":
		v.fail("apiVersion", "required field is missing (use %s)", APIVersion)
	case vm.APIVersion != APIVersion:
		v.fail("apiVersion", "%q is not supported (use %s)", vm.APIVersion, APIVersion)
	}
	switch {
	case vm.Kind == "":
		v.fail("kind", "required field is missing (use %s)", Kind)
	case vm.Kind != Kind:
		v.fail("kind", "%q is not supported (use %s)", vm.Kind, Kind)
	}
}

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// IsValidName reports whether name is a DNS-1123 label of at most 63
// characters, as metadata.name must be. Such a name is safe as a folder
// name.
func IsValidName(name string) bool {
	return len(name) <= MaxNameLen && dns1123Label.MatchString(name)
}

func (v *validator) name(name string) {
	const field = "metadata.name"
	switch {
	case name == "":
		v.fail(field, "required field is missing")
	case len(name) > MaxNameLen:
		v.fail(field, "%q is longer than %d characters", name, MaxNameLen)
	case strings.ToLower(name) != name && dns1123Label.MatchString(strings.ToLower(name)):
		v.fail(field, "%q has upper case letters (use %q)", name, strings.ToLower(name))
	case !dns1123Label.MatchString(name):
		v.fail(field, "%q is not a DNS-1123 label (use lower case letters, digits and '-', "+
			"starting and ending with a letter or digit)", name)
	}
}

func (v *validator) spec(s *Spec) {
	v.desiredState(s.DesiredState)
	v.cpus(s.CPUs)
	v.memory(s.Memory)
	if s.Kernel == "" {
		v.fail("spec.kernel", "required field is missing")
	}
	v.network(s.Network)
	v.disks(s.Disks)
	v.sharedDirectories(s.SharedDirectories)
	v.agent(s.Agent)
	if s.StopTimeout != nil && s.StopTimeout.Duration <= 0 {
		v.fail("spec.stopTimeout", "must be positive, not %s", s.StopTimeout)
	}
}

func (v *validator) desiredState(s DesiredState) {
	const field = "spec.desiredState"
	switch s {
	case Running, Suspended, Stopped:
		return
	case "":
		v.fail(field, "required field is missing (use Running, Suspended or Stopped)")
		return
	}
	for _, known := range []DesiredState{Running, Suspended, Stopped} {
		if strings.EqualFold(string(s), string(known)) {
			v.fail(field, "%q is not a desired state (use %q; the value is case-sensitive)", s, known)
			return
		}
	}
	v.fail(field, "%q is not a desired state (use Running, Suspended or Stopped)", s)
}

func (v *validator) cpus(n int) {
	switch {
	case !v.has("spec.cpus"):
		v.fail("spec.cpus", "required field is missing")
	case n < MinCPUs || n > MaxCPUs:
		v.fail("spec.cpus", "%d is out of range (use %d to %d)", n, MinCPUs, MaxCPUs)
	}
}

func (v *validator) memory(q Quantity) {
	const field = "spec.memory"
	switch {
	case !v.has(field):
		v.fail(field, "required field is missing (use 512Mi, 2Gi)")
	case q.Bytes%mib != 0:
		v.fail(field, "%q is not a whole number of MiB (%s)", q.Text, mibHint(q))
	case q.Bytes < MinMemory || q.Bytes > MaxMemory:
		v.fail(field, "%q is out of range (use 64Mi to 1Ti)", q.Text)
	}
}

func (v *validator) network(n Network) {
	switch n {
	case "", NetworkNone, NetworkNAT:
		return
	}
	lower := Network(strings.ToLower(string(n)))
	if lower == NetworkNone || lower == NetworkNAT {
		v.fail("spec.network", "%q is not a network (use %q; the value is case-sensitive)", n, lower)
		return
	}
	v.fail("spec.network", "%q is not a network (use none or nat)", n)
}

func (v *validator) disks(disks []Disk) {
	paths := map[string]int{}
	for i, d := range disks {
		field := "spec.disks[" + strconv.Itoa(i) + "]"
		v.unique(paths, d.Path, field+".path", "spec.disks")
		if d.Path == "" {
			v.fail(field+".path", "required field is missing")
		}
		if d.Size != nil && (d.Size.Bytes <= 0 || d.Size.Bytes%mib != 0) {
			v.fail(field+".size", "%q is not a positive whole number of MiB (use 1Gi, 512Mi)", d.Size.Text)
		}
		v.mountPath(field+".mountPath", d.MountPath)
	}
}

func (v *validator) sharedDirectories(dirs []SharedDirectory) {
	tags := map[string]int{}
	for i, d := range dirs {
		field := "spec.sharedDirectories[" + strconv.Itoa(i) + "]"
		v.unique(tags, d.Tag, field+".tag", "spec.sharedDirectories")
		switch {
		case d.Tag == "":
			v.fail(field+".tag", "required field is missing")
		case len(d.Tag) > MaxTagLength:
			v.fail(field+".tag", "%q is longer than %d bytes", d.Tag, MaxTagLength)
		}
		if d.Path == "" {
			v.fail(field+".path", "required field is missing")
		}
		v.mountPath(field+".mountPath", d.MountPath)
	}
}

// unique reports a value that an earlier item of the same list has.
func (v *validator) unique(seen map[string]int, value, field, list string) {
	if value == "" {
		return
	}
	if first, dup := seen[value]; dup {
		v.fail(field, "%q is also used by %s[%d]", value, list, first)
		return
	}
	seen[value] = len(seen)
}

func (v *validator) mountPath(field, p string) {
	if p == "" {
		return
	}
	if !path.IsAbs(p) {
		v.fail(field, "%q is not an absolute path in the guest", p)
	}
}

func (v *validator) agent(a *Agent) {
	if a == nil {
		return
	}
	if a.Port == 0 {
		v.fail("spec.agent.port", "required field is missing")
	}
	if a.ReadyTimeout != nil && a.ReadyTimeout.Duration <= 0 {
		v.fail("spec.agent.readyTimeout", "must be positive, not %s", a.ReadyTimeout)
	}
}

// missingFiles warns about each file the spec names that does not exist
// here. It may exist on the host that runs the VM, and a disk with a size
// is created when missing, so none of these is an error.
func (v *validator) missingFiles(m *Manifest) ErrorList {
	s := &m.VM.Spec
	var warns ErrorList
	warn := func(field, p string) {
		if p == "" {
			return
		}
		if _, err := os.Stat(m.Resolve(p)); err != nil {
			warns = append(warns, &FieldError{File: m.Path, Line: v.lineOf(field), Field: field,
				Warning: true, Message: fmt.Sprintf("%q does not exist on this host", m.Resolve(p))})
		}
	}
	warn("spec.kernel", s.Kernel)
	warn("spec.initrd", s.Initrd)
	for i, d := range s.Disks {
		if d.Size == nil {
			warn("spec.disks["+strconv.Itoa(i)+"].path", d.Path)
		}
	}
	for i, d := range s.SharedDirectories {
		warn("spec.sharedDirectories["+strconv.Itoa(i)+"].path", d.Path)
	}
	return warns
}

// mibHint suggests a whole number of MiB near q: the binary suffix for a
// decimal one (1Gi for 1G), and the MiB below.
func mibHint(q Quantity) string {
	text := strings.TrimSpace(q.Text)
	if n := len(text); n > 0 && strings.ContainsRune("kMGTPE", rune(text[n-1])) {
		return fmt.Sprintf("use %si, or %dMi for the same size rounded down", text, q.Bytes/mib)
	}
	return fmt.Sprintf("use %dMi", q.Bytes/mib)
}
