package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the exec command lands.
func newExecCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "exec",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("exec: not implemented")
		},
	}
}
