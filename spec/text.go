package spec

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// errEdit means an edit of the user's text could not find what it needed;
// the file is then left alone.
var errEdit = errors.New("cannot locate the member to edit")

// text maps the lines and columns of yaml.v3 nodes to byte offsets. It
// counts line breaks as the YAML parser does (LF, CR, CRLF, NEL, LS, PS)
// and columns in characters.
type text struct {
	data   []byte
	starts []int // byte offset where each line begins; line 1 is starts[0]
}

func newText(data []byte) *text {
	t := &text{data: data, starts: make([]int, 1, 64)}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		t.starts[0] = 3
	}
	for i := t.starts[0]; i < len(data); {
		n := breakLen(data[i:])
		if n == 0 {
			i++
			continue
		}
		i += n
		t.starts = append(t.starts, i)
	}
	return t
}

// breakLen returns the length of the line break at the start of b, or 0.
func breakLen(b []byte) int {
	switch {
	case b[0] == '\n':
		return 1
	case b[0] == '\r' && len(b) > 1 && b[1] == '\n':
		return 2
	case b[0] == '\r':
		return 1
	case bytes.HasPrefix(b, []byte("\u0085")):
		return 2
	case bytes.HasPrefix(b, []byte("\u2028")), bytes.HasPrefix(b, []byte("\u2029")):
		return 3
	}
	return 0
}

func (t *text) lines() int { return len(t.starts) }

// lineStart returns the offset of the start of line (1-based); past the
// last line it returns the length of the data.
func (t *text) lineStart(line int) int {
	if line-1 >= len(t.starts) {
		return len(t.data)
	}
	return t.starts[line-1]
}

// lineEnd returns the offset of the line break that ends line, or the end
// of the data.
func (t *text) lineEnd(line int) int {
	if line >= len(t.starts) {
		return len(t.data)
	}
	end := t.starts[line]
	b := t.data[:end]
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
		return end - 2
	case bytes.HasSuffix(b, []byte("\n")), bytes.HasSuffix(b, []byte("\r")):
		return end - 1
	case bytes.HasSuffix(b, []byte("\u0085")):
		return end - 2
	}
	return end - 3
}

// lineText returns line without its line break.
func (t *text) lineText(line int) []byte {
	return t.data[t.lineStart(line):t.lineEnd(line)]
}

// offset returns the byte offset of a 1-based line and column.
func (t *text) offset(line, column int) int {
	i := t.lineStart(line)
	for c := 1; c < column && i < len(t.data); c++ {
		_, size := utf8.DecodeRune(t.data[i:])
		i += size
	}
	return i
}

// eol returns the document's line break: CRLF when its first line ends
// with one, LF otherwise.
func (t *text) eol() string {
	if i := bytes.IndexByte(t.data, '\n'); i > 0 && t.data[i-1] == '\r' {
		return "\r\n"
	}
	return "\n"
}

// indent returns the number of spaces that start line, and whether the line
// holds nothing but spaces, tabs or a comment.
func (t *text) indent(line int) (n int, blankOrComment bool) {
	b := t.lineText(line)
	for n < len(b) && b[n] == ' ' {
		n++
	}
	rest := bytes.TrimLeft(b[n:], " \t")
	return n, len(rest) == 0 || rest[0] == '#'
}

// flowEnd returns the offset just past the flow collection or quoted or
// plain scalar that starts at i, and the offset just past the last token
// inside a collection before its closing bracket (for appending a member).
func flowEnd(data []byte, i int) (end, lastToken int, err error) {
	if i >= len(data) {
		return 0, 0, errEdit
	}
	switch data[i] {
	case '{', '[':
		return collectionEnd(data, i)
	case '"', '\'':
		end, err := quotedEnd(data, i)
		return end, end, err
	}
	end = plainEnd(data, i)
	return end, end, nil
}

func collectionEnd(data []byte, i int) (end, lastToken int, err error) {
	depth := 0
	lastToken = i + 1
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"' || c == '\'':
			if i, err = quotedEnd(data, i); err != nil {
				return 0, 0, err
			}
			lastToken = i
			continue
		case c == '#' && (i == 0 || isSpace(data[i-1])):
			i = skipComment(data, i)
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, lastToken, nil
			}
		}
		if !isSpace(c) {
			lastToken = i + 1
		}
		i++
	}
	return 0, 0, errEdit
}

func quotedEnd(data []byte, i int) (int, error) {
	q := data[i]
	for j := i + 1; j < len(data); j++ {
		switch {
		case q == '"' && data[j] == '\\':
			j++
		case data[j] == q && q == '\'' && j+1 < len(data) && data[j+1] == '\'':
			j++
		case data[j] == q:
			return j + 1, nil
		}
	}
	return 0, errEdit
}

// plainEnd returns the end of a plain scalar on one line: before a flow
// indicator, a comment or the line break, without trailing spaces.
func plainEnd(data []byte, i int) int {
	end := i
	for j := i; j < len(data); j++ {
		c := data[j]
		if c == '\n' || c == '\r' || c == ',' || c == '}' || c == ']' || (c == '#' && isSpace(data[j-1])) {
			break
		}
		if !isSpace(c) {
			end = j + 1
		}
	}
	return end
}

func skipComment(data []byte, i int) int {
	for i < len(data) && data[i] != '\n' && data[i] != '\r' {
		i++
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
