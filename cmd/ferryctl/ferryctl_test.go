package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ferrybridge/ferry/internal/daemon"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/intranet"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ferryctl": func() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
		// The agents, for scripts that check ferryctl against running
		// ones (status, check daily).
		"dmz-agent":      func() { os.Exit(daemon.Main(dmz.Daemon, os.Args[1:], os.Stderr)) },
		"intranet-agent": func() { os.Exit(daemon.Main(intranet.Daemon, os.Args[1:], os.Stderr)) },
	})
}

// TestScripts runs the CLI golden tests in testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	vectors, err := filepath.Abs("../../testdata/envelope")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Abs("../../deploy/etc")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("VECTORS", vectors)
			env.Setenv("EXAMPLES", examples)
			return nil
		},
	})
}
