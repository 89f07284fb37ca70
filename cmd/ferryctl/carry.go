package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/carry"
	"github.com/ferrybridge/ferry/internal/keys"
)

// exitCodeError carries a command's own exit code (see main.go) for a
// failure that is neither a usage error nor a plain failure.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func newCarryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "carry",
		Short: "Carry envelopes across on optical discs",
		Long: `Carry envelopes across the boundary on optical discs (see docs/carry.md).

On the sending side, 'carry export' moves the envelopes the agent published
into its send directory into a carry set: a directory to burn, with a
CARRY-MANIFEST signed by the zone. On the receiving side, 'carry import'
verifies the manifest and every file on the disc, and hands the verified
envelopes to the receiving agent's medium directory. A lost or damaged disc
costs only delay: the sender publishes unacknowledged envelopes again.`,
	}
	cmd.AddCommand(newCarryExportCmd(g), newCarryImportCmd(g))
	return cmd
}

type carryExportOptions struct {
	From     string
	Keys     string
	MaxBytes string
	JSON     bool
}

func (o *carryExportOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.From, "from", "", "the agent's send `directory` (its outgoing medium directory)")
	cmd.Flags().StringVar(&o.Keys, "keys", "", "the zone's key `directory` (sign.key signs; peer-sign.pub names the recipient)")
	cmd.Flags().StringVar(&o.MaxBytes, "max-bytes", "650M", "the set's size budget, files and manifest: 650M (CD), 700M, 4.7G (DVD), 25G (BD-R); K/M/G are powers of 1000, Ki/Mi/Gi of 1024")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newCarryExportCmd(g *globals) *cobra.Command {
	var opts carryExportOptions
	cmd := &cobra.Command{
		Use:   "export OUTDIR --from SENDDIR --keys KEYDIR [--max-bytes N] [--json]",
		Short: "Move outgoing envelopes into a carry set to burn",
		Long: `Move outgoing envelopes from SENDDIR into a new carry set OUTDIR (created;
it must be absent or empty), with a CARRY-MANIFEST signed by the zone's key
and addressed to the peer zone of KEYDIR.

Envelopes are taken in order of channel, then sequence number, both read
from the file names; names starting with '.' and names that are not
envelope file names are left alone. Export takes envelopes while the set
(files and manifest) fits into --max-bytes and stops at the first that does
not, so run it again with another OUTDIR for the rest. An envelope that does
not fit even alone is an error. With nothing to export it says so and exits
0 without writing a set.

The sources are removed only once the set and its manifest are on disk; if
export is interrupted they stay and are carried by the next set, and the
receiving side drops the duplicates.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCarryExport(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// carryFileJSON is one file of a carry set as ferryctl prints it.
type carryFileJSON struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// carrySetJSON is a carry set's manifest as ferryctl prints it.
type carrySetJSON struct {
	ID      string          `json:"id"`
	From    string          `json:"from"`
	FromKey string          `json:"from_key"`
	To      string          `json:"to"`
	Created time.Time       `json:"created"`
	Bytes   int64           `json:"bytes"`
	Files   []carryFileJSON `json:"files"`
}

func toCarrySetJSON(m *carry.Manifest) *carrySetJSON {
	j := &carrySetJSON{ID: m.ID, From: m.From, FromKey: m.FromKey, To: m.To, Created: m.Created, Bytes: m.Bytes,
		Files: make([]carryFileJSON, len(m.Files))}
	for i, f := range m.Files {
		j.Files[i] = carryFileJSON{Name: f.Name, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256[:])}
	}
	return j
}

// carryExportJSON is the --json output of 'carry export'.
type carryExportJSON struct {
	Exported  bool          `json:"exported"`
	Dir       string        `json:"dir,omitempty"`
	Set       *carrySetJSON `json:"set,omitempty"`
	Remaining int           `json:"remaining"`
	Ignored   []string      `json:"ignored"`
	Kept      []string      `json:"kept"`
}

func runCarryExport(ctx context.Context, opts carryExportOptions, outDir string, out io.Writer) error {
	if opts.From == "" {
		return &usageError{errors.New("--from is required: the agent's send directory")}
	}
	if opts.Keys == "" {
		return &usageError{errors.New("--keys is required: the zone's key directory")}
	}
	maxBytes, err := carry.ParseSize(opts.MaxBytes)
	if err != nil {
		return &usageError{fmt.Errorf("--max-bytes: %w", err)}
	}
	// The manifest is signed with the key the zone signs with now (see
	// docs/keys.md).
	own, err := keys.LoadOwnKeys(opts.Keys)
	if err != nil {
		return withHint(err, "KEYDIR is the sending zone's key directory, such as DEPLOYMENT/dmz/keys")
	}
	ring := &keys.Ring{Own: own}
	zone := ring.SignerAt(time.Now()).Zone
	peer, err := keys.LoadPeer(opts.Keys)
	if err != nil {
		return withHint(err, "KEYDIR must hold the recipient's peer-sign.pub and peer-age.pub")
	}
	set, err := carry.Export(ctx, carry.ExportOptions{
		SendDir:  opts.From,
		OutDir:   outDir,
		Zone:     zone,
		To:       peer.Name,
		MaxBytes: maxBytes,
		Logger:   slog.New(slog.DiscardHandler),
	})
	var tooLarge *carry.TooLargeError
	switch {
	case errors.Is(err, carry.ErrNothingToExport):
		if opts.JSON {
			return writeJSON(out, carryExportJSON{Ignored: []string{}, Kept: []string{}})
		}
		fmt.Fprintf(out, "nothing to export: %s holds no envelopes; no carry set written\n", opts.From)
		return nil
	case errors.Is(err, carry.ErrOutDirNotEmpty):
		return withHint(err, "give a new or empty directory for each carry set")
	case errors.As(err, &tooLarge):
		return withHint(err, "use a larger --max-bytes (a DVD: 4.7G, a BD-R: 25G), or carry it another way")
	case err != nil:
		return err
	}
	if err := journal(opts.Keys, "carry.export", fmt.Sprintf("carry set %s: %s, %d bytes, from %s to %s, into %s",
		set.Manifest.ID, envelopes(len(set.Manifest.Files)), set.Manifest.Bytes, set.Manifest.From, set.Manifest.To, set.Dir),
		int64(len(set.Manifest.Files))); err != nil {
		return err
	}
	if opts.JSON {
		j := carryExportJSON{Exported: true, Dir: set.Dir, Set: toCarrySetJSON(set.Manifest), Remaining: set.Remaining,
			Ignored: nonNil(set.Ignored), Kept: nonNil(set.Kept)}
		return writeJSON(out, j)
	}
	m := set.Manifest
	fmt.Fprintf(out, "carry set %s: %s, %d bytes, from %s to %s, in %s\n",
		m.ID, envelopes(len(m.Files)), m.Bytes, m.From, m.To, set.Dir)
	for _, f := range m.Files {
		fmt.Fprintf(out, "  %s  %d\n", f.Name, f.Size)
	}
	fmt.Fprintf(out, "manifest %s\n", filepath.Join(set.Dir, carry.ManifestName))
	if set.Remaining > 0 {
		fmt.Fprintf(out, "%s left in %s: export again into another directory\n", envelopes(set.Remaining), opts.From)
	}
	for _, n := range set.Ignored {
		fmt.Fprintf(out, "left alone (not an envelope file): %q\n", n)
	}
	for _, n := range set.Kept {
		fmt.Fprintf(out, "not removed from %s (the next set carries it again): %s\n", opts.From, n)
	}
	return nil
}

type carryImportOptions struct {
	To   string
	Keys string
	JSON bool
}

func (o *carryImportOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.To, "to", "", "the receiving agent's medium `directory` (where it claims envelopes from)")
	cmd.Flags().StringVar(&o.Keys, "keys", "", "the zone's key `directory` (sign.pub names this zone; peer-sign.pub verifies the manifest)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newCarryImportCmd(g *globals) *cobra.Command {
	var opts carryImportOptions
	cmd := &cobra.Command{
		Use:   "import DIR --to RECEIVEDIR --keys KEYDIR [--json]",
		Short: "Verify a carry set and hand its envelopes to the receiving agent",
		Long: `Verify the carry set in DIR (such as a mounted disc) and hand its envelopes
to the receiving agent's medium directory RECEIVEDIR.

The CARRY-MANIFEST must be signed by the peer zone's key (peer-sign.pub in
KEYDIR) and addressed to this zone (sign.pub in KEYDIR); otherwise nothing is
imported. Then every listed file is checked against the size and SHA-256 in
the manifest, without following symlinks and reading regular files only.
Verified files are written into RECEIVEDIR the way a medium publisher does;
a file already there is skipped and reported. Files that are missing or
corrupt are reported and not imported, nor are extra files the manifest does
not list. DIR is only read.

A missing envelope costs only delay: the sender publishes unacknowledged
envelopes again, on a later disc.

Exit code 3 (incomplete): a listed file is missing or corrupt; the verified
ones were imported.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCarryImport(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// carryImportJSON is the --json output of 'carry import'.
type carryImportJSON struct {
	Dir      string          `json:"dir"`
	Set      *carrySetJSON   `json:"set"`
	Complete bool            `json:"complete"`
	Imported []string        `json:"imported"`
	Skipped  []carry.Problem `json:"skipped"`
	Missing  []string        `json:"missing"`
	Corrupt  []carry.Problem `json:"corrupt"`
	Extra    []string        `json:"extra"`
}

func runCarryImport(ctx context.Context, opts carryImportOptions, dir string, out io.Writer) error {
	if opts.To == "" {
		return &usageError{errors.New("--to is required: the receiving agent's medium directory")}
	}
	if opts.Keys == "" {
		return &usageError{errors.New("--keys is required: the zone's key directory")}
	}
	// Only public keys: importing needs no private key.
	own, err := keys.LoadVerifier(filepath.Join(opts.Keys, keys.SignPubFile))
	if err != nil {
		return withHint(err, "KEYDIR is the receiving zone's key directory, such as DEPLOYMENT/intranet/keys")
	}
	peer, err := keys.LoadPeer(opts.Keys)
	if err != nil {
		return withHint(err, "KEYDIR must hold the sending zone's peer-sign.pub")
	}
	peerKeys, err := keys.LoadPeerKeys(opts.Keys, peer)
	if err != nil {
		return err
	}
	// Any peer key valid now may have signed the manifest (see
	// docs/keys.md): try each, newest first. A manifest that one key
	// refuses as signed by another key imports nothing, so the next key
	// may try.
	var r *carry.Report
	var ids []string
	now := time.Now()
	for i := len(peerKeys) - 1; i >= 0; i-- {
		k := peerKeys[i]
		if !k.ValidAt(now) {
			continue
		}
		ids = append(ids, peer.Name+"+"+k.ID())
		r, err = carry.Import(ctx, carry.ImportOptions{
			Dir:        dir,
			ReceiveDir: opts.To,
			Zone:       own.Name(),
			Peer:       &keys.Peer{Name: peer.Name, Verifier: k.Verifier, VerifierKey: k.VerifierKey, Recipient: k.Recipient},
			Logger:     slog.New(slog.DiscardHandler),
		})
		var pe *carry.ParseError
		if !errors.As(err, &pe) || pe.Reason != carry.ReasonUnknownSender {
			break
		}
	}
	if ids == nil {
		return withHint(fmt.Errorf("import %s: no key of %s is valid now", dir, peer.Name), "'ferryctl keys show KEYDIR' lists the peer's keys")
	}
	var pe *carry.ParseError
	switch {
	case errors.As(err, &pe):
		return withHint(err, fmt.Sprintf("nothing was imported; the manifest must be signed by %s (a valid peer key) and addressed to %s",
			strings.Join(ids, " or "), own.Name()),
			"do not import this disc; ask the sending side for a new one")
	case errors.Is(err, carry.ErrNoManifest):
		return withHint(err, "nothing was imported; 'ferryctl carry export' writes the manifest last, so a set without one is unfinished")
	case err != nil && r == nil:
		return err
	}
	if jerr := journal(opts.Keys, "carry.import", fmt.Sprintf("carry set %s from %s: %d imported, %d already there, %d missing, %d corrupt, %d not in the manifest; from %s into %s",
		r.Manifest.ID, r.Manifest.From, len(r.Imported), len(r.Skipped), len(r.Missing), len(r.Corrupt), len(r.Extra), dir, opts.To),
		int64(len(r.Imported))); jerr != nil {
		return jerr
	}
	if opts.JSON {
		j := carryImportJSON{Dir: r.Dir, Set: toCarrySetJSON(r.Manifest), Complete: r.Complete(),
			Imported: nonNil(r.Imported), Skipped: nonNil(r.Skipped), Missing: nonNil(r.Missing),
			Corrupt: nonNil(r.Corrupt), Extra: nonNil(r.Extra)}
		if jerr := writeJSON(out, j); jerr != nil {
			return jerr
		}
	} else {
		printCarryReport(out, r)
	}
	if errors.Is(err, carry.ErrIncomplete) {
		return &exitCodeError{code: exitIncomplete, err: withHint(err,
			"the verified envelopes were imported; the sender publishes the missing ones again until they are acknowledged")}
	}
	return err
}

func printCarryReport(out io.Writer, r *carry.Report) {
	m := r.Manifest
	fmt.Fprintf(out, "carry set %s: verified, signed by %s (key %s) for %s, created %s, %s, %d bytes\n",
		m.ID, m.From, m.FromKey, m.To, m.Created.Format(time.RFC3339), envelopes(len(m.Files)), m.Bytes)
	fmt.Fprintf(out, "imported %d\n", len(r.Imported))
	for _, n := range r.Imported {
		fmt.Fprintf(out, "  %s\n", n)
	}
	for _, p := range r.Skipped {
		fmt.Fprintf(out, "skipped %s (%s)\n", p.Name, p.Reason)
	}
	for _, n := range r.Missing {
		fmt.Fprintf(out, "missing %s\n", n)
	}
	for _, p := range r.Corrupt {
		fmt.Fprintf(out, "corrupt %s (%s)\n", p.Name, p.Reason)
	}
	for _, n := range r.Extra {
		fmt.Fprintf(out, "extra %q (not listed, not imported)\n", n)
	}
	if r.Complete() {
		fmt.Fprintln(out, "complete")
	} else {
		fmt.Fprintf(out, "incomplete: %d missing, %d corrupt\n", len(r.Missing), len(r.Corrupt))
	}
}

// envelopes returns "1 envelope" or "N envelopes".
func envelopes(n int) string {
	if n == 1 {
		return "1 envelope"
	}
	return fmt.Sprintf("%d envelopes", n)
}

// nonNil returns s, or an empty slice for nil, so that JSON shows [].
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
