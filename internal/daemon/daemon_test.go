package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"syscall"
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

// reloadingAgent counts reloads and fails the ones after the first.
type reloadingAgent struct {
	fakeAgent
	reloads chan int
	n       int
}

func (r *reloadingAgent) Reload() error {
	r.n++
	r.reloads <- r.n
	if r.n > 1 {
		return errors.New("policy.yaml: under-signed")
	}
	return nil
}

func TestReloadOnHUP(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	hups := make(chan os.Signal, 1)
	agent := &reloadingAgent{reloads: make(chan int)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOnHUP(ctx, agent, hups, logger, notifier{logger: logger})
	}()
	for want := 1; want <= 2; want++ {
		hups <- syscall.SIGHUP
		if got := <-agent.reloads; got != want {
			t.Fatalf("reload %d, want %d", got, want)
		}
	}
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, "msg=reloaded") || !strings.Contains(out, "under-signed") || !strings.Contains(out, "still running on the previous configuration") {
		t.Errorf("log does not report both reloads:\n%s", out)
	}

	// An agent that cannot reload says so and keeps running.
	logs.Reset()
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		reloadOnHUP(ctx, &fakeAgent{}, hups, logger, notifier{logger: logger})
	}()
	hups <- syscall.SIGHUP
	hups <- syscall.SIGHUP // accepted only once the first was handled
	cancel()
	<-done
	if !strings.Contains(logs.String(), "SIGHUP ignored") {
		t.Errorf("log does not say SIGHUP was ignored:\n%s", logs.String())
	}
}
