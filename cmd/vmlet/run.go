package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the run command lands.
func newRunCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "run",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("run: not implemented")
		},
	}
}
