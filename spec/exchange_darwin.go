package spec

import (
	"errors"

	"golang.org/x/sys/unix"
)

// exchange swaps the names a and b atomically with renamex_np(2) and
// RENAME_SWAP (APFS and HFS+ have it; some network filesystems do not).
func exchange(a, b string) error {
	err := unix.RenamexNp(a, b, unix.RENAME_SWAP)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		return errNoExchange
	}
	return err
}
