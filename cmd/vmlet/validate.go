package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the validate command lands.
func newValidateCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "validate",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("validate: not implemented")
		},
	}
}
