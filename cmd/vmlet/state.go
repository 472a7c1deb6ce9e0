package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/spec"
)

// errVMNotFound means no manifest in the folder has the name asked for.
var errVMNotFound = errors.New("no manifest in the folder has this name")

// stateVerb is one of the commands that only edit spec.desiredState.
type stateVerb struct {
	use   string
	state spec.DesiredState
	short string
}

var stateVerbs = []stateVerb{
	{"start", spec.Running, "Set a VM's desiredState to Running (from Suspended this restores its memory)"},
	{"resume", spec.Running, "Set a suspended VM's desiredState to Running, restoring its memory"},
	{"suspend", spec.Suspended, "Set a VM's desiredState to Suspended (memory saved, process ended)"},
	{"stop", spec.Stopped, "Set a VM's desiredState to Stopped (a suspended VM's checkpoint goes to the trash)"},
}

func newStateCommands(opts *globalOptions) []*cobra.Command {
	var cmds []*cobra.Command
	for _, verb := range stateVerbs {
		cmds = append(cmds, newStateCommand(opts, verb))
	}
	return cmds
}

func newStateCommand(opts *globalOptions, verb stateVerb) *cobra.Command {
	return &cobra.Command{
		Use:   verb.use + " NAME",
		Short: verb.short,
		Long: verb.short + ".\n\nOnly the value of spec.desiredState changes in the manifest file, with\n" +
			"an atomic write; the daemon does the rest. To cold-boot a suspended VM,\n" +
			"stop it, then start it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setDesiredState(cmd, opts.dir, args[0], verb.state)
		},
	}
}

func setDesiredState(cmd *cobra.Command, dir, name string, state spec.DesiredState) error {
	m, err := findManifest(dir, name)
	if err != nil {
		return err
	}
	if err := spec.SetDesiredState(m.Path, state); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "virtualmachine/%s desiredState set to %s\n", name, state)
	return nil
}

// findManifest returns the manifest in dir whose metadata.name is name.
// Where several files claim it, the first in path order wins, as it does
// when the daemon starts. The error wraps errVMNotFound when none does.
func findManifest(dir, name string) (*spec.Manifest, error) {
	index, err := indexFolder(dir)
	if err != nil {
		return nil, err
	}
	if m := index[name]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("vm %q in %q: %w", name, dir, errVMNotFound)
}
