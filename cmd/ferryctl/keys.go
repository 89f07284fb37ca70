package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/keys"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate, show, rotate and revoke zone keys",
	}
	cmd.AddCommand(newKeysShowCmd(g), newKeysGenerateCmd(g), newKeysRotateCmd(g), newKeysAcceptCmd(g), newKeysRevokeCmd(g))
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
signing keys (name, key id, verifier key) and age recipients with their
fingerprints, and the peer's, where present. After a rotation each key also
shows its window and status (in force, next, retired; valid, expired,
revoked). Then the zone's audit key: its name, key id and public file
(audit.pub), and whether the audit HMAC key (audit-hmac.key) is there.
Private key files are checked for permissions but never printed.`,
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
	Recipient   string `json:"age_recipient,omitempty"`
	Fingerprint string `json:"age_fingerprint,omitempty"`
	Private     string `json:"private,omitempty"`
	// File and HMACKey describe the audit key (role "audit"): the public
	// key file auditors are given, and whether the HMAC key file is there
	// (never its value).
	File    string `json:"file,omitempty"`
	HMACKey string `json:"hmac_key,omitempty"`
	// Windows: for an own key, when it signs (from, to) and until when its
	// age identity decrypts; for a peer key, the creation times accepted.
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Until   string `json:"until,omitempty"`
	Revoked string `json:"revoked,omitempty"`
	Status  string `json:"status"`
}

func runKeysShow(opts keysShowOptions, dir string, out io.Writer) error {
	infos, err := ownKeyInfos(dir)
	if err != nil {
		return err
	}
	var peerAudit *keyInfo
	if _, statErr := os.Stat(filepath.Join(dir, keys.PeerSignPubFile)); statErr == nil {
		base, err := keys.LoadPeer(dir)
		if err != nil {
			return err
		}
		if peerAudit, err = peerAuditKeyInfo(dir, base.Name); err != nil {
			return err
		}
		peers, err := keys.LoadPeerKeys(dir, base)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, k := range peers {
			infos = append(infos, peerKeyInfo(base.Name, k, now))
		}
	}
	auditInfo, err := auditKeyInfo(dir, infos[0].Zone)
	if err != nil {
		return err
	}
	infos = append(infos, auditInfo)
	if peerAudit != nil {
		infos = append(infos, *peerAudit)
	}
	if opts.JSON {
		return writeJSON(out, infos)
	}
	for _, k := range infos {
		switch k.Role {
		case "audit":
			writeAuditInfo(out, k)
			continue
		case "peer-audit":
			fmt.Fprintf(out, "peer audit key of zone %q\n", k.Zone)
			if k.Status == "missing" {
				fmt.Fprintf(out, "  status        missing: no %s; copy the peer zone's %s here (the agent refuses to start without it)\n",
					keys.PeerAuditPubFile, keys.AuditPubFile)
				continue
			}
			fmt.Fprintf(out, "  signing key   %s (key id %s)\n", k.VerifierKey, k.KeyID)
			fmt.Fprintf(out, "  public file   %s (checks the peer's audit checkpoints before countersigning them)\n", k.File)
			continue
		}
		fmt.Fprintf(out, "%s zone %q\n", k.Role, k.Zone)
		fmt.Fprintf(out, "  signing key   %s (key id %s)\n", k.VerifierKey, k.KeyID)
		fmt.Fprintf(out, "  age recipient %s (fingerprint %s)\n", k.Recipient, k.Fingerprint)
		if k.Private != "" {
			fmt.Fprintf(out, "  private keys  %s\n", k.Private)
		}
		if w := windowText(k); w != "" {
			fmt.Fprintf(out, "  window        %s\n", w)
			fmt.Fprintf(out, "  status        %s\n", k.Status)
		}
	}
	return nil
}

// auditKeyInfo describes the zone's audit keys: the key's id and public
// file, and whether the HMAC key is there. A directory without any audit
// key file (made before audit logs) is shown as missing; unsafe private
// files are shown as unusable, as for the zone's own keys; any other
// problem is an error.
func auditKeyInfo(dir, zone string) (keyInfo, error) {
	info := keyInfo{Role: "audit", Zone: zone}
	present := map[string]bool{}
	for _, f := range []string{keys.AuditKeyFile, keys.AuditPubFile, keys.AuditHMACKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			present[f] = true
		}
	}
	if len(present) == 0 {
		info.Status = "missing"
		return info, nil
	}
	hint := "'ferryctl keys generate' writes audit.key, audit.pub and audit-hmac.key beside the zone's keys"
	pub := filepath.Join(dir, keys.AuditPubFile)
	v, err := keys.ReadAuditPub(pub, zone)
	if err != nil {
		return keyInfo{}, withHint(err, hint)
	}
	info.KeyID = keys.KeyID(v.KeyHash())
	info.VerifierKey = publicKeyLine(pub)
	info.File = pub
	info.HMACKey = "missing"
	if present[keys.AuditHMACKeyFile] {
		info.HMACKey = "present (" + keys.AuditHMACKeyFile + ")"
	}
	_, err = keys.LoadAudit(dir, zone)
	switch {
	case err == nil:
		info.Private = "ok (0600)"
		info.Status = "valid"
	case errors.Is(err, keys.ErrPermissions):
		info.Private = err.Error()
		info.Status = "unusable"
	default:
		return keyInfo{}, withHint(err, hint)
	}
	return info, nil
}

// peerAuditKeyInfo describes dir's peer-audit.pub, the audit key of zone
// peer, or says it is missing.
func peerAuditKeyInfo(dir, peer string) (*keyInfo, error) {
	info := &keyInfo{Role: "peer-audit", Zone: peer, Status: "missing"}
	file := filepath.Join(dir, keys.PeerAuditPubFile)
	if _, err := os.Lstat(file); errors.Is(err, fs.ErrNotExist) {
		return info, nil
	}
	v, err := keys.LoadPeerAudit(dir, peer)
	if err != nil {
		return nil, withHint(err, "peer-audit.pub must be a copy of the peer zone's audit.pub")
	}
	info.KeyID, info.VerifierKey, info.File, info.Status = keys.KeyID(v.KeyHash()), publicKeyLine(file), file, "valid"
	return info, nil
}

// publicKeyLine returns the key line of a public key file that was read
// without error already: its first line that is neither blank nor a
// comment.
func publicKeyLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return ""
}

// writeAuditInfo prints an audit key's description.
func writeAuditInfo(out io.Writer, k keyInfo) {
	fmt.Fprintf(out, "audit key of zone %q\n", k.Zone)
	if k.Status == "missing" {
		fmt.Fprintf(out, "  status        missing: no %s, %s or %s\n", keys.AuditKeyFile, keys.AuditPubFile, keys.AuditHMACKeyFile)
		return
	}
	fmt.Fprintf(out, "  signing key   %s (key id %s)\n", k.VerifierKey, k.KeyID)
	fmt.Fprintf(out, "  public file   %s (for auditors)\n", k.File)
	fmt.Fprintf(out, "  private key   %s\n", k.Private)
	fmt.Fprintf(out, "  hmac key      %s\n", k.HMACKey)
	if k.Status != "valid" {
		fmt.Fprintf(out, "  status        %s\n", k.Status)
	}
}

// ownKeyInfos describes the zone's own keys. If a private key file is
// unsafe, it describes the first key alone, saying what is wrong, as an
// agent would refuse it.
func ownKeyInfos(dir string) ([]keyInfo, error) {
	own, err := keys.LoadOwnKeys(dir)
	if err == nil {
		now := time.Now()
		infos := make([]keyInfo, 0, len(own))
		for _, k := range own {
			info := describe("own", k.Public(), "ok (0600)")
			info.From, info.To, info.Until = stamp(k.From), stamp(k.To), stamp(k.Until)
			switch {
			case k.SignsAt(now):
				info.Status = "in force"
			case now.Before(k.From):
				info.Status = "next: signs from " + info.From
			case k.DecryptsAt(now):
				info.Status = "retired: decrypts until " + info.Until
			default:
				info.Status = "retired"
			}
			infos = append(infos, info)
		}
		return infos, nil
	}
	if !errors.Is(err, keys.ErrPermissions) {
		if _, statErr := os.Stat(filepath.Join(dir, keys.SignPubFile)); statErr != nil {
			return nil, withHint(err, "KEYDIR is a zone's key directory, such as DEPLOYMENT/dmz/keys")
		}
	}
	first, perr := keys.LoadPublic(filepath.Join(dir, keys.SignPubFile), filepath.Join(dir, keys.AgePubFile))
	if perr != nil {
		return nil, withHint(perr, "KEYDIR is a zone's key directory, such as DEPLOYMENT/dmz/keys")
	}
	if !errors.Is(err, keys.ErrPermissions) {
		return nil, err
	}
	info := describe("own", first, err.Error())
	info.Status = "unusable"
	return []keyInfo{info}, nil
}

// peerKeyInfo describes a peer key and its state at now.
func peerKeyInfo(zone string, k *keys.PeerKey, now time.Time) keyInfo {
	info := describe("peer", &keys.Peer{Name: zone, Verifier: k.Verifier, VerifierKey: k.VerifierKey, Recipient: k.Recipient}, "")
	info.From, info.Until, info.Revoked = stamp(k.From), stamp(k.Until), stamp(k.Revoked)
	switch {
	case k.IsRevoked():
		info.Status = "revoked"
	case k.ValidAt(now):
		info.Status = "valid"
	case now.Before(k.From):
		info.Status = "valid from " + info.From
	default:
		info.Status = "expired"
	}
	return info
}

// windowText says a key's window, or "" for a key without bounds (a zone
// that never rotated).
func windowText(k keyInfo) string {
	if k.From == "" && k.To == "" && k.Until == "" && k.Revoked == "" {
		return ""
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var w string
	if k.Role == "own" {
		w = fmt.Sprintf("signs from %s to %s, decrypts until %s", dash(k.From), dash(k.To), dash(k.Until))
	} else {
		w = fmt.Sprintf("accepted from %s until %s", dash(k.From), dash(k.Until))
	}
	if k.Revoked != "" {
		w += ", revoked " + k.Revoked
	}
	return w
}

// stamp formats a window bound; "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(keys.TimeLayout)
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
		Status:      "valid",
	}
}

func newKeysGenerateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate ZONE KEYDIR",
		Short: "Generate a zone's signing key, age identity and audit keys into KEYDIR",
		Long: `Generate a zone's Ed25519 signing key and age X25519 identity into KEYDIR
