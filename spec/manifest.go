package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// MaxManifestSize is the largest manifest file Parse reads.
const MaxManifestSize = 1 << 20

// Manifest is one manifest file as read from disk.
type Manifest struct {
	// Path is the file's path as given to Load or Parse.
	Path string
	// Data is the bytes read.
	Data []byte
	// VM is the decoded manifest, or nil when the document did not decode.
	// It is set, with Err, when the manifest decoded but failed validation.
	VM *VirtualMachine
	// Name is metadata.name when it could be read, even from an invalid
	// manifest.
	Name string
	// Status is the status in the file, when it could be read.
	Status *Status
	// WellFormed is true when the file is one YAML document whose top level
	// is a mapping, so that status may be written into it.
	WellFormed bool
	// Warnings are problems that leave the manifest valid, such as a file
	// the spec names that does not exist on this host, or a status that
	// could not be read.
	Warnings ErrorList
	// Err is nil when the manifest is valid, an ErrorList otherwise.
	Err error
}

// Load reads and parses the manifest at path. It returns an error only when
// the file cannot be read; problems with its content are in the Manifest's
// Err. A file over MaxManifestSize is not read past that size. Anything but
// a regular file (a FIFO, a device, a folder), reached through any symlink,
// is rejected with ErrNotRegular without waiting for a writer.
func Load(path string) (*Manifest, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading manifest %q: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("reading manifest %q: %w", path, ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %q: %w", path, err)
	}
	return Parse(path, data), nil
}

// Parse decodes and validates one manifest. It never panics; every problem
// found is in the result's Err, each with its line where the YAML has one.
// Relative paths in the spec are checked against the folder of path, and a
// missing one is a warning.
func Parse(path string, data []byte) *Manifest {
	m := &Manifest{Path: path, Data: data}
	m.parse()
	return m
}

func (m *Manifest) parse() {
	defer func() {
		// The YAML parser has panicked on crafted input before
		// (CVE-2022-28948, fixed in yaml.v3 3.0.0), and a panic must not
		// take the daemon down.
		if r := recover(); r != nil {
			*m = Manifest{Path: m.Path, Data: m.Data, Err: ErrorList{{File: m.Path,
				Message: fmt.Sprintf("invalid YAML: the parser failed: %v", r), Err: ErrSyntax}}}
		}
	}()
	root, err := parseDocument(m.Path, m.Data)
	if err != nil {
		m.Err = err
		return
	}
	m.WellFormed = true
	m.Name = readName(root)
	m.decode(root)
}

// readName returns metadata.name when it is a scalar, whatever else is
// wrong with the manifest.
func readName(root *yaml.Node) string {
	meta := lookup(root, "metadata")
	if meta == nil || meta.Kind != yaml.MappingNode {
		return ""
	}
	name := lookup(meta, "name")
	if name == nil || name.Kind != yaml.ScalarNode || name.Tag == "!!null" {
		return ""
	}
	return name.Value
}

// lookup returns the value of key in mapping m, or nil. It follows an alias.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

// decode fills VM, Status, Warnings and Err from the parsed document. The
// values of a manifest whose fields did not all decode are still validated,
// leaving out the fields that failed, so that every problem shows at once.
func (m *Manifest) decode(root *yaml.Node) {
	loadSchemas()
	m.Status, m.Warnings = decodeStatus(m.Path, root)
	d := &decoder{file: m.Path, lines: make(map[string]int, 32), bad: map[string]bool{}}
	d.mapping(withoutStatus(root), vmSchema, "")
	vm, err := decodeJSON(d.buf)
	if err != nil {
		m.Err = append(d.errs, fileError(m.Path, 0, err)...)
		return
	}
	vm.Status = m.Status
	v := &validator{file: m.Path, lines: d.lines, bad: d.bad}
	v.validate(vm)
	errs := append(d.errs, v.errs...)
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return a.Line - b.Line })
	errs = truncate(m.Path, errs)
	if len(d.errs) == 0 {
		m.VM = vm
	}
	if len(errs) > 0 {
		m.Err = errs
		return
	}
	m.Warnings = append(m.Warnings, v.missingFiles(m)...)
}

// MaxProblems is the number of problems a Manifest's Err lists; a last
// line counts the rest.
const MaxProblems = 50

func truncate(path string, errs ErrorList) ErrorList {
	if len(errs) <= MaxProblems {
		return errs
	}
	more := &FieldError{File: path, Message: fmt.Sprintf("%d more problems not shown", len(errs)-MaxProblems)}
	return append(errs[:MaxProblems:MaxProblems], more)
}

// withoutStatus returns a copy of the top-level mapping without its status
// members, which are decoded on their own.
func withoutStatus(root *yaml.Node) *yaml.Node {
	c := *root
	c.Content = make([]*yaml.Node, 0, len(root.Content))
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "status" {
			c.Content = append(c.Content, root.Content[i], root.Content[i+1])
		}
	}
	return &c
}

// decodeStatus reads the status member. Problems with it are warnings:
// vmlet rewrites the status, so a damaged one must not stop the VM.
func decodeStatus(path string, root *yaml.Node) (*Status, ErrorList) {
	n := lookup(root, "status")
	if n == nil {
		return nil, nil
	}
	d := &decoder{file: path, lines: make(map[string]int, 32)}
	if !d.value(n, statusSchema, "status") || len(d.errs) > 0 {
		return nil, asWarnings(d.errs)
	}
	st := &Status{}
	if err := strictJSON(d.buf, st); err != nil {
		return nil, ErrorList{{File: path, Line: n.Line, Field: "status", Message: err.Error(), Warning: true}}
	}
	return st, nil
}

func asWarnings(errs ErrorList) ErrorList {
	for _, e := range errs {
		e.Warning = true
	}
	return errs
}

func decodeJSON(data []byte) (*VirtualMachine, error) {
	vm := &VirtualMachine{}
	if err := strictJSON(data, vm); err != nil {
		return nil, err
	}
	return vm, nil
}

// strictJSON decodes the JSON the decoder wrote into out with the strict
// option of sigs.k8s.io/yaml (unknown fields are errors), the JSON half of
// its UnmarshalStrict. The YAML half is the decoder type, which keeps the
// line numbers that a conversion of the whole document would lose.
func strictJSON(data []byte, out any) error {
	dec := sigsyaml.DisallowUnknownFields(json.NewDecoder(bytes.NewReader(data)))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decoding manifest: %w", err)
	}
	return nil
}

// Resolve returns p as an absolute path, resolving a relative one against
// the folder that holds the manifest.
func (m *Manifest) Resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	dir, err := filepath.Abs(filepath.Dir(m.Path))
	if err != nil {
		dir = filepath.Dir(m.Path)
	}
	return filepath.Join(dir, p)
}

// FirstError returns the first problem of an invalid manifest as one line,
// or "" when the manifest is valid.
func (m *Manifest) FirstError() string {
	if m.Err == nil {
		return ""
	}
	var list ErrorList
	if errors.As(m.Err, &list) && len(list) > 0 {
		return list[0].Error()
	}
	first, _, _ := strings.Cut(m.Err.Error(), "\n")
	return first
}

// IsManifestName reports whether a file name in the manifest folder is a
// manifest: it ends in .yaml, .yml or .json and is neither a dotfile nor an
// editor's leftover (a backup ending in ~, a swap file, vim's 4913 probe).
func IsManifestName(name string) bool {
	name = filepath.Base(name)
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}
