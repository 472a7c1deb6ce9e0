package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the vmm command lands.
func newVMMCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "vmm",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("vmm: not implemented")
		},
	}
}
