package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/vmruntime/vz"
)

// newVMMCommand returns the hidden helper command that the vz backend
// starts once per VM. It owns one VZ machine and serves the daemon over a
// unix socket in the VM's state folder until the machine stops; SIGTERM
// stops the machine and ends it. It needs macOS.
func newVMMCommand(*globalOptions) *cobra.Command {
	var vmDir, restore string
	cmd := &cobra.Command{
		Use:    "vmm --vm-dir DIR [--restore CHECKPOINT]",
		Short:  "Run one VM's Virtualization.framework helper (started by vmlet run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if vmDir == "" {
				return errors.New("vmm: --vm-dir is required")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return vz.RunHelper(ctx, vmDir, restore)
		},
	}
	cmd.Flags().StringVar(&vmDir, "vm-dir", "", "the VM's state folder, holding the machine configuration the daemon wrote")
	cmd.Flags().StringVar(&restore, "restore", "", "checkpoint file to restore instead of booting")
	return cmd
}
