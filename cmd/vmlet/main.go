// Command vmlet runs virtual machines from a folder of declarative manifests.
// "vmlet run" is the daemon; the other subcommands are its client.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	os.Exit(execute(os.Args[1:]))
}

// execute runs the command line args and returns the process exit code.
func execute(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.err != nil {
			fmt.Fprintln(os.Stderr, "vmlet:", exit.err)
		}
		return exit.code
	}
	fmt.Fprintln(os.Stderr, "vmlet:", err)
	return 1
}

// exitError makes a command exit with code. A nil err prints nothing, for a
// command that has already printed its error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
