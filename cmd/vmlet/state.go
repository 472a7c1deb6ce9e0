package main

import "github.com/spf13/cobra"

// Placeholder until the start, stop, suspend and resume commands land.
func newStateCommands(opts *globalOptions) []*cobra.Command {
	return nil
}
