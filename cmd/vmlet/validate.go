package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmlet/vmlet/spec"
)

func newValidateCommand(opts *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check manifests and print each problem with its file and line",
		Long: `Validate parses each manifest file, and each manifest in each folder
given (the manifest folder when none is), and prints one line per problem:
FILE:LINE: FIELD: message. Warnings, such as a kernel that does not exist on
this host, are printed too but do not fail the check.

Exit status: 0 when every manifest is valid, 1 otherwise.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{opts.dir}
			}
			if !runValidate(cmd.OutOrStdout(), cmd.ErrOrStderr(), args) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
}

// validateResult counts what runValidate found.
type validateResult struct {
	files, invalid, warnings int
}

// runValidate checks the manifests at paths, prints each problem to out and
// a summary to errOut, and reports whether all are valid.
func runValidate(out, errOut io.Writer, paths []string) bool {
	var res validateResult
	for _, p := range paths {
		files, err := manifestFiles(p)
		if err != nil {
			fmt.Fprintln(out, err)
			res.invalid++
			continue
		}
		res.add(validateFolder(out, files))
	}
	fmt.Fprintln(errOut, res.summary())
	return res.invalid == 0
}

func (r *validateResult) add(o validateResult) {
	r.files += o.files
	r.invalid += o.invalid
	r.warnings += o.warnings
}

func (r validateResult) summary() string {
	valid := r.files - r.invalid
	if r.files == 0 && r.invalid > 0 {
		return "no manifest could be read"
	}
	return fmt.Sprintf("%d of %d manifests valid, %d warnings", max(valid, 0), r.files, r.warnings)
}

// manifestFiles returns path when it is a file, or the manifests in it
// when it is a folder.
func manifestFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	files, err := spec.ListManifests(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return files, nil
}

// validateFolder checks files, which share a folder when there is more
// than one, so that a name used twice among them is a problem too.
func validateFolder(out io.Writer, files []string) validateResult {
	res := validateResult{files: len(files)}
	owners := map[string]string{}
	for _, f := range files {
		ok, warnings := validateFile(out, f, owners)
		if !ok {
			res.invalid++
		}
		res.warnings += warnings
	}
	return res
}

// validateFile prints the problems of one manifest and reports whether it
// is valid, and how many warnings it has. owners maps each name seen so far
// to the file that has it.
func validateFile(out io.Writer, path string, owners map[string]string) (bool, int) {
	m, err := spec.Load(path)
	if err != nil {
		fmt.Fprintf(out, "%s: %v\n", path, unwrapPathError(err))
		return false, 0
	}
	for _, w := range m.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	if m.Err != nil {
		fmt.Fprintln(out, m.Err)
		return false, len(m.Warnings)
	}
	if first, dup := owners[m.Name]; dup {
		fmt.Fprintf(out, "%s: metadata.name: %q is also the name of %s\n", path, m.Name, first)
		return false, len(m.Warnings)
	}
	owners[m.Name] = path
	return true, len(m.Warnings)
}

// unwrapPathError drops the path from an *fs.PathError, which the caller
// prints first.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
