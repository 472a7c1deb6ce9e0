package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ReplaceStatus returns data with its top-level status member replaced by
// st, or added as the last member of the top-level mapping where there is
// none. A nil st removes the member. Every byte outside the member is kept.
// The status is written in the document's own style: a block in block
// YAML, a member of the mapping in flow-style YAML and JSON. ReplaceStatus
// does not modify data; it fails when data is not one well-formed YAML
// document whose top level is a mapping.
func ReplaceStatus(data []byte, st *Status) ([]byte, error) {
	root, err := parseDocument("", data)
	if err != nil {
		return nil, fmt.Errorf("writing status: %w", err)
	}
	e := &editor{t: newText(data), root: root}
	out, err := e.replaceStatus(st)
	if err != nil {
		return nil, fmt.Errorf("writing status: %w", err)
	}
	if e.plainBlock() {
		// A member of a plain block mapping ends where the next key's line
		// starts, so the edit cannot reach another member, and the encoder
		// writes valid YAML. FuzzReplaceStatus checks both.
		return out, nil
	}
	// In flow style the end of a member is found by scanning the text, and
	// unusual block mappings may defeat the line rule: the result is
	// parsed again before it can reach a file.
	if err := checkStatus(root, out, st); err != nil {
		return nil, fmt.Errorf("writing status: %w", err)
	}
	return out, nil
}

// editor edits the text of a parsed document in place.
type editor struct {
	t    *text
	root *yaml.Node
}

func (e *editor) replaceStatus(st *Status) ([]byte, error) {
	i, err := memberIndex(e.root, "status")
	if err != nil {
		return nil, err
	}
	if e.root.Style&yaml.FlowStyle != 0 {
		return e.flowStatus(i, st)
	}
	return e.blockStatus(i, st)
}

// memberIndex returns the index in m.Content of key, or -1.
func memberIndex(m *yaml.Node, key string) (int, error) {
	found := -1
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			continue
		}
		if found >= 0 {
			return 0, fmt.Errorf("%w: the mapping has %q twice", errEdit, key)
		}
		found = i
	}
	return found, nil
}

func (e *editor) blockStatus(i int, st *Status) ([]byte, error) {
	if i < 0 && st == nil {
		return e.t.data, nil
	}
	if i < 0 {
		return e.appendBlock(st)
	}
	key := e.root.Content[i]
	if err := e.checkBlockMember(i); err != nil {
		return nil, err
	}
	start, end := e.blockRegion(i)
	if st == nil {
		return splice(e.t.data, e.trimBreakBefore(start, end), end, ""), nil
	}
	endsWithBreak := end > start && breakBefore(e.t.data, end)
	repl, err := e.blockText(st, key.Column-1, endsWithBreak)
	if err != nil {
		return nil, err
	}
	return splice(e.t.data, start, end, repl), nil
}

// plainBlock reports whether the top-level mapping is in block style with
// every key a scalar that starts its line, all at one column.
func (e *editor) plainBlock() bool {
	if e.root.Style&yaml.FlowStyle != 0 || len(e.root.Content) == 0 {
		return false
	}
	column := e.root.Content[0].Column
	for i := 0; i+1 < len(e.root.Content); i += 2 {
		key := e.root.Content[i]
		if key.Kind != yaml.ScalarNode || key.Column != column || key.Value == "" || !e.startsLine(key) {
			return false
		}
	}
	return true
}

// startsLine reports whether only spaces come before n on its line.
func (e *editor) startsLine(n *yaml.Node) bool {
	before := e.t.data[e.t.lineStart(n.Line):e.t.offset(n.Line, n.Column)]
	return len(bytes.Trim(before, " ")) == 0
}

// checkBlockMember rejects the members whose lines blockRegion cannot
// replace safely: a key that does not start its line (a "? " complex key),
// and a value that holds an anchor, which an alias elsewhere may use.
func (e *editor) checkBlockMember(i int) error {
	if !e.startsLine(e.root.Content[i]) {
		return fmt.Errorf("%w: the status key does not start its line", errEdit)
	}
	if hasAnchor(e.root.Content[i+1]) {
		return fmt.Errorf("%w: the status holds an anchor", errEdit)
	}
	return nil
}

func hasAnchor(n *yaml.Node) bool {
	if n.Anchor != "" {
		return true
	}
	for _, c := range n.Content {
		if hasAnchor(c) {
			return true
		}
	}
	return false
}

// blockRegion returns the byte range of the member at i of a block mapping.
// It starts at its key's line and ends with the last line, before the next
// member, that has more than blanks and comments at the key's indentation.
// Those comments stay because they belong to what follows.
func (e *editor) blockRegion(i int) (start, end int) {
	t, key := e.t, e.root.Content[i]
	start = t.lineStart(key.Line)
	bound := t.lines() + 1
	if i+2 < len(e.root.Content) {
		bound = e.root.Content[i+2].Line
	}
	last := key.Line
	for l := key.Line + 1; l < bound && !e.docMarker(l); l++ {
		n, blankOrComment := t.indent(l)
		if len(bytes.TrimSpace(t.lineText(l))) == 0 {
			continue
		}
		if !blankOrComment || n > key.Column-1 {
			last = l
		}
	}
	return start, t.lineStart(last + 1)
}