(created 0700; private files 0600), and its audit keys: audit.key, the
Ed25519 key that signs the zone's audit checkpoints (named
ferry.audit/ZONE), its public key audit.pub, and audit-hmac.key, the key of
the keyed hashes of ID numbers in the audit log. Existing key files are
never overwritten.

Copy sign.pub, age.pub and audit.pub to the peer zone as peer-sign.pub,
peer-age.pub and peer-audit.pub (the peer's agent countersigns this zone's
audit checkpoints with it). Give auditors audit.pub; give audit-hmac.key
only to auditors who may search the audit log by ID number.`,
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
	const hint = "keys are never overwritten; remove old keys deliberately or choose another directory"
	// The audit keys go first: GenerateAudit writes all three or none, so
	// if the zone's keys then cannot be written, removing the three leaves
	// KEYDIR as it was.
	if err := keys.GenerateAudit(dir, zone); err != nil {
		return withHint(fmt.Errorf("audit keys: %w", err), hint)
	}
	if err := z.WriteDir(dir); err != nil {
		for _, f := range []string{keys.AuditKeyFile, keys.AuditPubFile, keys.AuditHMACKeyFile} {
			os.Remove(filepath.Join(dir, f))
		}
		return withHint(err, hint)
	}
	ak, err := keys.LoadAudit(dir, zone)
	if err != nil {
		return err
	}
	if err := journal(dir, "keys.generate", fmt.Sprintf("zone %s: signing key %s, age key %s, audit key %s",
		zone, keys.KeyID(z.Verifier.KeyHash()), keys.Fingerprint(z.Recipient), keys.KeyID(ak.Verifier.KeyHash())), 0); err != nil {
		return err
	}
	return runKeysShow(keysShowOptions{}, dir, out)
}

type keysRotateOptions struct {
	From    string
	In      time.Duration
	Overlap time.Duration
	JSON    bool
}

func (o *keysRotateOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.From, "from", "", "switch to the new key at this `time` (RFC 3339)")
	cmd.Flags().DurationVar(&o.In, "in", 0, "switch to the new key after this `duration` (default: at once)")
	cmd.Flags().DurationVar(&o.Overlap, "overlap", keys.DefaultOverlap, "how long the old key stays valid after the switch")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newKeysRotateCmd(g *globals) *cobra.Command {
	var opts keysRotateOptions
	cmd := &cobra.Command{
		Use:   "rotate KEYDIR [--from TIME | --in DURATION] [--overlap DURATION]",
		Short: "Make a new signing key and age identity for a zone",
		Long: `Make a new Ed25519 signing key and age X25519 identity for the zone whose
