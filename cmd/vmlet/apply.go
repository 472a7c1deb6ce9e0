package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/spec"
)

// stdinName names standard input in error lines.
const stdinName = "<stdin>"

func newApplyCommand(opts *globalOptions) *cobra.Command {
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Validate manifests and write them into the manifest folder",
		Long: "Validate manifests and write each into the manifest folder: into the file\n" +
			"that already holds its metadata.name, else into NAME.yaml (NAME.json for\n" +
			"JSON input), unless that file exists with another VM or no readable name.\n" +
			"The input is written as given, without any status it carries,\n" +
			"followed by the status already in the folder: apply changes the spec, never\n" +
			"the status. When any input is invalid, nothing is written.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApply(cmd, opts.dir, files, dryRun)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, folder of manifests, or - for standard input (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show what would be written, but write nothing")
	cmd.MarkFlagRequired("filename")
	return cmd
}

func runApply(cmd *cobra.Command, dir string, files []string, dryRun bool) error {
	inputs, err := readInputs(files, cmd.InOrStdin())
	if err != nil {
		return err
	}
	if !reportInvalid(cmd.ErrOrStderr(), inputs) {
		return &exitError{code: 1}
	}
	plans, err := planApply(dir, inputs)
	if err != nil {
		return err
	}
	for _, p := range plans {
		if err := p.apply(cmd.OutOrStdout(), dryRun); err != nil {
			return err
		}
	}
	return nil
}

// readInputs reads every manifest the -f arguments name.
func readInputs(files []string, stdin io.Reader) ([]*spec.Manifest, error) {
	var inputs []*spec.Manifest
	for _, f := range files {
		ms, err := readInput(f, stdin)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, ms...)
	}
	return inputs, nil
}

func readInput(file string, stdin io.Reader) ([]*spec.Manifest, error) {
	if file == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, spec.MaxManifestSize+1))
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return []*spec.Manifest{spec.Parse(stdinName, data)}, nil
	}
	info, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		m, err := spec.Load(file)
		if err != nil {
			return nil, err
		}
		return []*spec.Manifest{m}, nil
	}
	return loadFolder(file)
}