// trimBreakBefore moves start back over the line break before it when the
// region [start, end) ends the file without a line break of its own. Then
// removing a member appended to a file with no trailing newline gives that
// file back.
func (e *editor) trimBreakBefore(start, end int) int {
	data := e.t.data
	if end < len(data) || start == 0 || breakBefore(data, end) {
		return start
	}
	if start >= 2 && data[start-2] == '\r' && data[start-1] == '\n' {
		return start - 2
	}
	if breakBefore(data, start) {
		return start - 1
	}
	return start
}

// docMarker reports whether line is a document start or end marker.
func (e *editor) docMarker(line int) bool {
	b := e.t.lineText(line)
	if !bytes.HasPrefix(b, []byte("---")) && !bytes.HasPrefix(b, []byte("...")) {
		return false
	}
	return len(b) == 3 || b[3] == ' ' || b[3] == '\t'
}

func breakBefore(data []byte, end int) bool {
	c := data[end-1]
	return c == '\n' || c == '\r' || c == 0x85 || c == 0xa8 || c == 0xa9
}

// appendBlock adds the status as the last member of a block mapping, at
// the end of the document or before its end marker.
func (e *editor) appendBlock(st *Status) ([]byte, error) {
	t := e.t
	at := len(t.data)
	last := e.root.Content[len(e.root.Content)-1]
	for l := last.Line + 1; l <= t.lines(); l++ {
		if e.docMarker(l) && bytes.HasPrefix(t.lineText(l), []byte("...")) {
			// The document ends here: what follows is outside it.
			at = t.lineStart(l)
			break
		}
	}
	column := e.root.Content[0].Column
	if at < len(t.data) || (at > 0 && breakBefore(t.data, at)) {
		repl, err := e.blockText(st, column-1, true)
		return splice(t.data, at, at, repl), err
	}
	repl, err := e.blockText(st, column-1, false)
	if at > 0 {
		repl = t.eol() + repl
	}
	return splice(t.data, at, at, repl), err
}

// blockText returns "status:" and the status in block YAML, each line
// indented by indent spaces, with the document's line breaks.
func (e *editor) blockText(st *Status, indent int, trailingBreak bool) (string, error) {
	body, err := blockYAML(st, e.indentUnit(), e.indentUnit())
	if err != nil {
		return "", fmt.Errorf("encoding status: %w", err)
	}
	text := "status:\n" + body
	if body == "" {
		text = "status: {}\n"
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	prefix := strings.Repeat(" ", indent)
	for i, l := range lines {
		lines[i] = prefix + l
	}
	out := strings.Join(lines, e.t.eol())
	if trailingBreak {
		out += e.t.eol()
	}
	return out, nil
}

// indentUnit returns how far the document indents a nested block mapping,
// or 2 where it has none.
func (e *editor) indentUnit() int {
	for i := 0; i+1 < len(e.root.Content); i += 2 {
		key, val := e.root.Content[i], e.root.Content[i+1]
		if val.Kind == yaml.MappingNode && val.Style&yaml.FlowStyle == 0 && len(val.Content) > 0 {
			if unit := val.Content[0].Column - key.Column; unit > 0 {
				return unit
			}
		}
	}
	return 2
}

func (e *editor) flowStatus(i int, st *Status) ([]byte, error) {
	if i < 0 && st == nil {
		return e.t.data, nil
	}
	if i < 0 {
		return e.appendFlow(st)
	}
	val := e.root.Content[i+1]
	start := e.t.offset(val.Line, val.Column)
	end, err := e.valueEnd(start)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return e.removeFlowMember(i, end)
	}
	repl, err := e.flowValue(st, e.lineIndent(e.root.Content[i].Line))
	return splice(e.t.data, start, end, repl), err
}

// valueEnd returns the end of the flow value at start. A value with an
// anchor, tag or alias is not edited.
func (e *editor) valueEnd(start int) (int, error) {
	if start >= len(e.t.data) || strings.IndexByte("&!*", e.t.data[start]) >= 0 {
		return 0, fmt.Errorf("%w: the value has an anchor, tag or alias", errEdit)
	}
	end, _, err := flowEnd(e.t.data, start)
	return end, err
}

