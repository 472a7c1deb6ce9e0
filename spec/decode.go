package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder turns a YAML node tree into JSON that encoding/json then decodes
// strictly, following a schema. It records every problem with its line
// instead of stopping at the first, and the line of every field it reads,
// for the validation that follows. A field with a problem is left out of
// the JSON.
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
	buf []byte // the JSON written so far

	// keyIndex maps each large mapping to the keys seen so far in it, each
	// to its first node.
	keyIndex map[*yaml.Node]map[string]*yaml.Node
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

// value appends n, decoded as s, to the JSON. It returns false, having
// appended nothing, when n is null or has a problem.
func (d *decoder) value(n *yaml.Node, s *schema, path string) bool {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return false
	}
	switch s.kind {
	case kindStruct:
		return d.mapping(n, s, path)
	case kindStringMap:
		return d.mapping(n, stringMapSchema, path)
	case kindList:
		return d.list(n, s.elem, path)
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "must be %s, not a %s", scalarName(s), nodeKindName(n))
		return false
	}
	return d.scalar(n, s, path)
}

// stringMapSchema reads a map of strings (labels): any key, text values.
var stringMapSchema = &schema{kind: kindStringMap}

func (d *decoder) scalar(n *yaml.Node, s *schema, path string) bool {
	var ok bool
	switch s.kind {
	case kindString:
		ok = true
	case kindInt:
		return d.integer(n, s, path)
	case kindBool:
		return d.boolean(n, path)
	case kindQuantity:
		ok = d.check(n, path, quantityProblem)
	case kindDuration:
		ok = d.check(n, path, durationProblem)
	default:
		ok = d.check(n, path, timeProblem)
	}
	if ok {
		d.buf = appendJSONString(d.buf, n.Value)
	}
	return ok
}

// mapping appends a mapping as a JSON object. With a struct schema it
// reports unknown fields; with the string map schema every key is known
// and every value is text.
func (d *decoder) mapping(n *yaml.Node, s *schema, path string) bool {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping, not a %s", nodeKindName(n))
		return false
	}
	d.buf = append(d.buf, '{')
	empty := len(d.buf)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name, ok := d.key(n, i, path)
		if !ok {
			continue
		}
		d.member(name, val, s, join(path, name), key.Line, len(d.buf) > empty)
	}
	d.buf = append(d.buf, '}')
	return true
}

// member appends one member of a mapping, with a comma before it unless
// it is the first.
func (d *decoder) member(name string, val *yaml.Node, s *schema, path string, line int, comma bool) {
	field := textSchema
	if s.kind == kindStruct {
		var ok bool
		if field, ok = s.fields[name]; !ok {
			d.unknown(name, s, path, line)
			return
		}
	}
	d.lines[path] = line
	mark := len(d.buf)
	if comma {
		d.buf = append(d.buf, ',')
	}
	d.buf = appendJSONString(d.buf, name)
	d.buf = append(d.buf, ':')
	if !d.value(val, field, path) {
		d.buf = d.buf[:mark]
	}
}

var textSchema = &schema{kind: kindString}

func (d *decoder) unknown(name string, s *schema, path string, line int) {
	known := suggestField(name, s)
	if known == "" {
		d.fail(line, path, "unknown field")
		return
	}
	// The field is there, misspelt: it is not also missing.
	d.markBad(join(parent(path), known))
	d.fail(line, path, "unknown field (did you mean %q?)", known)
}

// key returns the text of the key at index i of mapping m, reporting keys
// that are not plain text, merge keys and duplicates.
func (d *decoder) key(m *yaml.Node, i int, path string) (string, bool) {
	key := m.Content[i]
	if key.Kind != yaml.ScalarNode {
		d.fail(key.Line, path, "a key must be text, not a %s", nodeKindName(key))
		return "", false
	}
	if key.Tag == "!!merge" {
		d.fail(key.Line, join(path, "<<"), "merge keys are not supported")
		return "", false
	}
	if first := d.earlierKey(m, i); first != nil {
		d.fail(key.Line, join(path, key.Value), "duplicate key (first at line %d)", first.Line)
		return "", false
	}
	return key.Value, true
}

// earlierKey returns the first key before index i of mapping m with the
// same text as the key at i, or nil. Mappings of more than a few keys (a
// long list of labels) get an index of their keys, built once.
func (d *decoder) earlierKey(m *yaml.Node, i int) *yaml.Node {
	text := m.Content[i].Value
	if len(m.Content) <= 32 {
		for j := 0; j < i; j += 2 {
			if m.Content[j].Value == text {
				return m.Content[j]
			}
		}
		return nil
	}
	if d.keyIndex == nil {
		d.keyIndex = map[*yaml.Node]map[string]*yaml.Node{}
	}
	index := d.keyIndex[m]
	if index == nil {
		index = map[string]*yaml.Node{}
		d.keyIndex[m] = index
	}
	first, ok := index[text]
	if !ok {
		index[text] = m.Content[i]
		return nil
	}
	return first
}

