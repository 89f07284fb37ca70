package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/keys"
)

func newAdminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage security administrators' personal signing keys",
	}
	cmd.AddCommand(newAdminKeygenCmd(g))
	return cmd
}

type adminKeygenOptions struct {
	Dir string
}

func (o *adminKeygenOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Dir, "dir", ".", "`directory` to write NAME.key and NAME.pub into (created 0700)")
}

func newAdminKeygenCmd(g *globals) *cobra.Command {
	var opts adminKeygenOptions
	cmd := &cobra.Command{
		Use:   "keygen NAME",
		Short: "Generate an admin's Ed25519 key pair for signing policies and approvals",
		Long: `Generate an admin's Ed25519 key pair (C2SP signed-note keys named NAME) and
write DIR/NAME.key (private, 0600) and DIR/NAME.pub (public, 0644). Existing
files are never overwritten. NAME is 1 to 64 lowercase letters, digits, '_'
or '-', starting with a letter; it is how signatures name the admin.

Keep NAME.key with the admin, off the agents. Install NAME.pub, under that
file name, in the intranet agent's admins directory: the agent trusts exactly
the admins whose keys are there.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdminKeygen(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runAdminKeygen(opts adminKeygenOptions, name string, out io.Writer) error {
	if !admin.ValidName(name) {
		return &usageError{fmt.Errorf("invalid admin name %q: use 1 to 64 lowercase letters, digits, '_' or '-', starting with a letter", name)}
	}
	keyFile, pubFile, err := admin.WriteKey(opts.Dir, name, nil)
	if err != nil {
		return withHint(err, "keys are never overwritten; remove old keys deliberately or choose another --dir")
	}
	data, err := os.ReadFile(pubFile)
	if err != nil {
		return err
	}
	vkey := strings.TrimSpace(string(data))
	v, err := keys.LoadVerifier(pubFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (private, 0600): keep it with %s, never on an agent\n", keyFile, name)
	fmt.Fprintf(out, "wrote %s\n", pubFile)
	fmt.Fprintf(out, "public key %s (key id %s)\n", vkey, keys.KeyID(v.KeyHash()))
	fmt.Fprintf(out, "install %s%s in the intranet agent's admins directory to make %s a known admin\n", name, admin.PubSuffix, name)
	return nil
}