key directory is KEYDIR, in KEYDIR/rotated/<key id>/, with a rotation
statement signed by the zone's newest key and by the new one.

The zone's agent signs with its newest key until --from (or now plus --in;
at once by default) and with the new key from then on, once it reloaded its
keys (SIGHUP). The old key's age identity keeps decrypting, and the peer
keeps accepting envelopes it signed, until the switch plus --overlap.

Carry the statement file to the peer zone out of band (the disc, for
instance) and run 'ferryctl keys accept STATEMENT --keys KEYDIR' there, then
reload the peer's agent. See docs/keys.md for the whole procedure.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysRotate(opts, args[0], time.Now(), g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// keysRotateJSON is the --json output of 'keys rotate' and 'keys accept'.
type keysRotateJSON struct {
	Zone      string `json:"zone"`
	KeyID     string `json:"key_id"`
	Key       string `json:"verifier_key"`
	Recipient string `json:"age_recipient"`
	From      string `json:"from"`
	Old       string `json:"old_key_id"`
	Until     string `json:"until"`
	Statement string `json:"statement,omitempty"`
	Already   bool   `json:"already_accepted,omitempty"`
}

func statementJSON(s *keys.Statement, path string) keysRotateJSON {
	return keysRotateJSON{Zone: s.Zone, KeyID: s.KeyID(), Key: s.Key, Recipient: s.Recipient,
		From: stamp(s.From), Old: s.Old, Until: stamp(s.Until), Statement: path}
}

