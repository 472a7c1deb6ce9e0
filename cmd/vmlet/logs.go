package main

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/controller"
)

func newLogsCommand(opts *globalOptions) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a VM's console log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := controller.NewAPIClient(filepath.Join(opts.stateDir, controller.APISocketName))
			return client.Logs(cmd.Context(), args[0], follow, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the guest writes")
	return cmd
}
