package reconcile

import (
	"errors"
	"sync"
)

// Catalog tracks which manifest files claim which VM names. It is safe for
// concurrent use.
//
// A key is a VM name; a file whose name cannot be read is keyed by its path,
// which contains a '/' and so never collides with a DNS-1123 name.
//
// A name belongs to the first file that claimed it in the daemon's life (at
// the first Relist, the first in path order). Other files with the same name
// get Valid=False, reason DuplicateName, and are not acted on. When the
// owner's file goes away or stops claiming the name, the name passes to the
// earliest remaining claimant.
type Catalog struct {
	dir string
	mu  sync.Mutex
}

// NewCatalog returns an empty catalog of the manifest folder dir.
func NewCatalog(dir string) *Catalog {
	return &Catalog{dir: dir}
}

// Relist reads the folder, loads new and changed files, forgets vanished
// ones, and returns every key to queue: all of them on the first call.
func (c *Catalog) Relist() ([]string, error) {
	return nil, errors.New("relist: not implemented")
}

// Update records that the file at path appeared or changed, and returns the
// keys to queue: the names it claimed before and claims now.
func (c *Catalog) Update(path string) []string {
	return nil
}

// Remove records that the file at path is gone and returns the keys to
// queue.
func (c *Catalog) Remove(path string) []string {
	return nil
}