func runKeysRotate(opts keysRotateOptions, dir string, now time.Time, out io.Writer) error {
	from := now
	switch {
	case opts.From != "" && opts.In != 0:
		return &usageError{errors.New("give --from or --in, not both")}
	case opts.From != "":
		t, err := time.Parse(time.RFC3339, opts.From)
		if err != nil {
			return &usageError{fmt.Errorf("--from: want an RFC 3339 time such as 2026-03-01T12:00:00Z: %w", err)}
		}
		from = t
	case opts.In < 0:
		return &usageError{errors.New("--in must not be negative")}
	default:
		from = now.Add(opts.In)
	}
	if opts.Overlap < 0 {
		return &usageError{errors.New("--overlap must not be negative")}
	}
	s, path, err := keys.Rotate(dir, from, opts.Overlap)
	if err != nil {
		return withHint(err, "KEYDIR is the zone's key directory, such as DEPLOYMENT/dmz/keys")
	}
	if err := journal(dir, "keys.rotate", fmt.Sprintf("zone %s: new key %s signs from %s; old key %s valid until %s; statement %s",
		s.Zone, s.KeyID(), stamp(s.From), s.Old, stamp(s.Until), path), 0); err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(out, statementJSON(s, path))
	}
	fmt.Fprintf(out, "new key of zone %q: signing key %s (key id %s), age recipient %s\n", s.Zone, s.Key, s.KeyID(), s.Recipient)
	fmt.Fprintf(out, "signs from %s; old key %s valid until %s\n", stamp(s.From), s.Old, stamp(s.Until))
	fmt.Fprintf(out, "statement %s\n", path)
	fmt.Fprintf(out, "next: carry the statement to the peer zone, run 'ferryctl keys accept STATEMENT --keys KEYDIR' there and reload both agents (SIGHUP)\n")
	return nil
}

type keysAcceptOptions struct {
	Keys string
	JSON bool
}

