//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "vmlet-agent: runs only in a Linux guest")
	os.Exit(1)
}
