package reconcile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vmlet/vmlet/spec"
)

// Catalog tracks which manifest files claim which VM names. It is safe for
// concurrent use.
//
// A key is a VM name. A file whose name cannot be read is keyed by its path,
// which contains a '/' and so never collides with a DNS-1123 name.
//
// A name belongs to the first file that claimed it in the daemon's life (at
// the first Relist, the first in path order). Other files with the same name
// get Valid=False, reason DuplicateName, and are not acted on. When the
// owner's file goes away or claims another valid name, the name passes at
// once to the earliest remaining claimant. A Relist does the same for a
// removal the caller never reported. A file that stops parsing keeps its
// name, so its VM stays as it is on its last valid spec.
//
// Parses are cached: a file whose size, modification time and inode are
// unchanged is not read again.
type Catalog struct {
	dir string

	mu      sync.Mutex
	files   map[string]*catalogFile   // by path
	claims  map[string][]*catalogFile // by name, in claim order
	nextSeq uint64
	// hints maps a manifest's path to the name of the VM last started from
	// it, for a file that does not parse when the daemon starts.
	hints map[string]string
	// cache is nil until a Reconciler gives the catalog a state folder.
	cache *parseCache
}

// catalogFile is one manifest file in the catalog.
type catalogFile struct {
	path  string
	stamp fileStamp
	m     *spec.Manifest
	name  string // the name it claims; "" when it has no usable name
	seq   uint64 // claim order
}

// fileStamp is the size, modification time and inode of a parsed file,
// compared to tell whether the file changed since.
type fileStamp struct {
	size    int64
	modTime time.Time
	inode   uint64
}

func stampOf(fi fs.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), modTime: fi.ModTime(), inode: inode(fi)}
}

// NewCatalog returns an empty catalog of the manifest folder dir.
func NewCatalog(dir string) *Catalog {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Catalog{
		dir:    dir,
		files:  make(map[string]*catalogFile),
		claims: make(map[string][]*catalogFile),
		hints:  make(map[string]string),
	}
}

// Dir returns the manifest folder, made absolute.
func (c *Catalog) Dir() string { return c.dir }

// Relist reads the folder, loads new and changed files and drops vanished
// ones. It returns every key in the catalog and the keys that vanished,
// sorted. So a periodic Relist re-checks every VM, which is how a VM that
// crashed without a file event is noticed. Changed files are parsed in
// parallel, one goroutine per CPU.
func (c *Catalog) Relist() ([]string, error) {
	paths, err := c.listPaths()
	if err != nil {
		return nil, err
	}
	c.cache.load()
	results := c.loadChanged(paths)

	c.mu.Lock()
	keys := make(map[string]bool)
	present := make(map[string]bool, len(paths))
	for _, res := range results {
		present[res.path] = true
		c.applyResult(res, keys)
	}
	for p := range c.files {
		if !present[p] {
			c.forget(p, keys)
		}
	}
	for p, f := range c.files {
		keys[f.key(p)] = true
	}
	c.mu.Unlock()

	// A cache that cannot be saved costs the next start its speed, nothing
	// else, so the error is not the caller's.
	_ = c.cache.save()
	return sortedKeys(keys), nil
}

// fileResult is one file of a Relist: its stat, and its parse when it
// changed.
type fileResult struct {
	path      string
	fi        fs.FileInfo
	statErr   error
	unchanged bool
	m         *spec.Manifest
	stamp     fileStamp
}

// loadChanged stats paths and parses those that are new or changed.
func (c *Catalog) loadChanged(paths []string) []*fileResult {
	results := make([]*fileResult, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		results[i] = &fileResult{path: p, fi: fi, statErr: err}
	}
	c.mu.Lock()
	var todo []*fileResult
	for _, res := range results {
		f := c.files[res.path]
		res.unchanged = f != nil && res.statErr == nil && f.stamp == stampOf(res.fi)
		if !res.unchanged && !errors.Is(res.statErr, fs.ErrNotExist) {
			todo = append(todo, res)
		}
	}
	c.mu.Unlock()
	c.parseAll(todo)
	return results
}

// parseAll reads and parses each file of todo, in parallel.
func (c *Catalog) parseAll(todo []*fileResult) {
	next := make(chan *fileResult)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Go(func() {
			for res := range next {
				res.m, res.stamp = c.readManifest(res.path, res.fi, res.statErr)
			}
		})
	}
	for _, res := range todo {
		next <- res
	}
	close(next)
	wg.Wait()
}