// removeFlowMember removes the member at i, which ends at end, with the
// comma that separates it from its neighbour.
func (e *editor) removeFlowMember(i, end int) ([]byte, error) {
	data := e.t.data
	key := e.root.Content[i]
	start := e.t.offset(key.Line, key.Column)
	if i > 0 {
		j := start - 1
		for j >= 0 && isSpace(data[j]) {
			j--
		}
		if j < 0 || data[j] != ',' {
			return nil, fmt.Errorf("%w: no comma before the status member", errEdit)
		}
		return splice(data, j, end, ""), nil
	}
	j := skipSpace(data, end)
	if j < len(data) && data[j] == ',' {
		end = skipSpace(data, j+1)
	}
	return splice(data, start, end, ""), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// appendFlow adds the status as the last member of a flow mapping.
func (e *editor) appendFlow(st *Status) ([]byte, error) {
	data := e.t.data
	open := e.t.offset(e.root.Line, e.root.Column)
	end, last, err := collectionEnd(data, open)
	if err != nil {
		return nil, err
	}
	multiline := bytes.ContainsAny(data[open:end], "\r\n")
	compact := !multiline && !bytes.Contains(data[open:end], []byte(": "))
	indent := e.lastMemberIndent()
	member, err := e.flowMember(st, indent, compact)
	if err != nil {
		return nil, err
	}
	sep := " "
	switch {
	case multiline:
		sep = e.t.eol() + strings.Repeat(" ", indent)
	case compact:
		sep = ""
	}
	switch {
	case len(e.root.Content) == 0:
		return splice(data, end-1, end-1, member), nil
	case data[last-1] == ',':
		// Keep the trailing comma the user wrote, after the new member.
		return splice(data, last, last, sep+member+","), nil
	}
	return splice(data, last, last, ","+sep+member), nil
}

func (e *editor) flowMember(st *Status, indent int, compact bool) (string, error) {
	key := "status"
	if len(e.root.Content) > 0 && e.root.Content[0].Style&yaml.DoubleQuotedStyle != 0 {
		key = `"status"`
	}
	value, err := e.flowValue(st, indent)
	if compact {
		return key + ":" + value, err
	}
	return key + ": " + value, err
}

// lastMemberIndent returns the indentation of the line on which the last
// member of a flow mapping starts: the column of its key where the key
// starts the line.
func (e *editor) lastMemberIndent() int {
	if len(e.root.Content) < 2 {
		return e.lineIndent(e.root.Line) + 2
	}
	key := e.root.Content[len(e.root.Content)-2]
	start := e.t.lineStart(key.Line)
	at := e.t.offset(key.Line, key.Column)
	if len(bytes.Trim(e.t.data[start:at], " \t")) == 0 {
		return key.Column - 1
	}
	return e.lineIndent(key.Line)
}

// flowValue returns the status as JSON, which flow-style YAML accepts too:
// indented to sit at indent spaces in a multi-line document, or compact
// when indent is negative.
func (e *editor) flowValue(st *Status, indent int) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent >= 0 && e.multiline() {
		enc.SetIndent(strings.Repeat(" ", indent), strings.Repeat(" ", e.flowUnit()))
	}
	if err := enc.Encode(st); err != nil {
		return "", fmt.Errorf("encoding status: %w", err)
	}
	out := strings.TrimSuffix(buf.String(), "\n")
	return strings.ReplaceAll(out, "\n", e.t.eol()), nil
}

func (e *editor) multiline() bool {
	return len(e.root.Content) > 0 && e.root.Content[0].Line != e.root.Line
}

// flowUnit returns the indentation of the first member of a multi-line
// flow mapping relative to its opening line, or 2.
func (e *editor) flowUnit() int {
	if !e.multiline() {
		return 2
	}
	unit := e.root.Content[0].Column - 1 - e.lineIndent(e.root.Line)
	if unit <= 0 {
		return 2
	}
	return unit
}

func (e *editor) lineIndent(line int) int {
	n, _ := e.t.indent(line)
	return n
}

func splice(data []byte, start, end int, repl string) []byte {
	out := make([]byte, 0, len(data)-(end-start)+len(repl))
	out = append(out, data[:start]...)
	out = append(out, repl...)
	return append(out, data[end:]...)
}

// checkStatus parses the edited document and checks that it has the other
// members of the original, in order, and st as its status, so that an edit
// gone wrong fails instead of reaching the file.
func checkStatus(original *yaml.Node, out []byte, st *Status) error {
	root, err := parseDocument("", out)
	if err != nil {
		return fmt.Errorf("%w: the result does not parse: %w", errEdit, err)
	}
	if !slices.Equal(otherKeys(original), otherKeys(root)) {
		return fmt.Errorf("%w: the result's other members differ", errEdit)
	}
	loadSchemas()
	got, warns := decodeStatus("", root)
	if len(warns) > 0 {
		return fmt.Errorf("%w: the result's status does not decode: %w", errEdit, warns)
	}
	want, _ := json.Marshal(st)
	have, _ := json.Marshal(got)
	if st == nil && got == nil {
		return nil
	}
	if !bytes.Equal(want, have) {
		return fmt.Errorf("%w: the result's status differs", errEdit)
	}
	return nil
}

// otherKeys returns the tag and text of each key of mapping m but status.
func otherKeys(m *yaml.Node) []string {
	var keys []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Value != "status" {
			keys = append(keys, k.Tag+" "+k.Value+" "+m.Content[i+1].Tag)
		}
	}
	return keys
}
