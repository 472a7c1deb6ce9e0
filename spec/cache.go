package spec

import (
	"sync"

	"go.yaml.in/yaml/v3"
)

// Parsed documents are kept by content, so that neither the status write
// after a Load nor the Load after a status write (vmlet's own write fires a
// watch event) parses the same bytes again. The trees are never modified
// after parsing, so goroutines share them.
const (
	cacheEntries = 64
	cacheMaxSize = 64 << 10 // larger documents are not kept
)

var docCache = &documentCache{docs: map[string]*yaml.Node{}}

// cacheDocuments turns the cache off for benchmarks of a first parse.
var cacheDocuments = true

type documentCache struct {
	mu    sync.Mutex
	docs  map[string]*yaml.Node
	order []string // keys, oldest first
}

func (c *documentCache) get(data []byte) *yaml.Node {
	if !cacheDocuments || len(data) > cacheMaxSize {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.docs[string(data)]
}

func (c *documentCache) put(data []byte, root *yaml.Node) {
	if len(data) > cacheMaxSize {
		return
	}
	key := string(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.docs[key]; ok {
		return
	}
	if len(c.order) == cacheEntries {
		delete(c.docs, c.order[0])
		c.order = c.order[1:]
	}
	c.docs[key] = root
	c.order = append(c.order, key)
}
