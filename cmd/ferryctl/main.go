// Command ferryctl is the security administrators' tool for ferry: it creates
// deployments and keys, inspects and verifies envelopes, and runs the demo.
//
// Exit codes:
//
//	0  success
//	1  failure: a verification failed, or the command could not do its work
//	2  usage: bad flags or arguments
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, mapped in one place.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitIncomplete: 'carry import' imported the verified files of a
	// carry set, but a file its manifest lists is missing or corrupt.
	exitIncomplete = 3
)

// exitCodesHelp is appended to every command's help.
const exitCodesHelp = `
Exit codes:
  0  success
  1  failure (verification failed, or the command could not do its work)
  2  usage error
  3  incomplete (carry import: a listed file is missing or corrupt)`

// usageError marks an error as a usage problem (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// hintError carries hint lines printed after the error.
type hintError struct {
	err   error
	hints []string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hints ...string) error { return &hintError{err: err, hints: hints} }

// globals are options shared by every command.
type globals struct {
	stdout io.Writer
	stderr io.Writer
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "ferryctl",
		Short:         "Administer a ferry DMZ/intranet exchange bridge",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newInitCmd(g), newKeysCmd(g), newEnvelopeCmd(g), newDemoCmd(g), newAdminCmd(g), newPolicyCmd(g), newApproveCmd(g), newCarryCmd(g), newQueueCmd(g), newMediumCmd(g), newAuditCmd(g), newStatusCmd(g), newCheckCmd(g), newAlarmCmd(g), newClientsCmd(g))
	root.AddCommand(newConfigCmd(g))
	addExitCodes(root)
	return root
}

// addExitCodes appends the exit code table to the help of cmd and its
// children, and makes argument errors usage errors.
func addExitCodes(cmd *cobra.Command) {
	if cmd.Long == "" {
		cmd.Long = cmd.Short
	}
	cmd.Long += "\n" + exitCodesHelp
	if cmd.Args != nil {
		args := cmd.Args
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		addExitCodes(c)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "ferryctl: error: %s\n", err)
	var he *hintError
	if errors.As(err, &he) {
		for _, h := range he.hints {
			fmt.Fprintf(stderr, "hint: %s\n", h)
		}
	}
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(stderr, "hint: run 'ferryctl help' for usage\n")
		return exitUsage
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitFailure
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// writeJSON prints v as indented JSON, the form of every --json output.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
