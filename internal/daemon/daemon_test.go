package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// fakeAgent is a function-field fake at the Agent seam.
type fakeAgent struct {
	run    func(ctx context.Context) error
	closed bool
}

func (f *fakeAgent) Run(ctx context.Context) error { return f.run(ctx) }
func (f *fakeAgent) Close() error                  { f.closed = true; return nil }

func TestMain_ExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		buildErr error
		runErr   error
		want     int
		stderr   string
	}{
		{"clean stop", nil, nil, nil, ExitOK, ""},
		{"run fails", nil, nil, errors.New("disk full"), ExitFailure, "disk full"},
		{"cannot start", nil, errors.New("dmz.yaml:3: zone: invalid"), nil, ExitConfig, "dmz.yaml:3: zone: invalid"},
		{"bad flag", []string{"-nope"}, nil, nil, ExitUsage, "flag provided but not defined"},
		{"extra argument", []string{"extra"}, nil, nil, ExitUsage, "unexpected argument"},
		{"bad log format", []string{"-log-format", "xml"}, nil, nil, ExitUsage, "invalid log format"},
		{"help", []string{"-h"}, nil, nil, ExitOK, "exit codes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			agent := &fakeAgent{run: func(context.Context) error { return tc.runErr }}
			var gotPath string
			code := Main(Spec{
				Name:          "test-agent",
				DefaultConfig: "/etc/ferry/test.yaml",
				Build: func(path string, _ *slog.Logger) (Agent, error) {
					gotPath = path
					if tc.buildErr != nil {
						return nil, tc.buildErr
					}
					return agent, nil
				},
			}, append([]string{"-log-format", "text"}, tc.args...), &stderr)
			if code != tc.want {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.stderr)
			}
			if tc.want == ExitOK && tc.name == "clean stop" {
				if gotPath != "/etc/ferry/test.yaml" || !agent.closed {
					t.Errorf("config path %q, closed %v", gotPath, agent.closed)
				}
			}
		})
	}
}
