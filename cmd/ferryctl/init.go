package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/intranet"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// Default zone names of a deployment made by ferryctl init.
const (
	defaultDMZZone      = "dmz"
	defaultIntranetZone = "intranet"
	defaultClient       = "portal"
	defaultListen       = "127.0.0.1:8080"
)

type initOptions struct {
	Listen string
	Client string
}

func (o *initOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Listen, "listen", defaultListen, "`address` the DMZ agent's HTTP API listens on")
	cmd.Flags().StringVar(&o.Client, "client", defaultClient, "`name` of the API client to create")
}

func newInitCmd(g *globals) *cobra.Command {
	var opts initOptions
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a complete two-zone deployment in DIR",
		Long: `Create a complete two-zone deployment in DIR: a dmz/ and an intranet/ zone,
each with its config, its own envelope and audit keys and the peer's public
keys, the sample policy, a sample replica database for the intranet, and the
exchange/ directories that stand for the one-way media. DIR must not exist or
be empty.

Each zone's audit keys are in its keys/ directory: audit.pub is the file to
give auditors; audit-hmac.key (0600) only to auditors who may search the
audit log by ID number.

The API client's bearer token is written to DIR/<client>.token (0600);
the DMZ config holds only its SHA-256.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runInit(cmd.Context(), opts, args[0], g.stdout)
			return err
		},
	}
	opts.Add(cmd)
	return cmd
}

// deployment describes what runInit created.
type deployment struct {
	Dir            string
	DMZConfig      string
	IntranetConfig string
	TokenFile      string
	Token          string
	Listen         string
	Client         string
}

func runInit(ctx context.Context, opts initOptions, dir string, out io.Writer) (*deployment, error) {
	if !keys.ValidZoneName(opts.Client) {
		return nil, &usageError{fmt.Errorf("invalid client name %q", opts.Client)}
	}
	if err := ensureEmptyDir(dir); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &deployment{
		Dir:            abs,
		DMZConfig:      filepath.Join(abs, "dmz", "dmz.yaml"),
		IntranetConfig: filepath.Join(abs, "intranet", "intranet.yaml"),
		TokenFile:      filepath.Join(abs, opts.Client+".token"),
		Listen:         opts.Listen,
		Client:         opts.Client,
	}
	for _, sub := range []string{"dmz/state", "intranet/state", "exchange/requests", "exchange/results"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o750); err != nil {
			return nil, err
		}
	}
	dmzKeys, err := keys.Generate(defaultDMZZone)
	if err != nil {
		return nil, err
	}
	inKeys, err := keys.Generate(defaultIntranetZone)
	if err != nil {
		return nil, err
	}
	if err := writeZoneKeys(filepath.Join(abs, "dmz", "keys"), dmzKeys, inKeys.Public()); err != nil {
		return nil, err
	}
	if err := writeZoneKeys(filepath.Join(abs, "intranet", "keys"), inKeys, dmzKeys.Public()); err != nil {
		return nil, err
	}
	dmzAudit, err := writeAuditKeys(filepath.Join(abs, "dmz", "keys"), defaultDMZZone)
	if err != nil {
		return nil, err
	}
	inAudit, err := writeAuditKeys(filepath.Join(abs, "intranet", "keys"), defaultIntranetZone)
	if err != nil {
		return nil, err
	}
	// Each zone witnesses the other's audit log with its audit.pub.
	if err := keys.CopyAuditPub(filepath.Join(abs, "dmz", "keys"), defaultDMZZone, filepath.Join(abs, "intranet", "keys")); err != nil {
		return nil, err
	}
	if err := keys.CopyAuditPub(filepath.Join(abs, "intranet", "keys"), defaultIntranetZone, filepath.Join(abs, "dmz", "keys")); err != nil {
		return nil, err
	}
	for _, z := range []struct {
		zone  string
		own   *keys.Zone
		audit *keys.Audit
	}{{defaultDMZZone, dmzKeys, dmzAudit}, {defaultIntranetZone, inKeys, inAudit}} {
		dir := filepath.Join(abs, z.zone, "keys")
		if err := journal(dir, "keys.generate", fmt.Sprintf("ferryctl init: zone %s: signing key %s, age key %s, audit key %s",
			z.zone, keys.KeyID(z.own.Verifier.KeyHash()), keys.Fingerprint(z.own.Recipient), keys.KeyID(z.audit.Verifier.KeyHash())), 0); err != nil {
			return nil, err
		}
	}
	for _, zone := range []string{"dmz", "intranet"} {
		if err := os.WriteFile(filepath.Join(abs, zone, "policy.yaml"), sample.Policy(), 0o640); err != nil {
			return nil, err
		}
	}
	admins, err := initAdmins(abs)
	if err != nil {
		return nil, fmt.Errorf("create admin keys: %w", err)
	}
	if err := sample.WriteReplica(ctx, filepath.Join(abs, "intranet", "replica.db")); err != nil {
		return nil, fmt.Errorf("create sample replica: %w", err)
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	d.Token = token
	if err := os.WriteFile(d.TokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	vars := map[string]string{
		"DMZ": defaultDMZZone, "Intranet": defaultIntranetZone,
		"Listen": opts.Listen, "Client": opts.Client, "TokenSHA256": tokenHash(token),
	}
	if err := writeTemplate(d.DMZConfig, dmzConfigTemplate, vars); err != nil {
		return nil, err
	}
	if err := writeTemplate(d.IntranetConfig, intranetConfigTemplate, vars); err != nil {
		return nil, err
	}
	// What init writes must be what the agents accept.
	if _, err := dmz.LoadConfig(d.DMZConfig); err != nil {
		return nil, fmt.Errorf("generated config does not load: %w", err)
	}
	if _, err := intranet.LoadConfig(d.IntranetConfig); err != nil {
		return nil, fmt.Errorf("generated config does not load: %w", err)
	}
	fmt.Fprintf(out, "created a two-zone ferry deployment in %s\n", abs)
	rows := [][2]string{
		{"dmz/dmz.yaml", "DMZ agent config; API on " + opts.Listen},
		{"dmz/keys/", fmt.Sprintf("DMZ signing key %s+%s, age key %s (private files 0600)", dmzKeys.Name, keys.KeyID(dmzKeys.Verifier.KeyHash()), keys.Fingerprint(dmzKeys.Recipient))},
		{"dmz/keys/audit.*", auditRow("DMZ", dmzAudit)},
		{"dmz/policy.yaml", "sample whitelist policy (early rejection at the DMZ)"},
		{"intranet/intranet.yaml", "intranet agent config"},
		{"intranet/keys/", fmt.Sprintf("intranet signing key %s+%s, age key %s (private files 0600)", inKeys.Name, keys.KeyID(inKeys.Verifier.KeyHash()), keys.Fingerprint(inKeys.Recipient))},
		{"intranet/keys/audit.*", auditRow("intranet", inAudit)},
		{"intranet/policy.yaml", "sample whitelist policy (the authority), signed by " + strings.Join(admins, " and ") + " in policy.yaml.sig"},
		{"intranet/keys/admins/", "the admins' public keys, which the intranet agent trusts to sign policies and approvals"},
		{"intranet/approvals/", "signed decisions on held writes (ferryctl approve --key admins/" + demoReviewer + ".key)"},
		{"admins/", "the admins' private keys (demo only: in production each admin keeps their own key)"},
		{"intranet/replica.db", "sample traffic-management replica (SQLite)"},
		{"exchange/requests/", "request medium: DMZ writes, intranet reads"},
		{"exchange/results/", "result medium: intranet writes, DMZ reads"},
		{opts.Client + ".token", fmt.Sprintf("bearer token of API client %q (0600)", opts.Client)},
	}
	for _, r := range rows {
		fmt.Fprintf(out, "  %-24s %s\n", r[0], r[1])
	}
	fmt.Fprintf(out, "start the agents with:\n  dmz-agent -config %s\n  intranet-agent -config %s\n", d.DMZConfig, d.IntranetConfig)
	return d, nil
}

// demoAdmins are the admins init creates: the first two sign the sample
// policy (the two signatures the intranet agent requires by default), and
// demoReviewer, who did not sign it, may approve held writes.
var demoAdmins = []string{"admin1", "admin2", demoReviewer}

// demoReviewer is the demo admin who reviews held writes.
const demoReviewer = "admin3"

// initAdmins creates the demo admins' keys in dir/admins, installs their
// public keys in the intranet's admins directory and signs the intranet's
// policy with all but the reviewer. It returns the signers' names.
func initAdmins(dir string) ([]string, error) {
	priv := filepath.Join(dir, "admins")
	pub := filepath.Join(dir, "intranet", "keys", "admins")
	for _, d := range []string{priv, pub, filepath.Join(dir, "intranet", "approvals")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	var signers []note.Signer
	for _, name := range demoAdmins {
		keyFile, pubFile, err := admin.WriteKey(priv, name, nil)
		if err != nil {
			return nil, err
		}
		vkey, err := os.ReadFile(pubFile)
		if err != nil {
			return nil, err
		}
		if err := admin.WriteFile(filepath.Join(pub, filepath.Base(pubFile)), vkey, 0o644, false); err != nil {
			return nil, err
		}
		if name == demoReviewer {
			continue
		}
		s, err := admin.LoadSigner(keyFile)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	if _, err := admin.SignPolicyFile(filepath.Join(dir, "intranet", "policy.yaml"), signers...); err != nil {
		return nil, err
	}
	names := make([]string, len(signers))
	for i, s := range signers {
		names[i] = s.Name()
	}
	return names, nil
}

func writeZoneKeys(dir string, own *keys.Zone, peer *keys.Peer) error {
	if err := own.WriteDir(dir); err != nil {
		return err
	}
	return keys.WritePeer(dir, peer)
}

// writeAuditKeys generates zone's audit keys into its key directory and
// loads them back, as the agent will.
func writeAuditKeys(dir, zone string) (*keys.Audit, error) {
	if err := keys.GenerateAudit(dir, zone); err != nil {
		return nil, fmt.Errorf("create audit keys: %w", err)
	}
	a, err := keys.LoadAudit(dir, zone)
	if err != nil {
		return nil, fmt.Errorf("generated audit keys do not load: %w", err)
	}
	return a, nil
}

// auditRow describes a zone's audit key files for init's summary.
func auditRow(who string, a *keys.Audit) string {
	return fmt.Sprintf("%s audit key %s+%s (%s for auditors and, as %s, the other zone; %s only for those who may search by ID number)",
		who, a.Verifier.Name(), keys.KeyID(a.Verifier.KeyHash()), keys.AuditPubFile, keys.PeerAuditPubFile, keys.AuditHMACKeyFile)
}

func ensureEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o750)
	case err != nil:
		return err
	case len(entries) > 0:
		return withHint(fmt.Errorf("%s is not empty", dir), "choose a new directory; init never overwrites a deployment")
	}
	return nil
}

func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "fy_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func writeTemplate(path, tmpl string, vars map[string]string) error {
	t := template.Must(template.New(filepath.Base(path)).Parse(tmpl))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if err := t.Execute(f, vars); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

const dmzConfigTemplate = `# ferry DMZ agent. Relative paths are relative to this file.
zone: {{.DMZ}}
peer: {{.Intranet}}
listen: {{.Listen}}
keys: keys
policy: policy.yaml
spool: state/spool.db
send:                  # request medium: the DMZ only writes here
  type: dir
  dir: ../exchange/requests
receive:               # result medium: the DMZ only reads here
  type: dir
  dir: ../exchange/results
inbox: state/inbox
quarantine: state/quarantine
admin:
  socket: state/admin.sock   # 'ferryctl status' asks the agent here (mode 0660)
batch:
  max_requests: 256
  max_delay: 5ms
envelope_ttl: 24h
clients:
  - name: {{.Client}}
    token_sha256: {{.TokenSHA256}}
`

const intranetConfigTemplate = `# ferry intranet agent. Relative paths are relative to this file.
zone: {{.Intranet}}
peer: {{.DMZ}}
keys: keys
policy: policy.yaml    # in force only with policy.yaml.sig signed by
admins: keys/admins    # policy_signatures distinct admins of this directory
policy_signatures: 2
approvals: approvals   # signed decisions on held writes (ferryctl approve)
replica: replica.db
receive:               # request medium: the intranet only reads here
  type: dir
  dir: ../exchange/requests
send:                  # result medium: the intranet only writes here
  type: dir
  dir: ../exchange/results
inbox: state/inbox
quarantine: state/quarantine
admin:
  socket: state/admin.sock   # 'ferryctl status' asks the agent here (mode 0660)
batch:
  max_results: 1024
  max_delay: 5ms
envelope_ttl: 24h
`
