package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/keys"
)

// newPolicyCmd returns the policy command group. Other files add their
// subcommands here.
func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, sign and verify policy files",
	}
	cmd.AddCommand(newPolicySignCmd(g), newPolicyVerifyCmd(g), newPolicyLintCmd(g), newPolicyTestCmd(g), newPolicyDiffCmd(g))
	return cmd
}

type policySignOptions struct {
	Key string
}

func (o *policySignOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Key, "key", "", "the admin's private key `file` (NAME.key, mode 0600)")
}

func newPolicySignCmd(g *globals) *cobra.Command {
	var opts policySignOptions
	cmd := &cobra.Command{
		Use:   "sign --key NAME.key FILE",
		Short: "Add your signature to a policy's signature file FILE.sig",
		Long: `Sign the exact bytes of policy FILE with an admin key and add the signature
to FILE.sig, creating it if needed. Signatures already there are kept, also
those by keys unknown here; signing again with the same key changes nothing.
FILE.sig is replaced atomically. It refuses a FILE.sig made for other bytes:
the policy changed after it was signed, and every admin must sign again.

Review the policy before you sign it: a policy takes effect only when enough
distinct admins have signed it (see 'ferryctl policy verify').`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicySign(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runPolicySign(opts policySignOptions, path string, out io.Writer) error {
	if opts.Key == "" {
		return &usageError{errors.New("--key is required")}
	}
	s, err := admin.LoadSigner(opts.Key)
	if err != nil {
		return withHint(err, "--key is your NAME.key from 'ferryctl admin keygen', mode 0600")
	}
	policy, sig, sigPath, err := admin.ReadPolicyFile(path)
	if err != nil {
		return err
	}
	newSig, err := admin.SignPolicy(policy, sig, s)
	if errors.Is(err, admin.ErrMismatch) {
		return withHint(fmt.Errorf("%s: %w", sigPath, err),
			"the policy changed after these signatures were made; review the change, move "+sigPath+" aside and sign again")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", sigPath, err)
	}
	who := fmt.Sprintf("%s (key %s)", s.Name(), keys.KeyID(s.KeyHash()))
	if string(newSig) == string(sig) {
		fmt.Fprintf(out, "%s has already signed %s; %s is unchanged\n", who, path, sigPath)
	} else {
		if err := admin.WriteFile(sigPath, newSig, 0o644, true); err != nil {
			return err
		}
		fmt.Fprintf(out, "signed %s as %s\n", path, who)
	}
	// No keyring here: list who the lines claim to be; 'verify' checks them.
	sigs, err := admin.PolicySigners(policy, newSig, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s now holds %d signature(s):\n", sigPath, len(sigs))
	for _, ps := range sigs {
		fmt.Fprintf(out, "  %-16s key %s\n", ps.Name, keys.KeyID(ps.KeyHash))
	}
	return nil
}

type policyVerifyOptions struct {
	Admins   string
	Required int
	JSON     bool
}

func (o *policyVerifyOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Admins, "admins", "", "`directory` of known admins' NAME.pub files")
	cmd.Flags().IntVar(&o.Required, "required", admin.DefaultRequired, "distinct admin signatures the policy needs")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newPolicyVerifyCmd(g *globals) *cobra.Command {
	var opts policyVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify --admins DIR [--required N] FILE",
		Short: "Check a policy's signatures as the intranet agent does",
		Long: `Check FILE.sig against policy FILE and the known admins in DIR (NAME.pub
files) exactly as the intranet agent does at load, and list every signature:
its name, key id and whether it is valid, by an unknown key (not counted) or a
repeat of a key already counted. Exits 1 unless FILE.sig is for the exact
bytes of FILE, every signature by a known admin verifies, and at least N
distinct known admins signed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyVerify(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

type policySigJSON struct {
	Name      string `json:"name"`
	KeyID     string `json:"key_id"`
	Known     bool   `json:"known"`
	Duplicate bool   `json:"duplicate"`
	Counted   bool   `json:"counted"`
}

type policyVerifyJSON struct {
	Policy        string          `json:"policy"`
	SHA256        string          `json:"sha256"`
	Size          int             `json:"size"`
	SignatureFile string          `json:"signature_file"`
	Signatures    []policySigJSON `json:"signatures"`
	Signers       []string        `json:"signers"`
	Required      int             `json:"required"`
	OK            bool            `json:"ok"`
}

func runPolicyVerify(opts policyVerifyOptions, path string, out io.Writer) error {
	if opts.Admins == "" {
		return &usageError{errors.New("--admins is required")}
	}
	if opts.Required < 1 {
		return &usageError{fmt.Errorf("--required must be at least 1, not %d", opts.Required)}
	}
	k, err := admin.LoadKeyring(opts.Admins)
	if err != nil {
		return withHint(err, "--admins is the directory of known admins' NAME.pub files")
	}
	policy, sig, sigPath, err := admin.ReadPolicyFile(path)
	if err != nil {
		return err
	}
	if sig == nil {
		return withHint(fmt.Errorf("%s: no signature file: the policy is unsigned", sigPath),
			"admins sign with 'ferryctl policy sign --key NAME.key "+path+"'")
	}
	sigs, err := admin.PolicySigners(policy, sig, k)
	if err != nil {
		err = fmt.Errorf("%s: %w", sigPath, err)
		if errors.Is(err, admin.ErrMismatch) {
			return withHint(err, "the policy changed after it was signed: it must be reviewed and signed again")
		}
		return err
	}
	signers, verr := admin.VerifyPolicy(policy, sig, k, opts.Required)
	if verr != nil && !errors.Is(verr, admin.ErrUnderSigned) {
		return fmt.Errorf("%s: %w", sigPath, verr)
	}
	sum := sha256.Sum256(policy)
	res := policyVerifyJSON{
		Policy: path, SHA256: hex.EncodeToString(sum[:]), Size: len(policy), SignatureFile: sigPath,
		Signatures: []policySigJSON{}, Signers: signers, Required: opts.Required, OK: verr == nil,
	}
	if res.Signers == nil {
		res.Signers = []string{}
	}
	for _, ps := range sigs {
		res.Signatures = append(res.Signatures, policySigJSON{
			Name: ps.Name, KeyID: keys.KeyID(ps.KeyHash), Known: ps.Known, Duplicate: ps.Duplicate,
			Counted: ps.Known && !ps.Duplicate,
		})
	}
	if opts.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		printPolicyVerify(out, res)
	}
	if verr != nil {
		return withHint(fmt.Errorf("%s: %w", path, verr),
			"another admin reviews the policy and signs it with 'ferryctl policy sign --key NAME.key "+path+"'")
	}
	return nil
}

func printPolicyVerify(out io.Writer, res policyVerifyJSON) {
	fmt.Fprintf(out, "policy     %s (sha256 %s, %d bytes)\n", res.Policy, res.SHA256, res.Size)
	fmt.Fprintf(out, "signatures %s\n", res.SignatureFile)
	for _, s := range res.Signatures {
		status := "valid"
		switch {
		case !s.Known:
			status = "unknown key, not counted"
		case s.Duplicate:
			status = "valid, repeat of a counted key, not counted again"
		}
		fmt.Fprintf(out, "  %-16s key %s  %s\n", s.Name, s.KeyID, status)
	}
	verdict := "ok"
	if !res.OK {
		verdict = "UNDER-SIGNED"
	}
	fmt.Fprintf(out, "%d of %d required signatures: %s\n", len(res.Signers), res.Required, verdict)
}
