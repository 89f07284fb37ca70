package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/policy"
)

// auditEvents are the event names search accepts for --event.
var auditEvents = []string{
	audit.EventRequestAccepted, audit.EventRequestRefused, audit.EventEnvelopeSealed, audit.EventEnvelopePublished,
	audit.EventEnvelopeClaimed, audit.EventEnvelopeVerified, audit.EventEnvelopeOpened, audit.EventEnvelopeExpired,
	audit.EventQuarantined, audit.EventPolicyDecision, audit.EventResultSent, audit.EventResultReceived,
	audit.EventAck, audit.EventGap, audit.EventAdmin, audit.EventApprovalExpired,
	audit.EventWitnessed, audit.EventInconsistent, audit.EventPruned, audit.EventJournal,
}

// maxHMACKeyFile bounds what is read of an audit-hmac.key file, whose
// key line is 65 bytes.
const maxHMACKeyFile = 1 << 10

// reportTopSubjects is how many high-frequency subjects report lists.
const reportTopSubjects = 10

// unspecified names an empty operation or reason in report counts (the
// entry recording a flood of refusals as one count has neither).
const unspecified = "unspecified"

// auditWindow is a time period [since, until): a zero bound is open.
type auditWindow struct {
	since, until time.Time
}

func (w auditWindow) contains(t time.Time) bool {
	return (w.since.IsZero() || !t.Before(w.since)) && (w.until.IsZero() || t.Before(w.until))
}

// parseAuditWindow parses the bounds of a period, given to the flags
// named sinceFlag and untilFlag; "" leaves a bound open.
func parseAuditWindow(sinceFlag, since, untilFlag, until string) (auditWindow, error) {
	var w auditWindow
	var err error
	if w.since, err = parseAuditTime(sinceFlag, since); err != nil {
		return w, err
	}
	if w.until, err = parseAuditTime(untilFlag, until); err != nil {
		return w, err
	}
	if !w.since.IsZero() && !w.until.IsZero() && !w.until.After(w.since) {
		return w, &usageError{fmt.Errorf("%s %s is not after %s %s: the period is empty", untilFlag, until, sinceFlag, since)}
	}
	return w, nil
}

// parseAuditTime parses an RFC 3339 time or a date (midnight UTC); ""
// is the zero time.
func parseAuditTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, &usageError{fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-01T08:00:00Z or a date such as 2026-11-01 (UTC)", flag, s)}
}

// openAuditReader opens the audit log that dir names read-only.
func openAuditReader(ctx context.Context, dir string) (*audit.Reader, string, error) {
	file, err := auditDBFile(dir)
	if err != nil {
		return nil, "", err
	}
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return nil, "", err
	}
	return r, file, nil
}

// scanEntries calls fn for every entry of r in index order, as
// Reader.Entries does, and goes on past stored bodies that are not audit
// entries, passing each to bad.
func scanEntries(ctx context.Context, r *audit.Reader, fn func(idx int64, e audit.Entry, pruned bool) error, bad func(*audit.BodyError) error) error {
	var from int64
	for {
		err := r.Entries(ctx, from, 0, fn)
		var be *audit.BodyError
		if !errors.As(err, &be) {
			return err
		}
		if err := bad(be); err != nil {
			return err
		}
		from = be.Index + 1
	}
}

// badEntriesError is the error of a command that met stored bodies that
// are not audit entries, first being the first one's index.
func badEntriesError(cmd, file string, n, first int64) error {
	return withHint(fmt.Errorf("audit %s: %d stored bodies in %s are not audit entries (the first at index %d)", cmd, n, file, first),
		"the file was altered: run 'ferryctl audit verify' with the zone's audit.pub")
}

// --- search ---

type auditSearchOptions struct {
	Subject   string
	HMACKey   string
	Operation string
	Event     string
	Decision  string
	Reason    string
	Request   string
	Since     string
	Until     string
	JSON      bool
}