func (o *keysAcceptOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Keys, "keys", "", "this zone's key `directory`, which holds the peer's keys")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newKeysAcceptCmd(g *globals) *cobra.Command {
	var opts keysAcceptOptions
	cmd := &cobra.Command{
		Use:   "accept STATEMENT --keys KEYDIR",
		Short: "Accept the peer zone's new key from its rotation statement",
		Long: `Verify the peer zone's rotation statement STATEMENT (written by 'ferryctl
keys rotate' in the peer zone) and record its new key in KEYDIR/peer-keys.

The statement must be for the peer of KEYDIR, signed by the peer's newest
key that KEYDIR trusts and by the new key it introduces. The new key is
accepted for envelopes created from the statement's from time on; the old
one for those created before its until time. Accepting a statement again
changes nothing. Reload the agent (SIGHUP) to put the key in force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysAccept(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runKeysAccept(opts keysAcceptOptions, path string, out io.Writer) error {
	if opts.Keys == "" {
		return &usageError{errors.New("--keys is required: this zone's key directory")}
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read statement: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, keys.MaxStatementSize+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("read statement %s: %w", path, err)
	}
	s, already, err := keys.Accept(opts.Keys, data)
	var se *keys.StatementError
	switch {
	case errors.As(err, &se):
		return withHint(fmt.Errorf("statement %s: %w", path, err),
			"nothing was accepted; the statement must come from the peer's 'ferryctl keys rotate', unchanged")
	case errors.Is(err, keys.ErrWrongZone):
		return withHint(fmt.Errorf("statement %s: %w", path, err), "accept a statement in the peer zone of the zone that rotated")
	case errors.Is(err, keys.ErrNotNewest):
		return withHint(fmt.Errorf("statement %s: %w", path, err), "accept the peer's statements in the order they were made")
	case err != nil:
		return err
	}
	if !already {
		if err := journal(opts.Keys, "keys.accept", fmt.Sprintf("peer zone %s: key %s accepted for envelopes created from %s; old key %s until %s",
			s.Zone, s.KeyID(), stamp(s.From), s.Old, stamp(s.Until)), 0); err != nil {
			return err
		}
	}
	if opts.JSON {
		j := statementJSON(s, "")
		j.Already = already
		return writeJSON(out, j)
	}
	if already {
		fmt.Fprintf(out, "key %s of zone %q is already accepted; nothing changed\n", s.KeyID(), s.Zone)
		return nil
	}
	fmt.Fprintf(out, "accepted key %s of zone %q for envelopes created from %s; old key %s until %s\n",
		s.KeyID(), s.Zone, stamp(s.From), s.Old, stamp(s.Until))
	fmt.Fprintf(out, "next: reload the agent (SIGHUP) to put the key in force\n")
	return nil
}

type keysRevokeOptions struct {
	Keys  string
	Force bool
}

func (o *keysRevokeOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Keys, "keys", "", "this zone's key `directory`, which holds the peer's keys")
	cmd.Flags().BoolVar(&o.Force, "force", false, "revoke even the only peer key that is still valid")
}

func newKeysRevokeCmd(g *globals) *cobra.Command {
	var opts keysRevokeOptions
	cmd := &cobra.Command{
		Use:   "revoke KEYID --keys KEYDIR [--force]",
		Short: "Refuse everything signed by a peer key from now on",
		Long: `Mark the peer key KEYID (8 hex digits, as 'ferryctl keys show' prints it)
revoked in KEYDIR/peer-keys. Once the agent reloaded its keys (SIGHUP), it
quarantines every envelope signed by that key with reason revoked_key, and
no longer encrypts to it.

Revoking the only peer key that is still valid stops the exchange with the
peer: it is refused without --force. With every peer key revoked the agent
refuses to start or reload its keys until a new key is accepted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysRevoke(opts, args[0], time.Now(), g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runKeysRevoke(opts keysRevokeOptions, id string, now time.Time, out io.Writer) error {
	if opts.Keys == "" {
		return &usageError{errors.New("--keys is required: this zone's key directory")}
	}
	k, already, err := keys.Revoke(opts.Keys, id, now, opts.Force)
	switch {
	case errors.Is(err, keys.ErrLastKey):
		return withHint(err, "accept the peer's new key first ('ferryctl keys accept'), or use --force to stop the exchange")
	case errors.Is(err, keys.ErrNoSuchKey):
		return withHint(err, "'ferryctl keys show KEYDIR' lists the peer's keys")
	case err != nil:
		return err
	}
	if already {
		fmt.Fprintf(out, "key %s was already revoked at %s; nothing changed\n", k.ID(), stamp(k.Revoked))
		return nil
	}
	detail := fmt.Sprintf("peer zone %s: key %s revoked at %s", k.Verifier.Name(), k.ID(), stamp(k.Revoked))
	if opts.Force {
		detail += " (--force)"
	}
	if err := journal(opts.Keys, "keys.revoke", detail, 0); err != nil {
		return err
	}
	fmt.Fprintf(out, "revoked key %s of zone %q at %s\n", k.ID(), k.Verifier.Name(), stamp(k.Revoked))
	fmt.Fprintf(out, "next: reload the agent (SIGHUP) to refuse it\n")
	return nil
}
