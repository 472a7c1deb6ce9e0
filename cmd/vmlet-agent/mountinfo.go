package main

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Point   string
	FSType  string
	Source  string
	Options string // per-mount options, such as "rw,relatime"
}

// readOnly reports whether the mount has the ro option.
func (m mount) readOnly() bool {
	for _, opt := range strings.Split(m.Options, ",") {
		if opt == "ro" {
			return true
		}
	}
	return false
}

// parseMountinfo parses the format of /proc/self/mountinfo. Lines it cannot
// parse are skipped.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var mounts []mount
	s := bufio.NewScanner(r)
	for s.Scan() {
		if m, ok := parseMountinfoLine(s.Text()); ok {
			mounts = append(mounts, m)
		}
	}
	return mounts, s.Err()
}

// parseMountinfoLine parses "36 35 98:0 /root /mnt rw,noatime master:1 -
// ext3 /dev/root rw,errors=continue": the fields after the "-" separator
// are the filesystem type and the source.
func parseMountinfoLine(line string) (mount, bool) {
	before, after, ok := strings.Cut(line, " - ")
	if !ok {
		return mount{}, false
	}
	head := strings.Fields(before)
	tail := strings.Fields(after)
	if len(head) < 6 || len(tail) < 2 {
		return mount{}, false
	}
	return mount{
		Point:   unescapeOctal(head[4]),
		Options: head[5],
		FSType:  tail[0],
		Source:  unescapeOctal(tail[1]),
	}, true
}

// unescapeOctal decodes the \NNN escapes the kernel writes for space, tab,
// newline and backslash in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// blankPrefix is how much of a disk must be zero for it to count as blank.
const blankPrefix = 1 << 20

// isBlank reports whether the first MiB of r is all zero bytes, so that no
// filesystem or partition table signature can be there. A disk shorter than
// a MiB is blank when all of it is zero.
func isBlank(r io.Reader) (bool, error) {
	buf := make([]byte, 64<<10)
	limited := io.LimitReader(r, blankPrefix)
	for {
		n, err := limited.Read(buf)
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}