func (o *auditSearchOptions) Add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Subject, "subject", "", "entries about this subject `ID` number (needs --hmac-key)")
	f.StringVar(&o.HMACKey, "hmac-key", "", "the zone's audit HMAC key `file` (audit-hmac.key), to search by subject")
	f.StringVar(&o.Operation, "operation", "", "entries of this `operation`")
	f.StringVar(&o.Event, "event", "", "entries of this `event` (request.accepted, policy.decision, ...)")
	f.StringVar(&o.Decision, "decision", "", "entries with this `decision`")
	f.StringVar(&o.Reason, "reason", "", "entries with this `reason` code")
	f.StringVar(&o.Request, "request", "", "entries of this request `id`")
	f.StringVar(&o.Since, "since", "", "entries at or after `time` (RFC 3339, or a date: its midnight UTC)")
	f.StringVar(&o.Until, "until", "", "entries before `time` (RFC 3339, or a date: its midnight UTC)")
	f.BoolVar(&o.JSON, "json", false, "print one JSON object per line")
}

func newAuditSearchCmd(g *globals) *cobra.Command {
	var opts auditSearchOptions
	cmd := &cobra.Command{
		Use:   "search DIR [--subject ID --hmac-key FILE] [--operation OP] [--event EV] [--decision D] [--reason R] [--request ID] [--since T] [--until T] [--json]",
		Short: "Find the entries of a zone's audit log that match",
		Long: `Print the entries of the audit log in DIR (a zone's audit directory holding
audit.db, or the audit.db file itself) that match every filter given, one
line each as 'ferryctl audit show' prints them, or with --json one JSON
object per line (its fields and "index").

--subject finds the entries about one citizen: entries hold only the keyed
hash of the ID number, so it needs the zone's audit-hmac.key (--hmac-key,
a private file: mode 0600). The ID number is never printed.

--since is inclusive, --until exclusive: '--since 2026-11-01 --until
2026-12-01' is November (dates are midnight UTC). Entries whose body was
pruned after the retention period cannot be searched; the text output says
how many fell in the period.

search checks nothing: use 'ferryctl audit verify' to know whether the
file is the log the zone wrote.

Exit codes: 0 when searched, even if no entry matches, 1 when a stored
entry is not an audit entry (the file was altered) or a file cannot be
read, 2 on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("subject") && opts.Subject == "" {
				return &usageError{errors.New("--subject: empty subject")}
			}
			return runAuditSearch(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runAuditSearch(ctx context.Context, opts auditSearchOptions, dir string, out io.Writer) error {
	if opts.Subject != "" && opts.HMACKey == "" {
		return &usageError{errors.New("--subject needs --hmac-key: the zone's audit HMAC key (audit-hmac.key)")}
	}
	if opts.HMACKey != "" && opts.Subject == "" {
		return &usageError{errors.New("--hmac-key is only used with --subject")}
	}
	if opts.Event != "" && !slices.Contains(auditEvents, opts.Event) {
		return &usageError{fmt.Errorf("--event %q: not an audit event: want one of %s", opts.Event, strings.Join(auditEvents, ", "))}
	}
	w, err := parseAuditWindow("--since", opts.Since, "--until", opts.Until)
	if err != nil {
		return err
	}
	var subject string
	if opts.Subject != "" {
		key, err := keys.ReadAuditHMACKey(opts.HMACKey)
		if err != nil {
			return err
		}
		h, err := audit.NewHasher(key)
		if err != nil {
			return err
		}
		subject = h.Subject(opts.Subject)
	}
	r, file, err := openAuditReader(ctx, dir)
	if err != nil {
		return err
	}
	defer r.Close()

	match := func(e audit.Entry) bool {
		for _, f := range []struct{ want, got string }{
			{subject, e.Subject}, {opts.Operation, e.Operation}, {opts.Event, e.Event},
			{opts.Decision, e.Decision}, {opts.Reason, e.Reason}, {opts.Request, e.Request},
		} {
			if f.want != "" && f.got != f.want {
				return false
			}
		}
		return w.contains(e.Time)
	}
	bw := bufio.NewWriter(out)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var found, pruned, bad, firstBad int64
	err = scanEntries(ctx, r, func(idx int64, e audit.Entry, isPruned bool) error {
		switch {
		case isPruned:
			if w.contains(e.Time) {
				pruned++
			}
			return nil
		case !match(e):
			return nil
		}
		found++
		if opts.JSON {
			return enc.Encode(auditEntryJSON{Index: idx, Entry: e})
		}
		_, err := fmt.Fprintln(bw, formatEntry(idx, e))
		return err
	}, func(be *audit.BodyError) error {
		if bad++; bad == 1 {
			firstBad = be.Index
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !opts.JSON {
		if found == 0 {
			fmt.Fprintln(bw, "no entries match")
		}
		if pruned > 0 {
			fmt.Fprintf(bw, "(%s in the period pruned after the retention period: not searched)\n", nEntries(pruned))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit search: %w", err)
	}
	if bad > 0 {
		return badEntriesError("search", file, bad, firstBad)
	}
	return nil
}

// --- export ---

type auditExportOptions struct {
	Format string
	Since  string
	Until  string
	Output string
}

func (o *auditExportOptions) Add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Format, "format", "", "the output `format`: jsonl (required)")
	f.StringVar(&o.Since, "since", "", "entries at or after `time` (RFC 3339, or a date: its midnight UTC)")
	f.StringVar(&o.Until, "until", "", "entries before `time` (RFC 3339, or a date: its midnight UTC)")
	f.StringVarP(&o.Output, "output", "o", "", "write to `file` instead of standard output")
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var opts auditExportOptions
	cmd := &cobra.Command{
		Use:   "export DIR --format jsonl [--since T] [--until T] [-o FILE]",
		Short: "Export a zone's audit log as JSON lines, for a SIEM",
		Long: `Write every entry of the audit log in DIR (a zone's audit directory holding
audit.db, or the audit.db file itself) as one JSON object per line, in index
order: its fields and "index", as 'ferryctl audit show --json' prints them.
An entry whose body was pruned is {"index", "time", "pruned": true}; a
stored body that is not an audit entry is {"index", "error", "body"}.

--since (inclusive) and --until (exclusive) bound the entries' times: RFC
3339, or a date (its midnight UTC). With -o the file is written whole or
not at all (a temporary file renamed into place).

Exit codes: 0 when exported, 1 when a stored entry is not an audit entry
(the file was altered; the others are exported) or a file cannot be read
or written, 2 on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditExport(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runAuditExport(ctx context.Context, opts auditExportOptions, dir string, out io.Writer) error {
	switch opts.Format {
	case "jsonl":
	case "":
		return &usageError{errors.New("--format is required: jsonl")}
	default:
		return &usageError{fmt.Errorf("--format %q: only jsonl is supported", opts.Format)}
	}
	w, err := parseAuditWindow("--since", opts.Since, "--until", opts.Until)
	if err != nil {
		return err
	}
	r, file, err := openAuditReader(ctx, dir)
	if err != nil {
		return err
	}
	defer r.Close()
	var n, bad, firstBad int64
	write := func(dst io.Writer) error {
		enc := json.NewEncoder(dst)
		enc.SetEscapeHTML(false)
		return scanEntries(ctx, r, func(idx int64, e audit.Entry, pruned bool) error {
			if !w.contains(e.Time) {
				return nil
			}
			n++
			if pruned {
				return enc.Encode(auditPrunedJSON{Index: idx, Time: e.Time, Pruned: true})
			}
			return enc.Encode(auditEntryJSON{Index: idx, Entry: e})
		}, func(be *audit.BodyError) error {
			// Its time is unknown: it is exported whatever the period.
			if bad++; bad == 1 {
				firstBad = be.Index
			}
			body := be.Body
			if len(body) > maxShownBody {
				body = body[:maxShownBody]
			}
			return enc.Encode(auditBadEntryJSON{Index: be.Index, Error: be.Err.Error(), Body: string(body)})
		})
	}
	if opts.Output == "" {
		bw := bufio.NewWriter(out)
		if err := write(bw); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
	} else {
		if err := admin.WriteFileFunc(opts.Output, 0o644, true, write); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		fmt.Fprintf(out, "%s exported to %s\n", nEntries(n+bad), opts.Output)
	}
	if bad > 0 {
		return badEntriesError("export", file, bad, firstBad)
	}
	return nil
}

// --- report ---

type auditReportOptions struct {
	From   string
	To     string
	PubKey string
	JSON   bool
}

func (o *auditReportOptions) Add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "the period's start `time`, inclusive (RFC 3339, or a date: its midnight UTC)")
	f.StringVar(&o.To, "to", "", "the period's end `time`, exclusive (RFC 3339, or a date: its midnight UTC)")
	f.StringVar(&o.PubKey, "pubkey", "", "verify the log first with the zone's audit public key `file` (audit.pub)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
}

func newAuditReportCmd(g *globals) *cobra.Command {
	var opts auditReportOptions
	cmd := &cobra.Command{
		Use:   "report DIR --from T --to T [--pubkey AUDIT.PUB] [--json]",
		Short: "Print the security report of a period from a zone's audit log",
		Long: `Print the periodic security report that the operating rules ask for, from the
audit log in DIR (a zone's audit directory holding audit.db, or the audit.db
file itself), for the entries from --from (inclusive) to --to (exclusive):
'--from 2026-11-01 --to 2026-12-01' is November (dates are midnight UTC).

It counts requests accepted per operation (request.accepted, at the DMZ),
decisions per operation and decision (policy.decision, at the intranet),
refusals per reason (request.refused at the API, counting a flood recorded
as one entry by its count; policy.decision rejected), rate-limit hits (both
with reason rate_limited), quarantines per reason, envelopes sealed,
published, opened and expired, acks, gaps opened and gaps abandoned (with
the sequence numbers given up), admin actions per actor and
action, and the subjects with the most entries (top 10, as keyed hashes:
never ID numbers). Entries whose body was pruned are counted apart.

With --pubkey it verifies the whole log first, as 'ferryctl audit verify'
does, and says verified or failed; without it the report says "not
verified": the counts are then only what the file holds.

Exit codes: 0 when reported, 1 when the log fails verification or holds a
stored entry that is not an audit entry (the report is still printed) or a
file cannot be read, 2 on a usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditReport(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// auditSecurityReport is the output of audit report --json. Counts are of
// entries in the period unless said otherwise; maps are keyed by
// operation, decision or reason ("unspecified" when the entry has none).
type auditSecurityReport struct {
	File         string                      `json:"file"`
	Zone         string                      `json:"zone"` // the zone the entries name ("" if none)
	From         time.Time                   `json:"from"`
	To           time.Time                   `json:"to"`
	Verification auditReportVerification     `json:"verification"`
	Entries      int64                       `json:"entries"`    // entries in the period, pruned ones included
	Pruned       int64                       `json:"pruned"`     // of them, pruned: counted nowhere below
	Unreadable   int64                       `json:"unreadable"` // stored bodies (of any time) that are not entries
	Accepted     map[string]int64            `json:"accepted"`   // request.accepted per operation
	Decisions    map[string]map[string]int64 `json:"decisions"`  // policy.decision per operation and decision
	Refused      map[string]int64            `json:"refused"`    // request.refused per reason, by count
	Rejected     map[string]int64            `json:"rejected"`   // policy.decision rejected per reason
	RateLimited  int64                       `json:"rate_limited"`
	Quarantined  map[string]int64            `json:"quarantined"` // envelope.quarantined per reason
	Envelopes    auditReportEnvelopes        `json:"envelopes"`
	Acks         int64                       `json:"acks"`
	Gaps         int64                       `json:"gaps"`           // gap entries opened (or without a decision)
	Abandoned    int64                       `json:"gaps_abandoned"` // gap entries abandoned: gaps given up
	LostSeqs     int64                       `json:"seqs_abandoned"` // the sequence numbers those gaps held
	Admin        []auditReportAdmin          `json:"admin"`
	Subjects     []auditReportSubject        `json:"subjects"` // top 10, most entries first
}

// auditReportVerification says whether the log verified: State is
// "verified", "failed" or "not verified" (no --pubkey).
type auditReportVerification struct {
	State   string `json:"state"`
	Message string `json:"message,omitempty"` // the failure, or what was verified
}

// auditReportEnvelopes counts envelope entries per event.
type auditReportEnvelopes struct {
	Sealed    int64 `json:"sealed"`
	Published int64 `json:"published"`
	Opened    int64 `json:"opened"`
	Expired   int64 `json:"expired"`
}

// auditReportAdmin counts an operator's actions of one kind: Actions
// entries, on Requests requests in all.
type auditReportAdmin struct {
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Actions  int64  `json:"actions"`
	Requests int64  `json:"requests"`
}

// auditReportSubject is a subject's keyed hash and its entries.
type auditReportSubject struct {
	Subject string `json:"subject"`
	Entries int64  `json:"entries"`
}

func runAuditReport(ctx context.Context, opts auditReportOptions, dir string, out io.Writer) error {
	if opts.From == "" || opts.To == "" {
		return &usageError{errors.New("--from and --to are required: the period to report on")}
	}
	w, err := parseAuditWindow("--from", opts.From, "--to", opts.To)
	if err != nil {
		return err
	}
	file, err := auditDBFile(dir)
	if err != nil {
		return err
	}
	rep := &auditSecurityReport{
		File: file, From: w.since, To: w.until,
		Verification: auditReportVerification{State: "not verified", Message: "no --pubkey given: the counts are what the file holds"},
		Accepted:     map[string]int64{}, Decisions: map[string]map[string]int64{}, Refused: map[string]int64{},
		Rejected: map[string]int64{}, Quarantined: map[string]int64{}, Admin: []auditReportAdmin{}, Subjects: []auditReportSubject{},
	}
	if opts.PubKey != "" {
		v, err := keys.ReadAuditPub(opts.PubKey, "")
		if err != nil {
			return err
		}
		vr, err := audit.Verify(ctx, file, v, audit.VerifyOptions{})
		var f *audit.Failure
		switch {
		case errors.As(err, &f):
			rep.Verification = auditReportVerification{State: "failed", Message: f.Error()}
		case err != nil:
			return err
		default:
			rep.Verification = auditReportVerification{State: "verified", Message: fmt.Sprintf("%s: %d entries, newest checkpoint at size %d, %d after it",
				vr.Origin, vr.Entries, vr.Latest.Size, vr.Uncommitted)}
		}
	}
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return err
	}
	defer r.Close()

	or := func(s string) string { return cmp.Or(s, unspecified) }
	type adminKey struct{ actor, action string }
	admins := map[adminKey]*auditReportAdmin{}
	subjects := map[string]int64{}
	var firstBad int64
	err = scanEntries(ctx, r, func(_ int64, e audit.Entry, pruned bool) error {
		if !w.contains(e.Time) {
			return nil
		}
		rep.Entries++
		if pruned {
			rep.Pruned++
			return nil
		}
		if rep.Zone == "" {
			rep.Zone = e.Zone
		}
		if e.Subject != "" {
			subjects[e.Subject]++
		}
		switch e.Event {
		case audit.EventRequestAccepted:
			rep.Accepted[or(e.Operation)]++
		case audit.EventRequestRefused:
			// A flood beyond the audit queue is one entry with a count.
			n := max(e.Count, 1)
			rep.Refused[or(e.Reason)] += n
			if e.Reason == policy.ReasonRateLimited {
				rep.RateLimited += n
			}
		case audit.EventPolicyDecision:
			op := or(e.Operation)
			if rep.Decisions[op] == nil {
				rep.Decisions[op] = map[string]int64{}
			}
			rep.Decisions[op][or(e.Decision)]++
			if e.Decision == batch.StatusRejected {
				rep.Rejected[or(e.Reason)]++
			}
			if e.Reason == policy.ReasonRateLimited {
				rep.RateLimited++
			}
		case audit.EventQuarantined:
			rep.Quarantined[or(e.Reason)]++
		case audit.EventEnvelopeSealed:
			rep.Envelopes.Sealed++
		case audit.EventEnvelopePublished:
			rep.Envelopes.Published++
		case audit.EventEnvelopeOpened:
			rep.Envelopes.Opened++
		case audit.EventEnvelopeExpired:
			rep.Envelopes.Expired++
		case audit.EventAck:
			rep.Acks++
		case audit.EventGap:
			switch e.Decision {
			case audit.GapOpened, "":
				rep.Gaps++
			case audit.GapAbandoned:
				rep.Abandoned++
				rep.LostSeqs += e.Count
			}
		case audit.EventAdmin:
			k := adminKey{or(e.Actor), or(e.Decision)}
			a := admins[k]
			if a == nil {
				a = &auditReportAdmin{Actor: k.actor, Action: k.action}
				admins[k] = a
			}
			a.Actions++
			a.Requests += e.Count
		}
		return nil
	}, func(be *audit.BodyError) error {
		if rep.Unreadable++; rep.Unreadable == 1 {
			firstBad = be.Index
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, a := range admins {
		rep.Admin = append(rep.Admin, *a)
	}
	slices.SortFunc(rep.Admin, func(a, b auditReportAdmin) int {
		return cmp.Or(cmp.Compare(a.Actor, b.Actor), cmp.Compare(a.Action, b.Action))
	})
	for s, n := range subjects {
		rep.Subjects = append(rep.Subjects, auditReportSubject{Subject: s, Entries: n})
	}
	slices.SortFunc(rep.Subjects, func(a, b auditReportSubject) int {
		return cmp.Or(cmp.Compare(b.Entries, a.Entries), cmp.Compare(a.Subject, b.Subject))
	})
	rep.Subjects = rep.Subjects[:min(len(rep.Subjects), reportTopSubjects)]

	if opts.JSON {
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	} else {
		bw := bufio.NewWriter(out)
		printAuditReport(bw, rep)
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("audit report: %w", err)
		}
	}
	switch {
	case rep.Verification.State == "failed":
		return withHint(fmt.Errorf("audit report: the log %s failed verification: %s", file, rep.Verification.Message),
			"the counts above are what the file holds, not what the zone logged",
			"keep this copy of the log as evidence")
	case rep.Unreadable > 0:
		return badEntriesError("report", file, rep.Unreadable, firstBad)
	}
	return nil
}

// printAuditReport prints rep as text.
func printAuditReport(out io.Writer, rep *auditSecurityReport) {
	fmt.Fprintf(out, "security report of zone %s, %s to %s (%s)\n", cmp.Or(rep.Zone, "(no entries)"),
		rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.File)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(out, "  %-14s %s\n", label, fmt.Sprintf(format, args...))
	}
	section := func(title string) { fmt.Fprintf(out, "\n%s\n", title) }
	counts := func(m map[string]int64) string {
		if len(m) == 0 {
			return "none"
		}
		keys := slices.Sorted(maps.Keys(m))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %d", quoteField(k), m[k])
		}
		return strings.Join(parts, ", ")
	}
	// table prints name-value rows with the values aligned after the
	// longest name.
	table := func(names []string, value func(string) string) {
		if len(names) == 0 {
			fmt.Fprintln(out, "  none")
			return
		}
		width := 14
		for _, n := range names {
			width = max(width, len(quoteField(n)))
		}
		for _, n := range names {
			fmt.Fprintf(out, "  %-*s %s\n", width, quoteField(n), value(n))
		}
	}
	perKey := func(m map[string]int64) {
		table(slices.Sorted(maps.Keys(m)), func(k string) string { return fmt.Sprint(m[k]) })
	}

	line("verification", "%s (%s)", rep.Verification.State, rep.Verification.Message)
	line("entries", "%d in the period, %d pruned (not counted below), %d unreadable", rep.Entries, rep.Pruned, rep.Unreadable)

	section("requests accepted (DMZ), per operation")
	perKey(rep.Accepted)
	section("decisions (intranet), per operation")
	table(slices.Sorted(maps.Keys(rep.Decisions)), func(op string) string { return counts(rep.Decisions[op]) })
	section("refusals, per reason")
	line("api", "%s", counts(rep.Refused))
	line("policy", "%s", counts(rep.Rejected))
	line("rate-limited", "%d", rep.RateLimited)
	section("quarantines, per reason")
	perKey(rep.Quarantined)
	section("envelopes")
	line("sealed", "%d", rep.Envelopes.Sealed)
	line("published", "%d", rep.Envelopes.Published)
	line("opened", "%d", rep.Envelopes.Opened)
	line("expired", "%d", rep.Envelopes.Expired)
	line("acks", "%d", rep.Acks)
	line("gaps", "%d", rep.Gaps)
	line("abandoned", "%s, %s given up", plural(int(rep.Abandoned), "gap"), plural(int(rep.LostSeqs), "sequence number"))
	section("admin actions")
	if len(rep.Admin) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, a := range rep.Admin {
		fmt.Fprintf(out, "  %s %s: %s on %s\n", quoteField(a.Actor), quoteField(a.Action), plural(int(a.Actions), "action"), plural(int(a.Requests), "request"))
	}
	section(fmt.Sprintf("high-frequency subjects (keyed hashes), top %d", reportTopSubjects))
	if len(rep.Subjects) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, s := range rep.Subjects {
		fmt.Fprintf(out, "  %s  %s\n", quoteField(s.Subject), nEntries(s.Entries))
	}
}

// nEntries returns "1 entry" or "n entries".
func nEntries(n int64) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}
