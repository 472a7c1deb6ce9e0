//go:build !linux && !darwin

package spec

// exchange reports that this system has no atomic exchange of two names;
// WriteStatus then compares the file and renames.
func exchange(a, b string) error { return errNoExchange }
