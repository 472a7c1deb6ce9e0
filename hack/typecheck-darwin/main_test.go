package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		patterns   []string
		wantStatus int
		wantErrors []string
	}{
		{
			name:       "broken darwin file",
			patterns:   []string{"./testdata/broken"},
			wantStatus: 1,
			wantErrors: []string{
				"broken_darwin.go:11:31: cannot use 42",
				"broken_darwin.go:16:12: vm.Suspend undefined",
				"(darwin/arm64)",
				"(darwin/amd64)",
			},
		},
		{name: "good darwin file", patterns: []string{"./testdata/good"}},
		{name: "whole project"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			status := run(tt.patterns, &stdout, &stderr)
			if status != tt.wantStatus {
				t.Errorf("exit status = %d, want %d\nstderr:\n%s", status, tt.wantStatus, stderr.String())
			}
			for _, want := range tt.wantErrors {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
			if !strings.Contains(stdout.String(), "darwin/amd64:") {
				t.Errorf("stdout has no summary for darwin/amd64:\n%s", stdout.String())
			}
		})
	}
}

func TestRelative(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{name: "not a path", msg: "x: undefined", want: "x: undefined"},
		{name: "outside working folder", msg: "/nonexistent/a.go:1:2: bad", want: "/nonexistent/a.go:1:2: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := relative(tt.msg); got != tt.want {
				t.Errorf("relative(%q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}
