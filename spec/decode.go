package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder turns a YAML node tree into plain values (maps, lists, strings,
// int64, bool) that encoding/json can take, following a schema. It records
// every problem with its line instead of stopping at the first, and the
// line of every field it reads, for the validation that follows.
//
// A string field takes the scalar's text as the user wrote it, whatever
// YAML would resolve it to, so that `no`, `off` or `1.10` never become
// false or 1.1.
type decoder struct {
	file  string
	errs  ErrorList
	lines map[string]int
	// bad holds the fields that had a problem, so that validation does not
	// report them again as missing.
	bad map[string]bool
}

func (d *decoder) fail(line int, field, format string, args ...any) {
	d.markBad(field)
	d.errs = append(d.errs, &FieldError{
		File: d.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...),
	})
}

func (d *decoder) markBad(field string) {
	if d.bad != nil {
		d.bad[field] = true
	}
}

// value decodes n as s. It returns false when n is null or has a problem,
// so that the field is left out.
func (d *decoder) value(n *yaml.Node, s *schema, path string) (any, bool) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, false
	}
	switch s.kind {
	case kindStruct:
		return d.mapping(n, s, path)
	case kindStringMap:
		return d.stringMap(n, path)
	case kindList:
		return d.list(n, s.elem, path)
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "must be %s, not a %s", scalarName(s), nodeKindName(n))
		return nil, false
	}
	return d.scalar(n, s, path)
}

func (d *decoder) scalar(n *yaml.Node, s *schema, path string) (any, bool) {
	switch s.kind {
	case kindString:
		return n.Value, true
	case kindInt:
		return d.integer(n, s, path)
	case kindBool:
		return d.boolean(n, path)
	case kindQuantity:
		return d.quantity(n, path)
	case kindDuration:
		return d.duration(n, path)
	}
	return d.time(n, path)
}

func (d *decoder) mapping(n *yaml.Node, s *schema, path string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping, not a %s", nodeKindName(n))
		return nil, false
	}
	out := make(map[string]any, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(key, seen, path)
		if !ok {
			continue
		}
		d.member(out, name, val, s, join(path, name), key.Line)
	}
	return out, true
}

func (d *decoder) member(out map[string]any, name string, val *yaml.Node, s *schema, path string, line int) {
	field, ok := s.fields[name]
	if !ok {
		known := suggestField(name, s)
		if known != "" {
			// The field is there, misspelt: it is not also missing.
			d.markBad(join(parent(path), known))
			d.fail(line, path, "unknown field (did you mean %q?)", known)
			return
		}
		d.fail(line, path, "unknown field")
		return
	}
	d.lines[path] = line
	if v, ok := d.value(val, field, path); ok {
		out[name] = v
	}
}

// key returns the text of a mapping key, reporting keys that are not plain
// text, merge keys and duplicates.
func (d *decoder) key(key *yaml.Node, seen map[string]int, path string) (string, bool) {
	if key.Kind != yaml.ScalarNode {
		d.fail(key.Line, path, "a key must be text, not a %s", nodeKindName(key))
		return "", false
	}
	if key.Tag == "!!merge" {
		d.fail(key.Line, join(path, "<<"), "merge keys are not supported")
		return "", false
	}
	if first, dup := seen[key.Value]; dup {
		d.fail(key.Line, join(path, key.Value), "duplicate key (first at line %d)", first)
		return "", false
	}
	seen[key.Value] = key.Line
	return key.Value, true
}

func (d *decoder) stringMap(n *yaml.Node, path string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping, not a %s", nodeKindName(n))
		return nil, false
	}
	out := make(map[string]any, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(key, seen, path)
		if !ok {
			continue
		}
		if v, ok := d.value(val, &schema{kind: kindString}, join(path, name)); ok {
			out[name] = v
		}
	}
	return out, true
}

func (d *decoder) list(n *yaml.Node, elem *schema, path string) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "must be a list, not a %s", nodeKindName(n))
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		d.lines[itemPath] = item.Line
		v, ok := d.value(item, elem, itemPath)
		if !ok {
			v = nil
		}
		out = append(out, v)
	}
	return out, true
}

func (d *decoder) integer(n *yaml.Node, s *schema, path string) (any, bool) {
	if n.Tag != "!!int" {
		d.fail(n.Line, path, "must be an integer, not %s", quoteScalar(n))
		return nil, false
	}
	text := strings.ReplaceAll(n.Value, "_", "")
	var v int64
	var err error
	if s.unsigned {
		var u uint64
		u, err = strconv.ParseUint(strings.TrimPrefix(text, "+"), 0, s.bits)
		v = int64(u)
	} else {
		v, err = strconv.ParseInt(text, 0, s.bits)
	}
	if err != nil {
		d.fail(n.Line, path, "%s is out of range for this field", n.Value)
		return nil, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (any, bool) {
	if n.Tag == "!!bool" {
		v, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err == nil {
			return v, true
		}
	}
	switch strings.ToLower(n.Value) {
	case "yes", "no", "on", "off", "y", "n":
		d.fail(n.Line, path, "%s is not a boolean in YAML 1.2 (use true or false)", quoteScalar(n))
	default:
		d.fail(n.Line, path, "must be true or false, not %s", quoteScalar(n))
	}
	return nil, false
}

func (d *decoder) quantity(n *yaml.Node, path string) (any, bool) {
	if _, err := ParseQuantity(n.Value); err != nil {
		d.fail(n.Line, path, "%s", err)
		return nil, false
	}
	return n.Value, true
}

func (d *decoder) duration(n *yaml.Node, path string) (any, bool) {
	if _, err := time.ParseDuration(n.Value); err != nil {
		d.fail(n.Line, path, "%q is not a duration (use 30s, 1m30s)", n.Value)
		return nil, false
	}
	return n.Value, true
}

func (d *decoder) time(n *yaml.Node, path string) (any, bool) {
	if _, err := time.Parse(time.RFC3339, n.Value); err != nil {
		d.fail(n.Line, path, "%q is not an RFC 3339 time", n.Value)
		return nil, false
	}
	return n.Value, true
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// suggestField returns the field the user probably meant, matching case
// insensitively, or "".
func suggestField(name string, s *schema) string {
	for known := range s.fields {
		if strings.EqualFold(known, name) {
			return known
		}
	}
	return ""
}

// parent returns the path of the field that holds path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func scalarName(s *schema) string {
	switch s.kind {
	case kindInt:
		return "an integer"
	case kindBool:
		return "true or false"
	case kindQuantity:
		return "a quantity"
	case kindDuration:
		return "a duration"
	case kindTime:
		return "a time"
	}
	return "text"
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "scalar"
}

// quoteScalar shows a scalar as the user wrote it: quoted when the user
// quoted it, bare otherwise.
func quoteScalar(n *yaml.Node) string {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return strconv.Quote(n.Value)
	}
	return n.Value
}
