package spec

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// parseDocument checks the file as a whole and parses its one document.
func parseDocument(path string, data []byte) (*yaml.Node, error) {
	if err := checkFile(data); err != nil {
		return nil, fileError(path, 0, err)
	}
	if root := docCache.get(data); root != nil {
		return root, nil
	}
	root, err := parseYAML(path, data)
	if err == nil {
		docCache.put(data, root)
	}
	return root, err
}

func parseYAML(path string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, syntaxError(path, data, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fileError(path, next.Line, ErrMultiDocument)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fileError(path, doc.Line, ErrNotMapping)
	}
	root := doc.Content[0]
	if bytes.IndexByte(data, '*') >= 0 && aliasesExcessive(root) {
		return nil, fileError(path, 0, ErrAliases)
	}
	return root, nil
}

func checkFile(data []byte) error {
	switch {
	case len(data) > MaxManifestSize:
		return ErrTooLarge
	case len(bytes.TrimSpace(data)) == 0:
		return ErrEmpty
	case bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data):
		return ErrBinary
	}
	return nil
}

func fileError(path string, line int, err error) ErrorList {
	return ErrorList{{File: path, Line: line, Message: err.Error(), Err: err}}
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// syntaxError turns a YAML parser error into a FieldError with its line.
func syntaxError(path string, data []byte, err error) ErrorList {
	if errors.Is(err, io.EOF) {
		return fileError(path, 0, ErrEmpty)
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	line, msg := 0, first
	if sub := yamlLine.FindStringSubmatch(first); sub != nil {
		line, _ = strconv.Atoi(sub[1])
		msg = sub[2]
	}
	// go.yaml.in/yaml/v3 v3.0.6 numbers its parser's errors from zero and
	// its scanner's from one. The parser's all start "did not find expected"
	// (an unclosed [ or {, a misindented key): move them to the right line.
	if line > 0 && strings.HasPrefix(msg, "did not find expected") {
		line++
	}
	// An error found at the end of the input (an unclosed [ on the last
	// line) is numbered after the last line: show the last line.
	line = min(line, lineCount(data))
	return ErrorList{{File: path, Line: line, Message: "invalid YAML: " + msg, Err: ErrSyntax}}
}

// aliasesExcessive reports whether expanding every alias would make the
// document much larger than its text, as a "billion laughs" file would.
func aliasesExcessive(root *yaml.Node) bool {
	memo := map[*yaml.Node]int{}
	real := countNodes(root)
	return expandedSize(root, memo) > 4*real+1000
}

func countNodes(n *yaml.Node) int {
	total := 1
	for _, c := range n.Content {
		total += countNodes(c)
	}
	return total
}

// expandedSize counts the nodes of n with every alias expanded. The memo
// keeps it linear in the document however deeply aliases nest; it caps
// each count so that it cannot overflow.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if size, ok := memo[n]; ok {
		return size
	}
	memo[n] = 1
	size := 1
	for _, c := range n.Content {
		size = min(size+expandedSize(c, memo), 1<<40)
	}
	memo[n] = size
	return size
}

// lineCount returns the number of lines in data, counting a last line that
// has no newline.
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}
