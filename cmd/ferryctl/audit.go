package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
)

// maxCheckpointFile bounds a --checkpoint file: a checkpoint note with a
// few cosignatures is a few hundred bytes.
const maxCheckpointFile = 64 << 10

// auditTimeFormat prints entry times as the log stores them: UTC, to the
// millisecond.
const auditTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, search, report on and reconcile the zones' tamper-evident audit logs",
		Long: `Verify, show, search, export, report on and prove entries of a zone's audit
log (audit.db in the zone's audit directory), offline, with the zone's audit
public key (audit.pub) only; reconcile the two zones' logs.

Each command only reads the log: it may run on the live log of a running
agent or on a copy. Copy audit.db with the agent stopped (or with sqlite3's
.backup), since a running agent keeps its newest entries in audit.db-wal
until SQLite checkpoints them.`,
	}
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditShowCmd(g), newAuditProveCmd(g), newAuditVerifyProofCmd(g))
	cmd.AddCommand(newAuditReconcileCmd(g))
	cmd.AddCommand(newAuditSearchCmd(g), newAuditExportCmd(g), newAuditReportCmd(g))
	return cmd
}

// auditDBFile returns the audit database that arg names: the audit.db in
// the directory arg, or arg itself if it is a file.
func auditDBFile(arg string) (string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("audit log %s: no such file or directory", arg)
		}
		return "", fmt.Errorf("audit log: %w", err)
	}
	file := arg
	if fi.IsDir() {
		file = filepath.Join(arg, audit.FileName)
		if fi, err = os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return "", withHint(fmt.Errorf("audit log %s: the directory holds no %s", arg, audit.FileName),
				"give the zone's audit directory, which holds "+audit.FileName+", or the "+audit.FileName+" file itself")
		} else if err != nil {
			return "", fmt.Errorf("audit log: %w", err)
		}
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("audit log %s: not a regular file", file)
	}
	return file, nil
}

// --- verify ---

type auditVerifyOptions struct {
	PubKey        string
	Checkpoints   []string
	Witness       string
	WitnessPubKey string
	JSON          bool
}

