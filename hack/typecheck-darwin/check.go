package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// vzModule is checked in full like the project's own packages.
const vzModule = "github.com/Code-Hex/vz/v3"

// listedPackage is one package in the output of "go list -json".
type listedPackage struct {
	ImportPath  string
	Dir         string
	GoFiles     []string
	CgoFiles    []string
	TestGoFiles []string
	ImportMap   map[string]string
	Module      *struct {
		Path string
		Main bool
	}
	DepOnly bool // only a dependency, not matched by the patterns
	Error   *struct{ Err string }
}

// result is the outcome of checking one architecture.
type result struct {
	checked int
	errors  []string
	err     error // listing failed
}

// checker type-checks listed packages on demand, each once.
type checker struct {
	arch    string
	fset    *token.FileSet
	listed  map[string]*listedPackage
	checked map[string]*types.Package
	errors  []string
	full    int
}

// check lists patterns in dir for darwin/arch and type-checks them.
func check(dir string, patterns []string, arch string) result {
	pkgs, roots, err := goList(dir, patterns, arch)
	if err != nil {
		return result{err: err}
	}
	c := &checker{
		arch:    arch,
		fset:    token.NewFileSet(),
		listed:  pkgs,
		checked: make(map[string]*types.Package),
	}
	for _, path := range roots {
		c.load(path)
	}
	for path, p := range pkgs {
		if p.Module != nil && p.Module.Path == vzModule {
			c.load(path)
		}
	}
	sort.Strings(c.errors)
	return result{checked: c.full, errors: c.errors}
}

// goList runs "go list -deps -test" for darwin/arch and returns the
// packages by import path and the import paths patterns matched. Test
// variants ("p [p.test]") and test mains are left out: test files are
// checked with their package.
func goList(dir string, patterns []string, arch string) (map[string]*listedPackage, []string, error) {
	all, err := goListJSON(dir, append([]string{"-e", "-deps", "-test"}, patterns...), arch)
	if err != nil {
		return nil, nil, err
	}
	pkgs := make(map[string]*listedPackage)
	var roots []string
	for _, p := range all {
		if strings.Contains(p.ImportPath, " ") || strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		pkgs[p.ImportPath] = p
		if p.DepOnly {
			continue
		}
		if p.Error != nil && len(p.GoFiles)+len(p.CgoFiles) == 0 {
			return nil, nil, fmt.Errorf("listing %s: %s", p.ImportPath, p.Error.Err)
		}
		roots = append(roots, p.ImportPath)
	}
	return pkgs, roots, nil
}

// goListJSON runs go list with args and decodes its stream of packages.
func goListJSON(dir string, args []string, arch string) ([]*listedPackage, error) {
	fields := "-json=ImportPath,Dir,GoFiles,CgoFiles,TestGoFiles,ImportMap,Module,DepOnly,Error"
	cmd := exec.Command("go", append([]string{"list", fields}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH="+arch, "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// full reports whether p is checked with function bodies and its errors
// reported: the project's packages and vz's.
func (p *listedPackage) full() bool {
	return p.Module != nil && (p.Module.Main || p.Module.Path == vzModule)
}

// load type-checks the package at path, after its imports, and returns it.
func (c *checker) load(path string) *types.Package {
	if path == "unsafe" {
		return types.Unsafe
	}
	if pkg, ok := c.checked[path]; ok {
		return pkg
	}
	p, ok := c.listed[path]
	if !ok {
		c.errors = append(c.errors, fmt.Sprintf("%s: package not listed by go list", path))
		pkg := types.NewPackage(path, filepath.Base(path))
		c.checked[path] = pkg
		return pkg
	}
	pkg := c.checkPackage(p)
	c.checked[path] = pkg
	return pkg
}

// checkPackage parses and type-checks p.
func (c *checker) checkPackage(p *listedPackage) *types.Package {
	full := p.full()
	files := c.parse(p, full)
	conf := types.Config{
		Importer:         importerFunc(func(path string) (*types.Package, error) { return c.importFrom(p, path), nil }),
		FakeImportC:      len(p.CgoFiles) > 0,
		IgnoreFuncBodies: !full,
		Sizes:            types.SizesFor("gc", c.arch),
		Error:            func(err error) { c.report(full, err) },
	}
	if full {
		c.full++
	}
	pkg, _ := conf.Check(p.ImportPath, c.fset, files, nil)
	return pkg
}

// parse returns p's files for darwin/arch, with p's in-package tests when
// p is checked in full.
func (c *checker) parse(p *listedPackage, full bool) []*ast.File {
	names := append(append([]string{}, p.GoFiles...), p.CgoFiles...)
	if full && p.Module.Main {
		names = append(names, p.TestGoFiles...)
	}
	mode := parser.SkipObjectResolution | parser.ParseComments
	var files []*ast.File
	for _, name := range names {
		f, err := parser.ParseFile(c.fset, filepath.Join(p.Dir, name), nil, mode)
		if err != nil {
			c.report(full, err)
		}
		if f != nil {
			files = append(files, f)
		}
	}
	return files
}

// importFrom resolves path as imported by p, through p's import map.
func (c *checker) importFrom(p *listedPackage, path string) *types.Package {
	if mapped, ok := p.ImportMap[path]; ok {
		path = mapped
	}
	return c.load(path)
}

// report records err when it comes from a package checked in full. An
// error about an invalid type is left out: with C faked, an expression
// using a C type from another package has an invalid type, and any other
// invalid type follows from an error reported already.
func (c *checker) report(full bool, err error) {
	if !full || strings.Contains(err.Error(), "invalid type") {
		return
	}
	c.errors = append(c.errors, relative(err.Error()))
}

// relative shortens an error's leading absolute path to one relative to
// the working folder.
func relative(msg string) string {
	wd, err := os.Getwd()
	if err != nil || !filepath.IsAbs(msg) {
		return msg
	}
	file, rest, ok := strings.Cut(msg, ":")
	if !ok {
		return msg
	}
	if rel, err := filepath.Rel(wd, file); err == nil && !strings.HasPrefix(rel, "..") {
		return rel + ":" + rest
	}
	return msg
}

// importerFunc adapts a function to types.Importer.
type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// moduleRoot returns the folder of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module; run it from the project")
	}
	return filepath.Dir(gomod), nil
}
