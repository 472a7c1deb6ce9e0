package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the wait command lands.
func newWaitCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "wait",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("wait: not implemented")
		},
	}
}