func (o *auditVerifyOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.PubKey, "pubkey", "", "the zone's audit public key `file` (audit.pub)")
	cmd.Flags().StringArrayVar(&o.Checkpoints, "checkpoint", nil, "a signed checkpoint `file` of this log kept elsewhere (the other zone's cosigned copy, or one noted earlier); repeatable")
	cmd.Flags().StringVar(&o.Witness, "witness", "", "the other zone's audit `DIR` (or audit.db): the checkpoints of this log it countersigned and kept must match this log")
	cmd.Flags().StringVar(&o.WitnessPubKey, "witness-pubkey", "", "the other zone's audit public key `file`: checks its countersignatures")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var opts auditVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify DIR --pubkey AUDIT.PUB [--witness OTHERDIR --witness-pubkey OTHER.PUB] [--checkpoint FILE]... [--json]",
		Short: "Verify a zone's audit log offline with its audit public key",
		Long: `Verify the audit log in DIR (a zone's audit directory holding audit.db, or the
audit.db file itself) with the zone's audit public key: every entry against
its record hash, every stored hash against the tree rebuilt from the
entries, and every stored checkpoint's signature and root. Each --checkpoint
file is a signed checkpoint of this log kept elsewhere (the copy the other
zone cosigned, or one an auditor noted earlier): it must be signed by the
same key and match the log at its size, which catches a log rebuilt from a
forged history and signed again, or truncated below it.

Each zone countersigns the other's checkpoints as they cross and keeps them
(docs/audit.md). --witness names the other zone's audit directory (or its
audit.db): every checkpoint of this log it kept must carry both zones'
signatures and match this log, so a zone that rebuilt its own history is
caught by the other's copies. --witness-pubkey, the other zone's audit.pub,
is required with --witness; it also checks the countersigned copies this log
keeps of its own checkpoints, and this log's kept copies of the other's.

It prints what it verified: the entries (and how many were pruned after the
retention period; their hashes still bind them), the checkpoints, the newest
checkpoint's size and root hash, and the entries after it that no signature
covers yet. On a failure it prints FAIL and the first entry or checkpoint
that failed.

Exit codes: 0 when the log verifies, 1 when it fails verification or a file
cannot be read, 2 on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditVerify(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// auditVerifyJSON is the output of audit verify --json.
type auditVerifyJSON struct {
	File   string `json:"file"`
	Origin string `json:"origin"`
	OK     bool   `json:"ok"`
	*auditReportJSON
	Failure *auditFailureJSON `json:"failure,omitempty"`
}

// auditReportJSON is what a successful verification found.
type auditReportJSON struct {
	Entries     int64  `json:"entries"`
	Pruned      int64  `json:"pruned"`
	Checkpoints int    `json:"checkpoints"`
	Known       int    `json:"known"`
	LatestSize  int64  `json:"latest_size"`           // 0 if no checkpoint is stored
	LatestRoot  string `json:"latest_root,omitempty"` // base64
	Uncommitted int64  `json:"uncommitted"`
	// Cosigned and Witnessed count the countersigned copies kept in the
	// log, of its own checkpoints and of the other zone's;
	// WitnessChecked says whether the other zone's signatures on them
	// were checked (--witness-pubkey).
	Cosigned       int  `json:"cosigned"`
	Witnessed      int  `json:"witnessed"`
	WitnessChecked bool `json:"witness_checked"`
}

// auditFailureJSON is a failed verification: Entry or Checkpoint (a
// size) says where, File which --checkpoint file failed.
type auditFailureJSON struct {
	Entry      *int64 `json:"entry,omitempty"`
	Checkpoint *int64 `json:"checkpoint,omitempty"`
	File       string `json:"file,omitempty"`
	Message    string `json:"message"`
}

// knownCheckpoint is a --checkpoint file.
type knownCheckpoint struct {
	file    string
	msg     []byte
	size    int64
	witness bool // a --witness copy, kept in the other zone's log file
}

func runAuditVerify(ctx context.Context, opts auditVerifyOptions, dir string, out io.Writer) error {
	if opts.PubKey == "" {
		return &usageError{errors.New("--pubkey is required: the zone's audit public key (audit.pub)")}
	}
	file, err := auditDBFile(dir)
	if err != nil {
		return err
	}
	v, err := keys.ReadAuditPub(opts.PubKey, "")
	if err != nil {
		return err
	}
	var wv note.Verifier
	switch {
	case opts.Witness != "" && opts.WitnessPubKey == "":
		return &usageError{errors.New("--witness needs --witness-pubkey: the other zone's audit public key")}
	case opts.WitnessPubKey != "":
		if wv, err = keys.ReadAuditPub(opts.WitnessPubKey, ""); err != nil {
			return err
		}
		if wv.Name() == v.Name() {
			return &usageError{fmt.Errorf("--witness-pubkey is a key of %s, the log verified: give the other zone's", v.Name())}
		}
	}
	res := auditVerifyJSON{File: file, Origin: v.Name()}
	fail := func(f *auditFailureJSON) error {
		res.Failure = f
		if opts.JSON {
			if err := writeJSON(out, res); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "FAIL: %s\n", f.Message)
		}
		return withHint(fmt.Errorf("audit verify: the log %s failed verification", file),
			"an entry or checkpoint was altered, deleted, reordered or forged after it was written, or the log or key is not this zone's",
			"keep this copy of the log as evidence")
	}

	// Each kept checkpoint must open with the log's key before it can
	// vouch for the log; one that does not is named here by its file.
	var known []knownCheckpoint
	for _, name := range opts.Checkpoints {
		msg, err := readLimited(name, maxCheckpointFile, "checkpoint file")
		if err != nil {
			return err
		}
		c, err := audit.OpenCheckpoint(msg, v, v.Name())
		if err != nil {
			return fail(&auditFailureJSON{File: name, Message: fmt.Sprintf("known checkpoint %s: %v (forged, or not of this log)", name, err)})
		}
		known = append(known, knownCheckpoint{file: name, msg: msg, size: c.Size})
	}
	if opts.Witness != "" {
		kept, f, err := witnessCopies(ctx, opts.Witness, v, wv)
		if err != nil {
			return err
		}
		if f != nil {
			return fail(f)
		}
		known = append(known, kept...)
	}
	var msgs [][]byte
	for _, k := range known {
		msgs = append(msgs, k.msg)
	}
	rep, err := audit.Verify(ctx, file, v, audit.VerifyOptions{Known: msgs, Witness: wv})
	var f *audit.Failure
	if errors.As(err, &f) {
		fj := &auditFailureJSON{Message: f.Error()}
		if f.Entry >= 0 {
			fj.Entry = &f.Entry
		}
		if f.Checkpoint >= 0 {
			fj.Checkpoint = &f.Checkpoint
		}
		// Verify says a known checkpoint failed, and at which size: name
		// the file it came from.
		if strings.HasPrefix(f.Msg, "known checkpoint") {
			for _, k := range known {
				if k.size == f.Checkpoint {
					fj.File = k.file
					if k.witness {
						fj.Message += " (the copy the other zone countersigned and kept, in " + k.file + ")"
					} else {
						fj.Message += " (" + k.file + ")"
					}
					break
				}
			}
		}
		return fail(fj)
	}
	if err != nil {
		return err
	}
	rj := &auditReportJSON{
		Entries: rep.Entries, Pruned: rep.Pruned, Checkpoints: rep.Checkpoints, Known: rep.Known,
		LatestSize: rep.Latest.Size, Uncommitted: rep.Uncommitted,
		Cosigned: rep.Cosigned, Witnessed: rep.Witnessed, WitnessChecked: wv != nil,
	}
	if rep.Checkpoints > 0 {
		rj.LatestRoot = base64.StdEncoding.EncodeToString(rep.Latest.Root[:])
	}
	res.OK, res.auditReportJSON = true, rj
	if opts.JSON {
		return writeJSON(out, res)
	}
	fmt.Fprintf(out, "audit log %s: verified (%s)\n", rep.Origin, file)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(out, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("entries", "%d, %d pruned", rep.Entries, rep.Pruned)
	line("checkpoints", "%d stored, %d known, all verified", rep.Checkpoints, rep.Known)
	if opts.Witness != "" {
		line("peer copies", "%d of its checkpoints countersigned and kept by the other zone (%s), all verified", len(known)-len(opts.Checkpoints), opts.Witness)
	}
	if wv != nil {
		line("cosigned", "%d of its checkpoints countersigned by %s and kept here, all verified", rep.Cosigned, wv.Name())
		line("witnessed", "%d checkpoints of %s countersigned here, all verified", rep.Witnessed, wv.Name())
	} else {
		line("cosigned", "%d of its checkpoints countersigned by the other zone and kept here, checked against this log only (give --witness-pubkey to check the other zone's signatures)", rep.Cosigned)
		line("witnessed", "%d checkpoints of the other zone's log countersigned here, not checked (no --witness-pubkey)", rep.Witnessed)
	}
	if rep.Checkpoints == 0 {
		line("newest", "none: no checkpoint signed yet")
	} else {
		line("newest", "size %d, root %s", rep.Latest.Size, rj.LatestRoot)
	}
	line("uncommitted", "%d (entries after the newest checkpoint: their hashes verify, no signature covers them yet)", rep.Uncommitted)
	return nil
}

// witnessCopies reads, from the other zone's audit log in dir, the
// checkpoints of the log of v that it countersigned and kept; each must
// carry both signatures (an *auditFailureJSON names the one that does
// not).
func witnessCopies(ctx context.Context, dir string, v, wv note.Verifier) ([]knownCheckpoint, *auditFailureJSON, error) {
	file, err := auditDBFile(dir)
	if err != nil {
		return nil, nil, err
	}
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	msgs, err := r.Witnessed(ctx, v.Name())
	if err != nil {
		return nil, nil, err
	}
	out := make([]knownCheckpoint, 0, len(msgs))
	for i, msg := range msgs {
		c, err := audit.OpenCosigned(msg, v, wv)
		if err != nil {
			return nil, &auditFailureJSON{File: file,
				Message: fmt.Sprintf("the copy kept by the other zone (%s), number %d: %v (forged, or signed by another key)", file, i+1, err)}, nil
		}
		out = append(out, knownCheckpoint{file: file, msg: msg, size: c.Size, witness: true})
	}
	return out, nil, nil
}

// readLimited reads file, refusing one longer than max. Errors name the
// file as what.
func readLimited(file string, max int64, what string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %s is missing", what, file)
		}
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, file, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s %s: more than %d bytes", what, file, max)
	}
	return data, nil
}

// --- show ---

type auditShowOptions struct {
	From  int64
	Limit int64
	JSON  bool
}

func (o *auditShowOptions) Add(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&o.From, "from", 0, "start at entry `N` (the first is 0)")
	cmd.Flags().Int64Var(&o.Limit, "limit", 0, "show at most `N` entries (0: all)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print one JSON object per line")
}

func newAuditShowCmd(g *globals) *cobra.Command {
	var opts auditShowOptions
	cmd := &cobra.Command{
		Use:   "show DIR [--from N] [--limit N] [--json]",
		Short: "Show the entries and checkpoints of a zone's audit log",
		Long: `Show the entries of the audit log in DIR (a zone's audit directory holding
audit.db, or the audit.db file itself), in order: index, time (UTC), event
and the fields that are set. Subjects and parameters are keyed hashes, never
ID numbers. An entry whose body was pruned after the retention period shows
only its time. Then the sizes of the stored checkpoints.

