// Command typecheck-darwin type-checks the project's darwin code on any
// system, so that CI on Linux fails when code for macOS stops compiling.
//
// It lists the packages with "go list" as GOOS=darwin with cgo on, for
// GOARCH=arm64 and GOARCH=amd64, and checks them with go/types, faking the
// cgo import "C" (go/types' FakeImportC), since no macOS SDK or C
// compiler is at hand. Every package of the project and of
// github.com/Code-Hex/vz/v3 is checked in full, in-package test files
// included. Other dependencies are checked without function bodies, because
// only their exported declarations matter. Errors print as FILE:LINE:COL: message
// and make it exit with status 1.
//
// Usage:
//
//	go run ./hack/typecheck-darwin [packages]
//
// With no packages it checks the whole project ("./..." at the module
// root). What FakeImportC cannot see is still unchecked: the C side of
// cgo, and the types of expressions that use C.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// arches are the Mac architectures: arm64 has save and restore, amd64
// (Intel Macs) runs vz without them.
var arches = []string{"arm64", "amd64"}

// run checks patterns, or the whole project when there are none, and
// returns the exit status.
func run(patterns []string, stdout, stderr io.Writer) int {
	dir := ""
	if len(patterns) == 0 {
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintln(stderr, "typecheck-darwin:", err)
			return 2
		}
		dir, patterns = root, []string{"./..."}
	}
	results := checkArches(dir, patterns)
	status := 0
	for i, r := range results {
		if r.err != nil {
			fmt.Fprintf(stderr, "typecheck-darwin: darwin/%s: %v\n", arches[i], r.err)
			status = 2
			continue
		}
		for _, e := range r.errors {
			fmt.Fprintf(stderr, "%s (darwin/%s)\n", e, arches[i])
		}
		if len(r.errors) > 0 && status == 0 {
			status = 1
		}
		fmt.Fprintf(stdout, "darwin/%s: %d packages checked in full, %d errors\n", arches[i], r.checked, len(r.errors))
	}
	return status
}

// checkArches checks every architecture at once.
func checkArches(dir string, patterns []string) []result {
	results := make([]result, len(arches))
	done := make(chan struct{})
	for i, arch := range arches {
		go func() {
			results[i] = check(dir, patterns, arch)
			done <- struct{}{}
		}()
	}
	for range arches {
		<-done
	}
	return results
}
