package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// globalOptions are the folders and lock every command shares, so that the
// client commands find what the daemon uses.
type globalOptions struct {
	dir      string
	stateDir string
	hostLock string
}

func newRootCommand() *cobra.Command {
	opts := &globalOptions{}
	root := &cobra.Command{
		Use:           "vmlet",
		Short:         "Run virtual machines from a folder of declarative manifests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	flags := root.PersistentFlags()
	flags.StringVar(&opts.dir, "dir", defaultDir(), "manifest folder (env VMLET_DIR)")
	flags.StringVar(&opts.stateDir, "state-dir", defaultStateDir(), "state folder (env VMLET_STATE_DIR)")
	flags.StringVar(&opts.hostLock, "host-lock", defaultHostLock(), "host-wide lifecycle lock file (env VMLET_HOST_LOCK)")

	root.AddCommand(
		newValidateCommand(opts),
		newGetCommand(opts),
		newRunCommand(opts),
		newApplyCommand(opts),
		newWaitCommand(opts),
		newExecCommand(opts),
		newLogsCommand(opts),
		newVMMCommand(opts),
	)
	root.AddCommand(newStateCommands(opts)...)
	return root
}

func defaultDir() string {
	return fromEnv("VMLET_DIR", "/etc/vmlet/manifests", ".vmlet/manifests")
}

func defaultStateDir() string {
	return fromEnv("VMLET_STATE_DIR", "/var/lib/vmlet", ".vmlet/state")
}

func defaultHostLock() string {
	if v := os.Getenv("VMLET_HOST_LOCK"); v != "" {
		return v
	}
	return "/tmp/vmlet-host.lock"
}

// fromEnv returns the variable's value, else rootPath when running as root,
// else homeRelative under the user's home folder.
func fromEnv(variable, rootPath, homeRelative string) string {
	if v := os.Getenv(variable); v != "" {
		return v
	}
	if os.Geteuid() == 0 {
		return rootPath
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return rootPath
	}
	return filepath.Join(home, homeRelative)
}