show checks nothing: it prints what the file holds. Use 'ferryctl audit
verify' to know whether that is the log the zone wrote.

With --json, each entry is one JSON object on a line, its fields and
"index" (a pruned entry: "index", "time" and "pruned": true; an entry that
is not an audit entry: "index", "error" and "body"), and a last line
{"checkpoints": [sizes]}.

Exit codes: 0 when shown, 1 when a stored entry is not an audit entry (the
file was altered; the others are still shown) or the log cannot be read, 2
on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditShow(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// auditEntryJSON is an entry line of audit show --json.
type auditEntryJSON struct {
	Index int64 `json:"index"`
	audit.Entry
}

// auditPrunedJSON is the line of an entry whose body was pruned.
type auditPrunedJSON struct {
	Index  int64     `json:"index"`
	Time   time.Time `json:"time"`
	Pruned bool      `json:"pruned"`
}

// auditBadEntryJSON is the line of a stored body that is not an entry.
type auditBadEntryJSON struct {
	Index int64  `json:"index"`
	Error string `json:"error"`
	Body  string `json:"body"`
}

// auditCheckpointsJSON is the last line of audit show --json.
type auditCheckpointsJSON struct {
	Checkpoints []int64 `json:"checkpoints"`
	// Unreadable counts stored checkpoints whose text is not a checkpoint.
	Unreadable int `json:"unreadable,omitempty"`
}

// maxShownBody bounds how much of a body that is not an entry is shown.
const maxShownBody = 256

func runAuditShow(ctx context.Context, opts auditShowOptions, dir string, out io.Writer) error {
	if opts.From < 0 {
		return &usageError{fmt.Errorf("--from %d: must not be negative", opts.From)}
	}
	if opts.Limit < 0 {
		return &usageError{fmt.Errorf("--limit %d: must not be negative (0: all)", opts.Limit)}
	}
	file, err := auditDBFile(dir)
	if err != nil {
		return err
	}
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return err
	}
	defer r.Close()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	emit := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("audit show: %w", err)
		}
		return nil
	}
	var shown, bad int64
	show := func(idx int64, e audit.Entry, pruned bool) error {
		shown++
		switch {
		case opts.JSON && pruned:
			return emit(auditPrunedJSON{Index: idx, Time: e.Time, Pruned: true})
		case opts.JSON:
			return emit(auditEntryJSON{Index: idx, Entry: e})
		case pruned:
			_, err := fmt.Fprintf(out, "%d  %s  (pruned)\n", idx, e.Time.UTC().Format(auditTimeFormat))
			return err
		}
		_, err := fmt.Fprintln(out, formatEntry(idx, e))
		return err
	}
	// Entries stops at a body that is not an entry: show it as such and
	// go on after it.
	from := opts.From
	for {
		limit := int64(0)
		if opts.Limit > 0 {
			if limit = opts.Limit - shown; limit <= 0 {
				break
			}
		}
		err := r.Entries(ctx, from, limit, show)
		var be *audit.BodyError
		if !errors.As(err, &be) {
			if err != nil {
				return err
			}
			break
		}
		shown++
		bad++
		body := be.Body
		if len(body) > maxShownBody {
			body = body[:maxShownBody]
		}
		if opts.JSON {
			err = emit(auditBadEntryJSON{Index: be.Index, Error: be.Err.Error(), Body: string(body)})
		} else {
			_, err = fmt.Fprintf(out, "%d  NOT AN AUDIT ENTRY (%s): %s\n", be.Index, be.Err, strconv.Quote(string(body)))
		}
		if err != nil {
			return err
		}
		from = be.Index + 1
	}

	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return err
	}
	res := auditCheckpointsJSON{Checkpoints: []int64{}}
	for _, msg := range cps {
		if size, ok := checkpointSize(msg); ok {
			res.Checkpoints = append(res.Checkpoints, size)
		} else {
			res.Unreadable++
		}
	}
	if opts.JSON {
		if err := emit(res); err != nil {
			return err
		}
	} else {
		sizes := make([]string, len(res.Checkpoints))
		for i, s := range res.Checkpoints {
			sizes[i] = strconv.FormatInt(s, 10)
		}
		switch {
		case len(cps) == 0:
			fmt.Fprintln(out, "checkpoints: none stored")
		default:
			fmt.Fprintf(out, "checkpoints: %d stored, at sizes %s\n", len(cps), strings.Join(sizes, ", "))
		}
		if res.Unreadable > 0 {
			fmt.Fprintf(out, "checkpoints: %d stored are not checkpoints\n", res.Unreadable)
		}
	}
	if bad > 0 {
		return withHint(fmt.Errorf("audit show: %d of the stored entries in %s are not audit entries", bad, file),
			"the file was altered: run 'ferryctl audit verify' with the zone's audit.pub")
	}
	return nil
}

