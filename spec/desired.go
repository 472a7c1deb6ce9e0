package spec

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ReplaceDesiredState returns data with spec.desiredState set to state,
// changing only that value's bytes and keeping its quoting. Where the spec
// has no desiredState the member is added before the spec's first member.
// ReplaceDesiredState does not modify data.
func ReplaceDesiredState(data []byte, state DesiredState) ([]byte, error) {
	root, err := parseDocument("", data)
	if err != nil {
		return nil, fmt.Errorf("setting desired state: %w", err)
	}
	e := &editor{t: newText(data), root: root}
	out, err := e.replaceDesiredState(state)
	if err != nil {
		return nil, fmt.Errorf("setting desired state: %w", err)
	}
	if err := checkDesiredState(out, state); err != nil {
		return nil, fmt.Errorf("setting desired state: %w", err)
	}
	return out, nil
}

func (e *editor) replaceDesiredState(state DesiredState) ([]byte, error) {
	spec := lookup(e.root, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: the manifest has no spec mapping", errEdit)
	}
	i, err := memberIndex(spec, "desiredState")
	if err != nil {
		return nil, err
	}
	if i < 0 {
		return e.insertDesiredState(spec, state)
	}
	val := spec.Content[i+1]
	start := e.t.offset(val.Line, val.Column)
	if val.Kind != yaml.ScalarNode || val.Tag == "!!null" && val.Value == "" {
		return nil, fmt.Errorf("%w: spec.desiredState is not a value to replace", errEdit)
	}
	end, err := e.valueEnd(start)
	if err != nil {
		return nil, err
	}
	return splice(e.t.data, start, end, quoteLike(val, string(state))), nil
}

// quoteLike quotes value the way the user quoted n.
func quoteLike(n *yaml.Node, value string) string {
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		return `"` + value + `"`
	case n.Style&yaml.SingleQuotedStyle != 0:
		return "'" + value + "'"
	}
	return value
}

// insertDesiredState adds the member before the first member of spec, on
// a line of its own where that member starts one.
func (e *editor) insertDesiredState(spec *yaml.Node, state DesiredState) ([]byte, error) {
	if len(spec.Content) == 0 {
		return nil, fmt.Errorf("%w: spec is empty", errEdit)
	}
	first := spec.Content[0]
	at := e.t.offset(first.Line, first.Column)
	member := "desiredState: " + string(state)
	if first.Style&yaml.DoubleQuotedStyle != 0 {
		member = `"desiredState": "` + string(state) + `"`
	}
	ownLine := strings.TrimLeft(string(e.t.data[e.t.lineStart(first.Line):at]), " ") == ""
	switch {
	case spec.Style&yaml.FlowStyle == 0:
		member += e.t.eol() + strings.Repeat(" ", first.Column-1)
	case ownLine:
		member += "," + e.t.eol() + strings.Repeat(" ", first.Column-1)
	default:
		member += ", "
	}
	return splice(e.t.data, at, at, member), nil
}

// checkDesiredState parses the edited document and checks that its
// spec.desiredState is state.
func checkDesiredState(out []byte, state DesiredState) error {
	root, err := parseDocument("", out)
	if err != nil {
		return fmt.Errorf("%w: the result does not parse: %w", errEdit, err)
	}
	spec := lookup(root, "spec")
	if spec == nil {
		return fmt.Errorf("%w: the result has no spec", errEdit)
	}
	got := lookup(spec, "desiredState")
	if got == nil || got.Value != string(state) {
		return fmt.Errorf("%w: the result's desired state differs", errEdit)
	}
	return nil
}
