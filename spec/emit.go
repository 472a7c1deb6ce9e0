package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The status block is written by a small emitter from the status's JSON
// rather than by the YAML encoder, which cost most of a status edit. The
// JSON keeps the custom encodings of the fields (times, quantities) and
// the members in the order of the Go type. Every string goes on one line:
// plain where YAML reads it back as the same string, double-quoted with
// escapes otherwise.

// jsonValue is one value of a JSON document: an object (keys and items), an
// array (items) or a scalar as YAML should show it.
type jsonValue struct {
	object bool
	array  bool
	keys   []string
	items  []*jsonValue
	scalar string
}

// blockYAML returns v, which must encode as a JSON object, as a block YAML
// mapping whose keys are indented by indent spaces, with unit more spaces
// per nesting level. It returns "" for an empty object.
func blockYAML(v any, indent, unit int) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := &jsonParser{data: data}
	root, err := p.value()
	if err != nil {
		return "", fmt.Errorf("reading the JSON of %T: %w", v, err)
	}
	if !root.object {
		return "", fmt.Errorf("%T does not encode as a JSON object", v)
	}
	e := &emitter{unit: unit}
	e.mapping(root, indent, false)
	return e.b.String(), nil
}

type emitter struct {
	b    strings.Builder
	unit int
}

// mapping writes the members of m at indent; the first goes on the current
// line when inline is set (after a sequence's "- ").
func (e *emitter) mapping(m *jsonValue, indent int, inline bool) {
	for i, key := range m.keys {
		if i > 0 || !inline {
			e.b.WriteString(strings.Repeat(" ", indent))
		}
		e.b.WriteString(key)
		e.b.WriteByte(':')
		e.afterKey(m.items[i], indent)
	}
}

func (e *emitter) afterKey(v *jsonValue, indent int) {
	switch {
	case v.object && len(v.keys) > 0:
		e.b.WriteByte('\n')
		e.mapping(v, indent+e.unit, false)
	case v.array && len(v.items) > 0:
		e.b.WriteByte('\n')
		e.sequence(v, indent+e.unit)
	default:
		e.b.WriteString(" " + v.scalar + "\n")
	}
}

func (e *emitter) sequence(s *jsonValue, indent int) {
	for _, item := range s.items {
		e.b.WriteString(strings.Repeat(" ", indent) + "-")
		switch {
		case item.object && len(item.keys) > 0:
			e.b.WriteByte(' ')
			e.mapping(item, indent+2, true)
		case item.array && len(item.items) > 0:
			e.b.WriteByte('\n')
			e.sequence(item, indent+e.unit)
		default:
			e.b.WriteString(" " + item.scalar + "\n")
		}
	}
}

// jsonParser reads the compact JSON that encoding/json writes.
type jsonParser struct {
	data []byte
	i    int
}

func (p *jsonParser) value() (*jsonValue, error) {
	if p.i >= len(p.data) {
		return nil, errEdit
	}
	switch p.data[p.i] {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		s, err := p.str()
		return &jsonValue{scalar: yamlString(s)}, err
	}
	start := p.i
	for p.i < len(p.data) && bytes.IndexByte([]byte(",]}"), p.data[p.i]) < 0 {
		p.i++
	}
	return &jsonValue{scalar: string(p.data[start:p.i])}, nil
}

func (p *jsonParser) object() (*jsonValue, error) {
	v := &jsonValue{object: true, scalar: "{}"}
	p.i++ // {
	for p.i < len(p.data) && p.data[p.i] != '}' {
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.i++ // :
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		v.keys, v.items = append(v.keys, yamlString(key)), append(v.items, item)
		p.skipComma()
	}
	p.i++ // }
	return v, nil
}

func (p *jsonParser) array() (*jsonValue, error) {
	v := &jsonValue{array: true, scalar: "[]"}
	p.i++ // [
	for p.i < len(p.data) && p.data[p.i] != ']' {
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, item)
		p.skipComma()
	}
	p.i++ // ]
	return v, nil
}

func (p *jsonParser) skipComma() {
	if p.i < len(p.data) && p.data[p.i] == ',' {
		p.i++
	}
}

// str reads a JSON string and returns its text.
func (p *jsonParser) str() (string, error) {
	end, err := quotedEnd(p.data, p.i)
	if err != nil {
		return "", err
	}
	raw := p.data[p.i:end]
	p.i = end
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err = json.Unmarshal(raw, &s)
	return s, err
}

// yamlString returns s as a YAML scalar that reads back as the string s:
// plain when that is safe, double-quoted otherwise.
func yamlString(s string) string {
	if plainSafe(s) {
		return s
	}
	return doubleQuoted(s)
}

// doubleQuoted returns s as a YAML double-quoted scalar on one line. Line
// breaks, tabs and every character that YAML does not allow raw are
// written as escapes; invalid UTF-8 becomes U+FFFD.
func doubleQuoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case yamlPrintable(r):
			b.WriteRune(r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			fmt.Fprintf(&b, "\\U%08X", r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// yamlPrintable reports whether r may appear raw inside a double-quoted
// scalar on one line. That is YAML 1.2's c-printable set without the byte
// order mark, the tab, and the characters that the parser treats as line
// breaks (LF, CR, NEL, LS, PS).
func yamlPrintable(r rune) bool {
	switch {
	case r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xFEFF:
		return false
	case r >= 0x20 && r <= 0x7E:
		return true
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD:
		return true
	}
	return r >= 0x10000 && r <= 0x10FFFF
}

// plainSafe reports whether s can be written as a plain scalar that every
// YAML reader takes as this string. It starts with a letter, holds only
// letters, digits, spaces and ._/-, does not end with a space, and is not
// a word that YAML 1.1 or 1.2 reads as a boolean or null. A hex hash that
// starts with a digit is safe too, when no number syntax can read it.
func plainSafe(s string) bool {
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		return hexLike(s)
	}
	if s == "" || !isLetter(s[0]) || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && strings.IndexByte(" ._/-", c) < 0 {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null":
		return false
	}
	return true
}

func isLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// hexLike reports whether s is letters and digits only, with a letter that
// no YAML number uses (not e for exponents, nor x, o or b for bases), and
// without a base prefix.
func hexLike(s string) bool {
	if len(s) > 1 && s[0] == '0' && strings.IndexByte("xXoObB", s[1]) >= 0 {
		return false // 0x1F, 0o17, 0b101: integers in some YAML version
	}
	numberFree := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case isLetter(c):
			numberFree = numberFree || strings.IndexByte("eExXoObB", c) < 0
		default:
			return false
		}
	}
	return numberFree
}