// checkpointSize returns the size a stored checkpoint note claims,
// without checking its signature (show has no key).
func checkpointSize(msg []byte) (int64, bool) {
	// note.Open with no verifiers parses the note and reports its
	// signatures as unverified, with the note's text.
	_, err := note.Open(msg, note.VerifierList())
	var u *note.UnverifiedNoteError
	if !errors.As(err, &u) {
		return 0, false
	}
	c, err := audit.ParseCheckpoint(u.Note.Text)
	if err != nil {
		return 0, false
	}
	return c.Size, true
}

// formatEntry returns an entry as one line: index, time, event and the
// fields that are set, as name=value. Values are quoted unless they are
// printable without spaces, so nothing in an entry can fake a line or
// reach the terminal as a control sequence.
func formatEntry(idx int64, e audit.Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d  %s  %s", idx, e.Time.UTC().Format(auditTimeFormat), quoteField(e.Event))
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, " %s=%s", name, quoteField(value))
		}
	}
	number := func(name string, n int64) {
		if n != 0 {
			fmt.Fprintf(&b, " %s=%d", name, n)
		}
	}
	field("zone", e.Zone)
	field("actor", e.Actor)
	field("request", e.Request)
	field("envelope", e.Envelope)
	field("channel", e.Channel)
	if e.Seq != 0 {
		fmt.Fprintf(&b, " seq=%d", e.Seq)
	}
	field("operation", e.Operation)
	field("decision", e.Decision)
	field("reason", e.Reason)
	number("rows", e.Rows)
	field("subject", e.Subject)
	field("params", e.Params)
	number("count", e.Count)
	field("detail", e.Detail)
	return b.String()
}

