package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/vmlet/vmlet/spec"
)

// Output formats of vmlet get.
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
	outputName  = "name"
)

// phaseInvalid is the PHASE column's text for a manifest that does not
// parse or validate. It is not a phase a status contains.
const phaseInvalid = "Invalid"

func newGetCommand(opts *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List the VMs of the manifest folder with their phase and readiness",
		Long: `Get reads each manifest in the manifest folder and its status (from the
file, or from <state>/vms/<name>/status.yaml where the file has none or
that one is newer) and prints a table: NAME, DESIRED, PHASE, READY, AGE
(since the last condition transition) and MESSAGE. An invalid manifest is
listed too, with Invalid in PHASE and its first error in MESSAGE.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			req := getRequest{dir: opts.dir, stateDir: opts.stateDir, name: name, output: output}
			return runGet(cmd.OutOrStdout(), req, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide, yaml, json or name (default a table)")
	return cmd
}

// getRequest is the folders, VM name and output format of one vmlet get.
type getRequest struct {
	dir, stateDir string
	name          string // "" for every VM
	output        string
}

// vmRow is one manifest as vmlet get shows it.
type vmRow struct {
	file   string
	m      *spec.Manifest
	status *spec.Status
}

func runGet(w io.Writer, req getRequest, now time.Time) error {
	if !slices.Contains([]string{outputTable, outputWide, outputYAML, outputJSON, outputName}, req.output) {
		return fmt.Errorf("unknown output format %q (use wide, yaml, json or name)", req.output)
	}
	rows, err := loadRows(req)
	if err != nil {
		return err
	}
	switch req.output {
	case outputYAML, outputJSON:
		return printObjects(w, rows, req)
	case outputName:
		for _, r := range rows {
			fmt.Fprintf(w, "virtualmachine/%s\n", r.name())
		}
		return nil
	}
	return printTable(w, rows, req.output == outputWide, now)
}

// loadRows reads the manifests of the folder, keeping those named
// req.name when it is set.
func loadRows(req getRequest) ([]vmRow, error) {
	files, err := spec.ListManifests(req.dir)
	if err != nil {
		return nil, fmt.Errorf("listing VMs in %q: %w", req.dir, err)
	}
	var rows []vmRow
	for _, f := range files {
		r := loadRow(f, req.stateDir)
		if req.name == "" || r.name() == req.name {
			rows = append(rows, r)
		}
	}
	if req.name != "" && len(rows) == 0 {
		return nil, fmt.Errorf("virtual machine %q not found in %q", req.name, req.dir)
	}
	return rows, nil
}

func loadRow(file, stateDir string) vmRow {
	m, err := spec.Load(file)
	if err != nil {
		// The file went away or cannot be read: show it as invalid.
		m = &spec.Manifest{Path: file, Err: err}
	}
	return vmRow{file: file, m: m, status: m.CurrentStatus(stateDir)}
}

// name returns metadata.name, or the file name when it cannot be read.
func (r vmRow) name() string {
	if r.m.Name != "" {
		return r.m.Name
	}
	return filepath.Base(r.file)
}

func (r vmRow) desired() string {
	if r.m.VM == nil || r.m.VM.Spec.DesiredState == "" {
		return "-"
	}
	return string(r.m.VM.Spec.DesiredState)
}

func (r vmRow) phase() string {
	switch {
	case r.m.Err != nil:
		return phaseInvalid
	case r.status == nil || r.status.Phase == "":
		return "-"
	}
	return string(r.status.Phase)
}

// observed reports whether the status describes the file's current spec.
func (r vmRow) observed() bool {
	return r.status != nil && r.m.VM != nil && r.status.ObservedSpecHash == r.m.VM.SpecHash()
}

func (r vmRow) ready() string {
	if c := r.condition(spec.ConditionReady); c != nil && r.observed() {
		return string(c.Status)
	}
	return "-"
}

func (r vmRow) condition(kind string) *spec.Condition {
	if r.status == nil {
		return nil
	}
	for i := range r.status.Conditions {
		if r.status.Conditions[i].Type == kind {
			return &r.status.Conditions[i]
		}
	}
	return nil
}

// age returns the time since the newest condition transition, or "-".
func (r vmRow) age(now time.Time) string {
	var newest time.Time
	if r.status != nil {
		for _, c := range r.status.Conditions {
			if c.LastTransitionTime.After(newest) {
				newest = c.LastTransitionTime.Time
			}
		}
	}
	if newest.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(newest))
}

// message returns the one line a person needs most: the manifest's first
// error, that the status is stale, or the most telling condition.
func (r vmRow) message() string {
	if r.m.Err != nil {
		return r.invalidMessage()
	}
	if r.status == nil {
		return "no status yet (is vmlet run watching this folder?)"
	}
	if !r.observed() {
		return "not yet observed: the status is for an earlier spec"
	}
	for _, c := range r.status.Conditions {
		if isProblem(c) && c.Message != "" {
			return oneLine(c.Type + ": " + c.Message)
		}
	}
	if c := r.condition(spec.ConditionReady); c != nil {
		return oneLine(c.Message)
	}
	return ""
}

// isProblem reports whether c is a condition a person should see before
// Ready: a False one other than Ready, or a True RestartRequired or
// CheckpointStale, which are bad news when True.
func isProblem(c spec.Condition) bool {
	switch c.Type {
	case spec.ConditionReady:
		return false
	case spec.ConditionRestartRequired, spec.ConditionCheckpointStale:
		return c.Status == spec.ConditionTrue
	}
	return c.Status == spec.ConditionFalse
}

// oneLine keeps a table row on one line when a message joins several
// errors with newlines.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

func (r vmRow) invalidMessage() string {
	// The folder is the same for every row: show the file name alone.
	msg := strings.TrimPrefix(r.m.FirstError(), filepath.Dir(r.file)+string(filepath.Separator))
	if msg == "" {
		msg = r.m.Err.Error()
	}
	if r.status == nil {
		return msg
	}
	switch r.status.Phase {
	case spec.PhaseRunning, spec.PhaseSuspended, spec.PhaseStarting, spec.PhaseResuming:
		return fmt.Sprintf("%s (still %s from the last valid spec)", msg, r.status.Phase)
	}
	return msg
}

func printTable(w io.Writer, rows []vmRow, wide bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := "NAME\tDESIRED\tPHASE\tREADY\tAGE\tMESSAGE"
	if wide {
		header = "NAME\tDESIRED\tPHASE\tREADY\tAGE\tCPUS\tMEMORY\tRESTARTS\tFILE\tMESSAGE"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r.line(wide, now))
	}
	return tw.Flush()
}

func (r vmRow) line(wide bool, now time.Time) string {
	cols := []string{r.name(), r.desired(), r.phase(), r.ready(), r.age(now)}
	if wide {
		cols = append(cols, r.cpus(), r.memory(), r.restarts(), r.file)
	}
	cols = append(cols, r.message())
	return strings.Join(cols, "\t")
}

func (r vmRow) cpus() string {
	if r.m.VM == nil {
		return "-"
	}
	return strconv.Itoa(r.m.VM.Spec.CPUs)
}

func (r vmRow) memory() string {
	if r.m.VM == nil || r.m.VM.Spec.Memory.Text == "" {
		return "-"
	}
	return r.m.VM.Spec.Memory.Text
}

func (r vmRow) restarts() string {
	if r.status == nil {
		return "0"
	}
	return strconv.Itoa(r.status.Restarts)
}

// object returns the row as a VirtualMachine with its current status. An
// invalid manifest that did not decode becomes an object with only its
// name and a Valid=False condition that holds its first error.
func (r vmRow) object() *spec.VirtualMachine {
	vm := &spec.VirtualMachine{APIVersion: spec.APIVersion, Kind: spec.Kind}
	if r.m.VM != nil {
		copied := *r.m.VM
		vm = &copied
	}
	vm.Metadata.Name = r.name()
	vm.Status = r.status
	if r.m.Err != nil {
		vm.Status = withInvalid(r.status, r.m.FirstError())
	}
	return vm
}

// withInvalid returns a copy of st with its Valid condition set False.
func withInvalid(st *spec.Status, msg string) *spec.Status {
	out := &spec.Status{}
	if st != nil {
		*out = *st
		out.Conditions = slices.DeleteFunc(slices.Clone(st.Conditions), func(c spec.Condition) bool {
			return c.Type == spec.ConditionValid
		})
	}
	out.Conditions = append(out.Conditions, spec.Condition{
		Type: spec.ConditionValid, Status: spec.ConditionFalse, Reason: "Invalid", Message: msg,
	})
	return out
}

// printObjects prints the rows as one object when a name was asked for,
// and as a Kubernetes-style List otherwise.
func printObjects(w io.Writer, rows []vmRow, req getRequest) error {
	var out any
	if req.name != "" && len(rows) == 1 {
		out = rows[0].object()
	} else {
		items := make([]*spec.VirtualMachine, len(rows))
		for i, r := range rows {
			items[i] = r.object()
		}
		out = map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding VMs: %w", err)
	}
	if req.output == outputYAML {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return fmt.Errorf("encoding VMs: %w", err)
		}
	} else {
		data = append(data, '\n')
	}
	_, err = w.Write(data)
	return err
}
