package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the get command lands.
func newGetCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "get",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("get: not implemented")
		},
	}
}
