package spec

import (
	"errors"

	"golang.org/x/sys/unix"
)

// exchange swaps the names a and b atomically with renameat2(2) and
// RENAME_EXCHANGE (Linux 3.15 and later; not every filesystem has it).
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return errNoExchange
	}
	return err
}
