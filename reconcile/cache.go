package reconcile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"os"
	"sync"

	"github.com/vmlet/vmlet/spec"
)

// cacheVersion changes whenever cacheEntry does.
const cacheVersion = 1

// parseCache maps a manifest's path and the SHA-256 of its bytes to the
// result of parsing it, so that a restarted daemon does not parse every
// unchanged manifest again. With a status block a parse costs about 330 µs
// (a Go benchmark on a 2-core Xeon VM), which for 10,000 manifests is
// seconds.
//
// Only valid manifests are cached. A cached result has no Warnings: those
// name files missing at parse time, which the reconciler does not read.
// The cache is keyed to the executable too, so a new vmlet binary, whose
// parser may differ, starts with an empty one.
type parseCache struct {
	file string

	mu      sync.RWMutex
	entries map[string]*cacheEntry
	loaded  bool
	dirty   bool
}

// cacheEntry is one cached parse.
type cacheEntry struct {
	Sum    [sha256.Size]byte
	Name   string
	VM     *spec.VirtualMachine
	Status *spec.Status
}

// cacheFile is the cache as stored on disk.
type cacheFile struct {
	Version    int
	Executable string
	Entries    map[string]*cacheEntry
}

// manifest returns the cached parse of data read from path, or nil.
func (pc *parseCache) manifest(path string, data []byte) *spec.Manifest {
	if pc == nil {
		return nil
	}
	pc.mu.RLock()
	e := pc.entries[path]
	pc.mu.RUnlock()
	if e == nil || e.Sum != sha256.Sum256(data) {
		return nil
	}
	return &spec.Manifest{Path: path, Data: data, VM: e.VM, Name: e.Name, Status: e.Status, WellFormed: true}
}

// store caches m when it is valid, and drops path's entry otherwise.
func (pc *parseCache) store(m *spec.Manifest) {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.dirty = true
	if m.Err != nil || m.VM == nil || !m.WellFormed {
		delete(pc.entries, m.Path)
		return
	}
	pc.entries[m.Path] = &cacheEntry{Sum: sha256.Sum256(m.Data), Name: m.Name, VM: m.VM, Status: m.Status}
}

// drop deletes the entry of path.
func (pc *parseCache) drop(path string) {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.entries[path]; ok {
		delete(pc.entries, path)
		pc.dirty = true
	}
}

// load reads the cache file once. A missing, unreadable or foreign cache
// is an empty one.
func (pc *parseCache) load() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.loaded {
		return
	}
	pc.loaded = true
	pc.entries = make(map[string]*cacheEntry)
	f, err := os.Open(pc.file)
	if err != nil {
		return
	}
	defer f.Close()
	var cf cacheFile
	if gob.NewDecoder(bufio.NewReader(f)).Decode(&cf) != nil {
		return
	}
	if cf.Version == cacheVersion && cf.Executable == executableID() && cf.Entries != nil {
		pc.entries = cf.Entries
	}
}

// save writes the cache file when it changed since it was read.
func (pc *parseCache) save() error {
	if pc == nil {
		return nil
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !pc.dirty {
		return nil
	}
	var buf bytes.Buffer
	cf := cacheFile{Version: cacheVersion, Executable: executableID(), Entries: pc.entries}
	err := gob.NewEncoder(&buf).Encode(&cf)
	if err == nil {
		err = writeFileAtomic(pc.file, buf.Bytes())
	}
	if err != nil {
		return fmt.Errorf("saving the manifest parse cache: %w", err)
	}
	pc.dirty = false
	return nil
}

var executableOnce = sync.OnceValue(func() string {
	path, err := os.Executable()
	if err != nil {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())
})

// executableID identifies the running binary by path, size and
// modification time.
func executableID() string { return executableOnce() }
