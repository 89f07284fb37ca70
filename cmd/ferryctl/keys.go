package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/keys"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate and show zone keys",
	}
	cmd.AddCommand(newKeysShowCmd(g), newKeysGenerateCmd(g))
	return cmd
}

type keysShowOptions struct {
	JSON bool
}

func (o *keysShowOptions) Add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newKeysShowCmd(g *globals) *cobra.Command {
	var opts keysShowOptions
	cmd := &cobra.Command{
		Use:   "show KEYDIR",
		Short: "Show the public keys and ids in a zone's key directory",
		Long: `Show the public keys and ids in a zone's key directory: the zone's own
signing key (name, key id, verifier key) and age recipient with its
fingerprint, and the peer's, where present. Private key files are checked
for permissions but never printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysShow(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

type keyInfo struct {
	Role        string `json:"role"`
	Zone        string `json:"zone"`
	KeyID       string `json:"key_id"`
	VerifierKey string `json:"verifier_key"`
	Recipient   string `json:"age_recipient"`
	Fingerprint string `json:"age_fingerprint"`
	Private     string `json:"private,omitempty"`
}

func runKeysShow(opts keysShowOptions, dir string, out io.Writer) error {
	var infos []keyInfo
	own, err := keys.LoadPublic(filepath.Join(dir, keys.SignPubFile), filepath.Join(dir, keys.AgePubFile))
	if err != nil {
		return withHint(err, "KEYDIR is a zone's key directory, such as DEPLOYMENT/dmz/keys")
	}
	private := "ok (0600)"
	for _, f := range []string{keys.SignKeyFile, keys.AgeKeyFile} {
		if err := keys.CheckPrivate(filepath.Join(dir, f)); err != nil {
			private = err.Error()
			break
		}
	}
	infos = append(infos, describe("own", own, private))
	if peer, err := keys.LoadPeer(dir); err == nil {
		infos = append(infos, describe("peer", peer, ""))
	} else if !os.IsNotExist(err) {
		if _, statErr := os.Stat(filepath.Join(dir, keys.PeerSignPubFile)); statErr == nil {
			return err
		}
	}
	if opts.JSON {
		return writeJSON(out, infos)
	}
	for _, k := range infos {
		fmt.Fprintf(out, "%s zone %q\n", k.Role, k.Zone)
		fmt.Fprintf(out, "  signing key   %s (key id %s)\n", k.VerifierKey, k.KeyID)
		fmt.Fprintf(out, "  age recipient %s (fingerprint %s)\n", k.Recipient, k.Fingerprint)
		if k.Private != "" {
			fmt.Fprintf(out, "  private keys  %s\n", k.Private)
		}
	}
	return nil
}

func describe(role string, p *keys.Peer, private string) keyInfo {
	return keyInfo{
		Role:        role,
		Zone:        p.Name,
		KeyID:       keys.KeyID(p.Verifier.KeyHash()),
		VerifierKey: p.VerifierKey,
		Recipient:   p.Recipient.String(),
		Fingerprint: keys.Fingerprint(p.Recipient),
		Private:     private,
	}
}

func newKeysGenerateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate ZONE KEYDIR",
		Short: "Generate a zone's signing key and age identity into KEYDIR",
		Long: `Generate a zone's Ed25519 signing key and age X25519 identity into KEYDIR
(created 0700; private files 0600). Existing key files are never
overwritten. Copy sign.pub and age.pub to the peer zone as peer-sign.pub and
peer-age.pub.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysGenerate(args[0], args[1], g.stdout)
		},
	}
	return cmd
}

func runKeysGenerate(zone, dir string, out io.Writer) error {
	if !keys.ValidZoneName(zone) {
		return &usageError{fmt.Errorf("invalid zone name %q: use lowercase letters, digits and '-'", zone)}
	}
	z, err := keys.Generate(zone)
	if err != nil {
		return err
	}
	if err := z.WriteDir(dir); err != nil {
		return withHint(err, "keys are never overwritten; remove old keys deliberately or choose another directory")
	}
	return runKeysShow(keysShowOptions{}, dir, out)
}
