package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/controller"
)

// execOwnError is the exit code of vmlet exec for its own failures, as
// opposed to the guest command's exit code.
const execOwnError = 255

func newExecCommand(opts *globalOptions) *cobra.Command {
	var stdin bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARG...]",
		Short: "Run a command in a VM's guest through the daemon",
		Long: "Run a command in a VM's guest through the daemon's agent connection.\n" +
			"Prints the command's output and exits with its exit code; exits 255 when\n" +
			"vmlet itself fails (no daemon, VM not Ready, agent error).",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash != 1 {
				return &exitError{code: execOwnError, err: errors.New("usage: vmlet exec NAME -- CMD [ARG...]")}
			}
			req := controller.ExecRequest{Argv: args[1:], Timeout: timeout}
			if stdin {
				data, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return &exitError{code: execOwnError, err: fmt.Errorf("reading stdin: %w", err)}
				}
				req.Stdin = data
			}
			return runExec(cmd, opts, args[0], req)
		},
	}
	cmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "send vmlet's standard input to the command")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "time the command may run in the guest")
	return cmd
}

func runExec(cmd *cobra.Command, opts *globalOptions, name string, req controller.ExecRequest) error {
	client := controller.NewAPIClient(filepath.Join(opts.stateDir, controller.APISocketName))
	result, err := client.Exec(cmd.Context(), name, req)
	if err != nil {
		return &exitError{code: execOwnError, err: err}
	}
	os.Stdout.Write(result.Stdout)
	os.Stderr.Write(result.Stderr)
	if result.Truncated {
		fmt.Fprintln(os.Stderr, "vmlet: output truncated by the guest agent")
	}
	if result.ExitCode != 0 {
		return &exitError{code: result.ExitCode}
	}
	return nil
}