// list appends a list as a JSON array; an item with a problem is null.
func (d *decoder) list(n *yaml.Node, elem *schema, path string) bool {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "must be a list, not a %s", nodeKindName(n))
		return false
	}
	d.buf = append(d.buf, '[')
	for i, item := range n.Content {
		if i > 0 {
			d.buf = append(d.buf, ',')
		}
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		d.lines[itemPath] = item.Line
		if !d.value(item, elem, itemPath) {
			d.buf = append(d.buf, "null"...)
		}
	}
	d.buf = append(d.buf, ']')
	return true
}

// integer appends a plain decimal integer: an optional sign and digits,
// with no leading zero. Other YAML 1.1 forms (010, 1_0, 0x10, 0b10) are
// rejected because YAML 1.1 and 1.2 read some of them as different values.
func (d *decoder) integer(n *yaml.Node, s *schema, path string) bool {
	if msg := leadingZeroProblem(n); msg != "" {
		d.fail(n.Line, path, "%s", msg)
		return false
	}
	if n.Tag != "!!int" {
		d.fail(n.Line, path, "must be an integer, not %s", quoteScalar(n))
		return false
	}
	if !isDecimal(n.Value) {
		d.fail(n.Line, path, "%s", notDecimalProblem(n.Value))
		return false
	}
	var err error
	if s.unsigned {
		var u uint64
		u, err = strconv.ParseUint(strings.TrimPrefix(n.Value, "+"), 10, s.bits)
		d.buf = strconv.AppendUint(d.buf, u, 10)
	} else {
		var v int64
		v, err = strconv.ParseInt(n.Value, 10, s.bits)
		d.buf = strconv.AppendInt(d.buf, v, 10)
	}
	if err != nil {
		d.fail(n.Line, path, "%s is out of range for this field", n.Value)
		return false
	}
	return true
}

// isDecimal reports whether text is an optional sign followed by digits,
// without a leading zero unless the digits are "0".
func isDecimal(text string) bool {
	digits := strings.TrimLeft(text, "+-")
	if len(text)-len(digits) > 1 || digits == "" {
		return false
	}
	if digits[0] == '0' && len(digits) > 1 {
		return false
	}
	return strings.Trim(digits, "0123456789") == ""
}

// notDecimalProblem returns the problem with an integer in another YAML 1.1
// form (1_0, 0x10, 0b10, 0o10), giving the value YAML 1.1 reads.
func notDecimalProblem(text string) string {
	v, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 0, 64)
	if err != nil {
		return fmt.Sprintf("%q is not allowed: write a plain decimal number", text)
	}
	return fmt.Sprintf("%q is not allowed: write a plain decimal number (%d)", text, v)
}

// leadingZeroProblem returns the problem with an unquoted number of digits
// with a leading zero, such as 010 (8 in YAML 1.1, 10 in YAML 1.2), or "".
func leadingZeroProblem(n *yaml.Node) string {
	text := n.Value
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return ""
	}
	sign := ""
	if text != "" && (text[0] == '-' || text[0] == '+') {
		sign, text = text[:1], text[1:]
	}
	if len(text) < 2 || text[0] != '0' || strings.Trim(text, "0123456789") != "" {
		return ""
	}
	decimal := strings.TrimLeft(text, "0")
	if decimal == "" {
		decimal = "0"
	}
	if sign == "-" {
		decimal = "-" + decimal
	}
	octal, err := strconv.ParseInt(sign+text, 8, 64)
	if err != nil || strconv.FormatInt(octal, 10) == decimal {
		return fmt.Sprintf("%q has a leading zero: write %s", n.Value, decimal)
	}
	return fmt.Sprintf("%q is ambiguous (octal in YAML 1.1, decimal in 1.2): write %d or %s", n.Value, octal, decimal)
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	if n.Tag == "!!bool" {
		v, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err == nil {
			d.buf = strconv.AppendBool(d.buf, v)
			return true
		}
	}
	switch strings.ToLower(n.Value) {
	case "yes", "no", "on", "off", "y", "n":
		d.fail(n.Line, path, "%s is not a boolean in YAML 1.2 (use true or false)", quoteScalar(n))
	default:
		d.fail(n.Line, path, "must be true or false, not %s", quoteScalar(n))
	}
	return false
}

// check reports the problem that problem finds with n's text, if any.
func (d *decoder) check(n *yaml.Node, path string, problem func(string) string) bool {
	if msg := problem(n.Value); msg != "" {
		d.fail(n.Line, path, "%s", msg)
		return false
	}
	return true
}

func quantityProblem(text string) string {
	if _, err := ParseQuantity(text); err != nil {
		return err.Error()
	}
	return ""
}

func durationProblem(text string) string {
	if _, err := time.ParseDuration(text); err != nil {
		return fmt.Sprintf("%q is not a duration (use 30s, 1m30s)", text)
	}
	return ""
}

func timeProblem(text string) string {
	if _, err := time.Parse(time.RFC3339, text); err != nil {
		return fmt.Sprintf("%q is not an RFC 3339 time", text)
	}
	return ""
}

// appendJSONString appends s as a JSON string.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			quoted, _ := json.Marshal(s)
			return append(buf, quoted...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
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
// quoted it or when it is not one line of printable text (a block scalar),
// bare otherwise.
func quoteScalar(n *yaml.Node) string {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 || !isPrintable(n.Value) {
		return strconv.Quote(n.Value)
	}
	return n.Value
}
