package spec

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// File-level reasons a manifest is rejected before its fields are read. They
// are the Err of the FieldError that reports them.
var (
	ErrTooLarge      = errors.New("file is larger than 1 MiB")
	ErrEmpty         = errors.New("file is empty")
	ErrBinary        = errors.New("file is binary, not YAML or JSON")
	ErrMultiDocument = errors.New("file holds more than one YAML document (put one manifest in each file)")
	ErrAliases       = errors.New("YAML aliases expand too far")
	ErrSyntax        = errors.New("invalid YAML")
	ErrNotMapping    = errors.New("document is not a mapping")
)

// ErrNotRegular means Load was given a FIFO, device, socket or folder, which
// it does not read.
var ErrNotRegular = errors.New("not a regular file")

// Errors of the write-back.
var (
	// ErrConflict means the manifest changed after it was read; the user's
	// file was left in place and the status was not written.
	ErrConflict = errors.New("manifest changed since it was read")
	// ErrNotWritable means the manifest has no write bit for anyone, or the
	// write failed with a permission or read-only filesystem error. Status
	// then belongs in the state folder.
	ErrNotWritable = errors.New("manifest is not writable")
)

// FieldError is one problem in a manifest, at a line where the YAML has one.
// Its text is "FILE:LINE: FIELD: message". The line is left out when it is
// 0, and the field when it is empty (a problem with the whole file).
// Without a file name the text starts "line LINE: ".
type FieldError struct {
	File    string
	Line    int
	Field   string
	Message string
	// Warning marks a problem that does not make the manifest invalid, such
	// as a file the spec names that is missing on this host.
	Warning bool
	// Err is the sentinel behind a file-level problem, for errors.Is.
	Err error
}

// Error returns the problem as one line.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Field != "" {
		b.WriteString(quoteUnprintable(e.Field))
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// quoteUnprintable returns s, quoted with Go escapes when it holds a newline
// or another character that is not printable, so that it stays on one line.
func quoteUnprintable(s string) string {
	if isPrintable(s) {
		return s
	}
	return strconv.Quote(s)
}

// isPrintable reports whether every character of s is printable, a space
// included.
func isPrintable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// Unwrap returns the sentinel behind a file-level problem, or nil.
func (e *FieldError) Unwrap() error { return e.Err }

// ErrorList is every problem found in a manifest, in the order of the file.
type ErrorList []*FieldError

// Error returns the problems, one a line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so errors.Is and errors.As see each one.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
