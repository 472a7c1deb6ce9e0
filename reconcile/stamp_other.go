//go:build !unix

package reconcile

import "io/fs"

// inode returns 0 where the platform has no inode numbers; size and
// modification time then tell a changed file.
func inode(fs.FileInfo) uint64 { return 0 }
