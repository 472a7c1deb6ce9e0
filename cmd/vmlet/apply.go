package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the apply command lands.
func newApplyCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "apply",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("apply: not implemented")
		},
	}
}