// loadFolder loads every manifest in dir, in path order. Entries that are
// not regular files are skipped (see spec.ListManifests).
func loadFolder(dir string) ([]*spec.Manifest, error) {
	paths, err := spec.ListManifests(dir)
	if err != nil {
		return nil, err
	}
	ms := make([]*spec.Manifest, 0, len(paths))
	for _, path := range paths {
		m, err := spec.Load(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// reportInvalid prints the errors of every invalid input and the warnings
// of the others, one line each, and reports whether all are valid.
func reportInvalid(w io.Writer, inputs []*spec.Manifest) bool {
	valid := true
	names := make(map[string]string)
	for _, m := range inputs {
		if m.Err != nil {
			fmt.Fprintln(w, m.Err)
			valid = false
			continue
		}
		for _, warning := range m.Warnings {
			fmt.Fprintln(w, warning)
		}
		if first, ok := names[m.Name]; ok {
			fmt.Fprintf(w, "%s: metadata.name: %q is also the name in %s\n", m.Path, m.Name, first)
			valid = false
		}
		names[m.Name] = m.Path
	}
	return valid
}

// applyPlan is one input and the file it goes into.
type applyPlan struct {
	name    string
	target  string
	data    []byte
	mode    fs.FileMode
	current []byte // nil when target does not exist
}

// planApply works out each input's target file and the bytes to write.
func planApply(dir string, inputs []*spec.Manifest) ([]applyPlan, error) {
	existing, err := indexFolder(dir)
	if err != nil {
		return nil, err
	}
	plans := make([]applyPlan, 0, len(inputs))
	for _, m := range inputs {
		p, err := planOne(dir, m, existing[m.Name])
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	return plans, nil
}

func planOne(dir string, in, current *spec.Manifest) (applyPlan, error) {
	p := applyPlan{name: in.Name, target: filepath.Join(dir, newFileName(in)), mode: 0o644}
	var status *spec.Status
	if current == nil {
		if err := checkNewTarget(p.target, in.Name); err != nil {
			return applyPlan{}, err
		}
	} else {
		if err := p.useCurrent(current); err != nil {
			return applyPlan{}, err
		}
		status = current.Status
	}
	data, err := spec.ReplaceStatus(in.Data, status)
	if err != nil {
		return applyPlan{}, fmt.Errorf("applying %q: %w", in.Path, err)
	}
	p.data = data
	return p, nil
}

// useCurrent targets the file that already holds the name, through any
// symlink, keeping its mode. A file without any write bit is rejected:
// vmlet honours it as read-only, even as root.
func (p *applyPlan) useCurrent(current *spec.Manifest) error {
	target, err := filepath.EvalSymlinks(current.Path)
	if err != nil {
		return fmt.Errorf("applying %q: %w", p.name, err)
	}
	info, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("applying %q: %w", p.name, err)
	}
	if info.Mode().Perm()&0o222 == 0 {
		return fmt.Errorf("applying %q: manifest %q is read-only (no write bit is set)", p.name, current.Path)
	}
	p.target, p.mode, p.current = target, info.Mode().Perm(), current.Data
	return nil
}

// checkNewTarget rejects writing the VM name into target when target
// exists. No manifest in the folder claims name, so an existing target
// contains another VM or no readable metadata.name, and replacing it would
// remove a VM.
func checkNewTarget(target, name string) error {
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	m, err := spec.Load(target)
	if err != nil {
		return fmt.Errorf("applying %q: %q exists and cannot be read, so it was not replaced: %w", name, target, err)
	}
	if m.Name == "" {
		return fmt.Errorf("applying %q: %q exists without a readable metadata.name, so it was not replaced (fix or move it): %s",
			name, target, m.FirstError())
	}
	// The folder index already matched files that contain name.
	return fmt.Errorf("applying %q: %q contains the VM %q, so it was not replaced (rename that file or apply %q under another name)",
		name, target, m.Name, name)
}

// newFileName is the file a manifest whose name is new to the folder goes
// into: NAME.json for JSON input, NAME.yaml otherwise.
func newFileName(m *spec.Manifest) string {
	if filepath.Ext(m.Path) == ".json" || bytes.HasPrefix(bytes.TrimSpace(m.Data), []byte("{")) {
		return m.Name + ".json"
	}
	return m.Name + ".yaml"
}

func (p applyPlan) apply(w io.Writer, dryRun bool) error {
	verb := "configured"
	switch {
	case p.current == nil:
		verb = "created"
	case bytes.Equal(p.current, p.data):
		fmt.Fprintf(w, "virtualmachine/%s unchanged\n", p.name)
		return nil
	}
	if dryRun {
		fmt.Fprintf(w, "virtualmachine/%s %s (dry run): %s\n", p.name, verb, p.target)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p.target), 0o755); err != nil {
		return fmt.Errorf("creating manifest folder: %w", err)
	}
	if err := spec.WriteFile(p.target, p.data, p.mode); err != nil {
		return err
	}
	fmt.Fprintf(w, "virtualmachine/%s %s\n", p.name, verb)
	return nil
}

// indexFolder maps each name in dir to the first manifest, in path order,
// that claims it. A missing folder is empty.
func indexFolder(dir string) (map[string]*spec.Manifest, error) {
	paths, err := spec.ListManifests(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	index := make(map[string]*spec.Manifest, len(paths))
	for _, path := range paths {
		m, err := spec.Load(path)
		if err != nil {
			continue // removed or unreadable since the listing
		}
		if _, ok := index[m.Name]; !ok && m.Name != "" {
			index[m.Name] = m
		}
	}
	return index, nil
}
