//go:build !unix

package spec

import "os"

// lockFolder does nothing where flock(2) does not exist.
func lockFolder(string) (func(), error) { return func() {}, nil }

// keepOwner does nothing where files have no Unix owner.
func keepOwner(*os.File, os.FileInfo) {}
