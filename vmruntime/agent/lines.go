package agent

import (
	"bufio"
	"bytes"
	"errors"
)

// readLine returns the next newline-terminated line from r without its
// newline. A line longer than limit is consumed and reported as
// ErrLineTooLong. A partial line before an error is dropped.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		tooLong = tooLong || len(line)+len(chunk) > limit+1
		if !tooLong {
			line = append(line, chunk...)
		}
		if err == nil {
			break
		}
	}
	if tooLong {
		return nil, ErrLineTooLong
	}
	return bytes.TrimSuffix(line, []byte("\n")), nil
}