// applyResult records one file of a Relist. The caller holds c.mu.
//
// Relist parses without holding c.mu, so an Update may have recorded a newer
// version of the file meanwhile. A parse whose stamp no longer matches the
// file is therefore not applied: the file is read again instead.
func (c *Catalog) applyResult(res *fileResult, keys map[string]bool) {
	switch {
	case res.unchanged:
	case errors.Is(res.statErr, fs.ErrNotExist):
		c.forget(res.path, keys)
	case !c.stampCurrent(res.path, res.stamp):
		c.refresh(res.path, keys)
	default:
		c.apply(res.path, res.m, res.stamp, keys)
	}
}

// stampCurrent reports whether the file at path still has stamp.
func (c *Catalog) stampCurrent(path string, stamp fileStamp) bool {
	fi, err := os.Stat(path)
	return err == nil && stampOf(fi) == stamp
}

// listPaths returns the manifest files in the folder in path order.
func (c *Catalog) listPaths() ([]string, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("listing manifest folder %q: %w", c.dir, err)
	}
	var paths []string
	for _, e := range entries {
		path := filepath.Join(c.dir, e.Name())
		if spec.IsManifestName(e.Name()) && isFileEntry(c.dir, e) && !c.isSiblingLink(path) {
			paths = append(paths, path)
		}
	}
	sort.Strings(paths)
	return paths, nil
}

// Update records that the file at path appeared or changed, and returns the
// keys to queue: the names it claimed before and claims now, or its path
// where it has no name. A file that is gone by now counts as removed.
func (c *Catalog) Update(path string) []string {
	path = c.clean(path)
	c.mu.Lock()
	defer c.mu.Unlock()

	keys := make(map[string]bool)
	c.refresh(path, keys)
	return sortedKeys(keys)
}

// Remove records that the file at path is gone and returns the keys to
// queue.
func (c *Catalog) Remove(path string) []string {
	path = c.clean(path)
	c.mu.Lock()
	defer c.mu.Unlock()

	keys := make(map[string]bool)
	c.forget(path, keys)
	return sortedKeys(keys)
}

// Keys returns every key in the catalog, sorted.
func (c *Catalog) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()

	keys := make(map[string]bool, len(c.files))
	for p, f := range c.files {
		keys[f.key(p)] = true
	}
	return sortedKeys(keys)
}

func (c *Catalog) clean(path string) string {
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.dir, path)
	}
	return filepath.Clean(path)
}

// refresh re-reads path when it changed and adds the keys it touched.
func (c *Catalog) refresh(path string, keys map[string]bool) {
	fi, err := os.Stat(path)
	notFile := err == nil && !fi.Mode().IsRegular()
	if errors.Is(err, fs.ErrNotExist) || notFile || c.isSiblingLink(path) {
		c.forget(path, keys)
		return
	}
	f := c.files[path]
	if f != nil && err == nil && f.stamp == stampOf(fi) {
		return
	}
	m, stamp := c.readManifest(path, fi, err)
	c.apply(path, m, stamp, keys)
}

// apply records the new parse of path and moves its claim when its name
// changed. The caller holds c.mu.
func (c *Catalog) apply(path string, m *spec.Manifest, stamp fileStamp, keys map[string]bool) {
	f := c.files[path]
	if f == nil {
		f = &catalogFile{path: path}
		c.files[path] = f
	} else {
		keys[f.key(path)] = true
	}
	f.m, f.stamp = m, stamp
	c.claim(f, c.claimedName(f, m))
	keys[f.key(path)] = true
}

// claimedName returns the name f claims after its new parse m. A parse that
// yields no usable name (a typo, or a file caught empty in the middle of an
// in-place rewrite) keeps the name the file claimed before, or else the name
// of the VM last started from it. The VM then counts as having an invalid
// manifest and stays as it is, instead of counting as removed and stopped.
func (c *Catalog) claimedName(f *catalogFile, m *spec.Manifest) string {
	if name := usableName(m); name != "" {
		return name
	}
	if f.name != "" {
		return f.name
	}
	return c.hints[f.path]
}

// hint records that the VM called name was last started from the manifest
// at path, so that the file keeps that name if it does not parse.
func (c *Catalog) hint(path, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hints[c.clean(path)] = name
}

// readManifest reads and parses path, through the parse cache where the
// bytes are unchanged. A file that cannot be stat'ed or read gets the error
// as its manifest's Err.
func (c *Catalog) readManifest(path string, fi fs.FileInfo, statErr error) (*spec.Manifest, fileStamp) {
	if statErr != nil {
		return &spec.Manifest{Path: path, Err: statErr}, fileStamp{}
	}
	data, err := readLimited(path)
	if err != nil {
		return &spec.Manifest{Path: path, Err: err}, fileStamp{}
	}
	if m := c.cache.manifest(path, data); m != nil {
		return m, stampOf(fi)
	}
	m := spec.Parse(path, data)
	c.cache.store(m)
	return m, stampOf(fi)
}