// quoteField returns s as it is if every rune is printable and neither a
// space, '"' nor '=', and quoted otherwise.
func quoteField(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '=' {
			return strconv.Quote(s)
		}
	}
	return s
}

// --- prove ---

type auditProveOptions struct {
	Output string
}

func (o *auditProveOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "write the proof to `file` instead of standard output")
}

func newAuditProveCmd(g *globals) *cobra.Command {
	var opts auditProveOptions
	cmd := &cobra.Command{
		Use:   "prove DIR ENTRY [-o FILE]",
		Short: "Write an inclusion proof of one audit entry, for verify-proof",
		Long: `Write the inclusion proof of entry ENTRY (its index, from 0) of the audit log
in DIR (a zone's audit directory holding audit.db, or the audit.db file
itself), in the C2SP tlog-proof format: the entry itself, the hashes that
lead from it to the root, and the newest signed checkpoint. The proof is
self-contained: 'ferryctl audit verify-proof' checks it offline with the
zone's audit.pub alone, without the log.

No key is needed: the checkpoint was signed when the log wrote it. The
entry must be covered by a checkpoint (the agent signs one at a bounded
interval) and its body must not have been pruned.

Exit codes: 0 when written, 1 when the entry cannot be proved or the log
cannot be read, 2 on a usage error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditProve(cmd.Context(), opts, args[0], args[1], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runAuditProve(ctx context.Context, opts auditProveOptions, dir, entry string, out io.Writer) error {
	idx, err := strconv.ParseInt(entry, 10, 64)
	if err != nil || idx < 0 {
		return &usageError{fmt.Errorf("invalid entry %q: want its index, a number from 0", entry)}
	}
	file, err := auditDBFile(dir)
	if err != nil {
		return err
	}
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return err
	}
	defer r.Close()
	proof, err := r.Prove(ctx, idx)
	if err != nil {
		return err
	}
	if opts.Output == "" {
		_, err := out.Write(proof)
		return err
	}
	if err := admin.WriteFile(opts.Output, proof, 0o644, true); err != nil {
		return err
	}
	fmt.Fprintf(out, "inclusion proof of entry %d written to %s\n", idx, opts.Output)
	return nil
}

// --- verify-proof ---

type auditVerifyProofOptions struct {
	PubKey string
}

func (o *auditVerifyProofOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.PubKey, "pubkey", "", "the zone's audit public key `file` (audit.pub)")
}

func newAuditVerifyProofCmd(g *globals) *cobra.Command {
	var opts auditVerifyProofOptions
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --pubkey AUDIT.PUB",
		Short: "Check an inclusion proof of an audit entry offline",
		Long: `Check an inclusion proof written by 'ferryctl audit prove' with the zone's audit
public key alone: the checkpoint's signature, and that the entry in the
proof is the entry at its index in the checkpointed tree. It prints the
entry, its index and the checkpoint's size.

Exit codes: 0 when the proof holds, 1 when it fails or a file cannot be
read, 2 on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditVerifyProof(opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runAuditVerifyProof(opts auditVerifyProofOptions, file string, out io.Writer) error {
	if opts.PubKey == "" {
		return &usageError{errors.New("--pubkey is required: the zone's audit public key (audit.pub)")}
	}
	v, err := keys.ReadAuditPub(opts.PubKey, "")
	if err != nil {
		return err
	}
	proof, err := readLimited(file, audit.MaxProofSize, "proof file")
	if err != nil {
		return err
	}
	e, idx, c, err := audit.VerifyProof(proof, v)
	if err != nil {
		fmt.Fprintf(out, "FAIL: %s\n", err)
		return fmt.Errorf("audit verify-proof: the proof %s does not hold", file)
	}
	fmt.Fprintf(out, "proof verified: entry %d is in the log %s, checkpoint size %d, root %s\n",
		idx, c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	fmt.Fprintln(out, formatEntry(idx, e))
	return nil
}