// readLimited reads a manifest, up to one byte past the size limit so that
// Parse reports a file that is too large.
func readLimited(path string) ([]byte, error) {
	// O_NONBLOCK keeps a FIFO named like a manifest from blocking the open,
	// and so the catalog's lock, until someone writes into it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading manifest %q: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, spec.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %q: %w", path, err)
	}
	return data, nil
}

// useCache makes the catalog keep its parses in file across restarts.
func (c *Catalog) useCache(file string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = &parseCache{file: file}
	}
}

// usableName returns the manifest's name when it can key a VM: a DNS-1123
// label, which is also safe as a folder name.
func usableName(m *spec.Manifest) string {
	if m.Name == "" || len(validation.IsDNS1123Label(m.Name)) > 0 {
		return ""
	}
	return m.Name
}

// claim makes f claim name, at the end of the claim order when the name is
// new to f.
func (c *Catalog) claim(f *catalogFile, name string) {
	if f.name == name {
		return
	}
	c.unclaim(f)
	f.name = name
	if name == "" {
		return
	}
	c.nextSeq++
	f.seq = c.nextSeq
	c.claims[name] = append(c.claims[name], f)
}

func (c *Catalog) unclaim(f *catalogFile) {
	if f.name == "" {
		return
	}
	rest := slices.DeleteFunc(c.claims[f.name], func(o *catalogFile) bool { return o == f })
	if len(rest) == 0 {
		delete(c.claims, f.name)
	} else {
		c.claims[f.name] = rest
	}
	f.name = ""
}

// forget drops path and adds the key it had.
func (c *Catalog) forget(path string, keys map[string]bool) {
	f := c.files[path]
	if f == nil {
		return
	}
	keys[f.key(path)] = true
	c.unclaim(f)
	delete(c.files, path)
	c.cache.drop(path)
}

// key returns the key of the file at path: its name, or its path.
func (f *catalogFile) key(path string) string {
	if f.name != "" {
		return f.name
	}
	return path
}

// isPathKey reports whether key names a file rather than a VM.
func isPathKey(key string) bool { return strings.ContainsRune(key, '/') }

// entry is what the catalog holds for one key.
type entry struct {
	// Owner is the manifest that owns the name, or the file a path key
	// names; nil when no file claims the key any more.
	Owner *spec.Manifest
	// Duplicates are the other files claiming the same name.
	Duplicates []*spec.Manifest
}

// lookup returns the manifests behind key, re-reading any that changed on
// disk since they were parsed.
func (c *Catalog) lookup(key string) entry {
	c.mu.Lock()
	defer c.mu.Unlock()

	if isPathKey(key) {
		return c.lookupPath(key)
	}
	for _, f := range slices.Clone(c.claims[key]) {
		c.refresh(f.path, make(map[string]bool))
	}
	if len(c.claims[key]) == 0 {
		c.readNewFiles()
	}
	var e entry
	for i, f := range c.claims[key] {
		if i == 0 {
			e.Owner = f.m
		} else {
			e.Duplicates = append(e.Duplicates, f.m)
		}
	}
	return e
}

// isFileEntry reports whether e is a regular file, or a symlink to one.
// FIFOs, sockets and devices named like manifests are not manifests.
func isFileEntry(dir string, e fs.DirEntry) bool {
	switch {
	case e.Type().IsRegular():
		return true
	case e.Type()&fs.ModeSymlink == 0:
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && fi.Mode().IsRegular()
}

// isSiblingLink reports whether path is a symlink to another manifest in
// the same folder. Such a link is the same file under a second name: taken
// as a manifest of its own, it would claim its target's name, and the
// duplicate's status, written through the link, would land in the target.
func (c *Catalog) isSiblingLink(path string) bool {
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	dir, err := filepath.EvalSymlinks(c.dir)
	if err != nil {
		return false
	}
	return filepath.Dir(target) == dir && spec.IsManifestName(filepath.Base(target))
}

// readNewFiles reads the folder's files that the catalog does not know yet.
// A name that no file claims any more may have moved to one of them: a
// rename within the folder reports the old path gone as the new one
// appears, and the worker can reach the name in between. Without this, the
// VM would count as removed and be stopped, or its checkpoint trashed. The
// caller holds c.mu.
func (c *Catalog) readNewFiles() {
	paths, err := c.listPaths()
	if err != nil {
		return
	}
	for _, p := range paths {
		if c.files[p] == nil {
			c.refresh(p, make(map[string]bool))
		}
	}
}

func (c *Catalog) lookupPath(path string) entry {
	c.refresh(path, make(map[string]bool))
	f := c.files[path]
	if f == nil || f.name != "" {
		return entry{}
	}
	return entry{Owner: f.m}
}

func sortedKeys(keys map[string]bool) []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
