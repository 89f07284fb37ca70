package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/queue"
)

// reconcileResendsPrefix introduces, in the Detail of the DMZ's
// envelope.sealed entry of a re-send, the envelope it replaces (see
// sealedDetail in internal/queue).
const reconcileResendsPrefix = ", re-sends "

// reconcileDrop is the Decision of the DMZ's admin entry for an envelope
// an operator dropped ('ferryctl queue drop').
const reconcileDrop = "queue." + queue.ActionDrop

type auditReconcileOptions struct {
	PubKeyDMZ      string
	PubKeyIntranet string
	JSON           bool
}

func (o *auditReconcileOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.PubKeyDMZ, "pubkey-dmz", "", "the DMZ's audit public key `file`: verify its log first")
	cmd.Flags().StringVar(&o.PubKeyIntranet, "pubkey-intranet", "", "the intranet's audit public key `file`: verify its log first")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
}

func newAuditReconcileCmd(g *globals) *cobra.Command {
	var opts auditReconcileOptions
	cmd := &cobra.Command{
		Use:   "reconcile DMZDIR INTRANETDIR [--pubkey-dmz FILE --pubkey-intranet FILE] [--json]",
		Short: "Reconcile the DMZ's and the intranet's audit logs",
		Long: `Reconcile the audit logs of the two zones (each a zone's audit directory
holding audit.db, or the audit.db file itself), offline:

  - every request envelope the DMZ published was opened (or acknowledged) by
    the intranet, or is reported missing; an envelope re-sent in a new
    envelope counts as received when any envelope of its re-send chain was.
    Envelopes that expired or that an operator dropped before the intranet
    received them are listed as "expired/dropped, not received", not as
    differences; so are heartbeat and query envelopes, which carry no
    requests;
  - every request the DMZ accepted was decided at the intranet (a request
    the intranet settled as expired, not received, is listed, not a
    difference), and every request the intranet decided was accepted at the
    DMZ and has its result back at the DMZ;
  - the intranet's decisions per operation and decision match the results
    the DMZ received (a held request's final result is the admin's approval
    or denial, or the expiry of its approval window, in the intranet's log);
  - every envelope the intranet opened was sealed by the DMZ.

With both --pubkey-dmz and --pubkey-intranet, each log is first verified as
'ferryctl audit verify' does, and reconcile stops if one fails. Without
them, the logs are read as they are.

Run it on logs of stopped agents, or copies: an envelope or a result still
in flight when the copy was taken shows as a difference.

Exit codes: 0 when the logs reconcile, 1 when they differ, a log fails
verification or cannot be read, 2 on a usage error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditReconcile(cmd.Context(), opts, args[0], args[1], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// reconcileLog is what reconcile takes from one zone's log.
type reconcileLog struct {
	file    string
	entries int64
	pruned  int64
	events  map[string]int // entries per event
	all     []audit.Entry  // the entries with a body, in log order
}

// readReconcileLog reads every entry of the log at file.
func readReconcileLog(ctx context.Context, file string) (*reconcileLog, error) {
	r, err := audit.OpenReader(ctx, file)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	l := &reconcileLog{file: file, events: make(map[string]int)}
	err = r.Entries(ctx, 0, 0, func(_ int64, e audit.Entry, pruned bool) error {
		l.entries++
		if pruned {
			l.pruned++
			return nil
		}
		l.events[e.Event]++
		l.all = append(l.all, e)
		return nil
	})
	if be := (*audit.BodyError)(nil); errors.As(err, &be) {
		return nil, withHint(fmt.Errorf("audit reconcile: %s: %w", file, err),
			"the log was altered: run 'ferryctl audit verify' on it with the zone's audit.pub")
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// auditReconcileJSON is the output of audit reconcile (--json), and what
// the text output prints.
type auditReconcileJSON struct {
	DMZ         string                   `json:"dmz"`      // the DMZ's audit.db
	Intranet    string                   `json:"intranet"` // the intranet's audit.db
	OK          bool                     `json:"ok"`       // no differences
	Counts      reconcileCountsJSON      `json:"counts"`
	Operations  []reconcileOperationJSON `json:"operations"`
	Differences reconcileDiffsJSON       `json:"differences"`
	// Listed: not differences, but what an auditor should see.
	ExpiredEnvelopes     []reconcileEnvelopeJSON `json:"expired_envelopes"`     // expired/dropped, not received
	ExpiredRequests      []string                `json:"expired_requests"`      // settled expired, not received
	DecidedAfterHold     []reconcileRequestJSON  `json:"decided_after_hold"`    // final results of held requests
	UnreceivedNoRequests []reconcileEnvelopeJSON `json:"unreceived_heartbeats"` // heartbeat and query envelopes not received
}

// reconcileCountsJSON counts what reconcile looked at.
type reconcileCountsJSON struct {
	DMZEntries      int64 `json:"dmz_entries"`
	DMZPruned       int64 `json:"dmz_pruned"`
	IntranetEntries int64 `json:"intranet_entries"`
	IntranetPruned  int64 `json:"intranet_pruned"`
	// Envelopes counts the request envelopes the DMZ published, a re-send
	// chain as one.
	Envelopes        int `json:"envelopes"`
	Received         int `json:"received"`
	ExpiredOrDropped int `json:"expired_or_dropped"`
	NotReceived      int `json:"not_received"`
	Accepted         int `json:"accepted"` // requests accepted at the DMZ
	Decided          int `json:"decided"`  // requests decided at the intranet
	Results          int `json:"results"`  // requests with a result at the DMZ
	Differences      int `json:"differences"`
}

// reconcileOperationJSON is one operation and decision: the intranet's
// policy.decision entries and the DMZ's result.received entries.
type reconcileOperationJSON struct {
	Operation string `json:"operation"`
	Decision  string `json:"decision"`
	Intranet  int    `json:"intranet"`
	DMZ       int    `json:"dmz"`
}

// reconcileEnvelopeJSON is a request envelope, or a re-send chain: ID is
// its newest envelope, Resends the older ones it replaced, oldest first.
type reconcileEnvelopeJSON struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`              // requests, heartbeat, query, or "" if no sealed entry says
	Resends []string `json:"resends,omitempty"` // the envelopes it re-sends
	Fate    string   `json:"fate,omitempty"`    // expired or dropped
}

// reconcileRequestJSON is a request and what each zone recorded of it:
// the intranet's decisions and the DMZ's results, as operation/decision.
type reconcileRequestJSON struct {
	ID       string   `json:"id"`
	Intranet []string `json:"intranet"`
	DMZ      []string `json:"dmz"`
}

// reconcileDiffsJSON are the differences; each is an exit code 1.
type reconcileDiffsJSON struct {
	MissingEnvelopes   []reconcileEnvelopeJSON  `json:"missing_envelopes"`    // published, never received
	UnknownEnvelopes   []string                 `json:"unknown_envelopes"`    // opened at the intranet, never sealed by the DMZ
	NotDecided         []string                 `json:"not_decided"`          // accepted, never decided
	NotAccepted        []string                 `json:"not_accepted"`         // decided, never accepted
	ResultsNotReceived []reconcileRequestJSON   `json:"results_not_received"` // decided, no result at the DMZ
	DecisionDiffers    []reconcileRequestJSON   `json:"decision_differs"`     // the zones disagree
	Counts             []reconcileOperationJSON `json:"counts"`               // per operation and decision
}

func (d *reconcileDiffsJSON) total() int {
	return len(d.MissingEnvelopes) + len(d.UnknownEnvelopes) + len(d.NotDecided) + len(d.NotAccepted) +
		len(d.ResultsNotReceived) + len(d.DecisionDiffers) + len(d.Counts)
}

func runAuditReconcile(ctx context.Context, opts auditReconcileOptions, dmzDir, intranetDir string, out io.Writer) error {
	if (opts.PubKeyDMZ == "") != (opts.PubKeyIntranet == "") {
		return &usageError{errors.New("give both --pubkey-dmz and --pubkey-intranet, or neither")}
	}
	dmzFile, err := auditDBFile(dmzDir)
	if err != nil {
		return err
	}
	intranetFile, err := auditDBFile(intranetDir)
	if err != nil {
		return err
	}
	if opts.PubKeyDMZ != "" {
		for _, z := range []struct{ what, file, pub string }{
			{"DMZ", dmzFile, opts.PubKeyDMZ},
			{"intranet", intranetFile, opts.PubKeyIntranet},
		} {
			if err := reconcileVerify(ctx, z.what, z.file, z.pub, out); err != nil {
				return err
			}
		}
	}
	dl, err := readReconcileLog(ctx, dmzFile)
	if err != nil {
		return err
	}
	il, err := readReconcileLog(ctx, intranetFile)
	if err != nil {
		return err
	}
	// A swap of the two arguments would report every request missing:
	// say what is wrong instead.
	if dl.events[audit.EventPolicyDecision] > 0 || il.events[audit.EventRequestAccepted] > 0 || il.events[audit.EventResultReceived] > 0 {
		return withHint(fmt.Errorf("audit reconcile: %s does not look like the DMZ's log or %s like the intranet's", dmzFile, intranetFile),
			"give the DMZ's audit directory first, then the intranet's")
	}
	res := reconcile(dl, il)
	res.DMZ, res.Intranet = dmzFile, intranetFile
	if opts.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		printReconcile(out, res)
	}
	if n := res.Counts.Differences; n > 0 {
		return withHint(fmt.Errorf("audit reconcile: %s between the logs", plural(n, "difference")),
			"an envelope or a result still in flight when the logs were copied shows as a difference: reconcile the logs of stopped agents",
			"otherwise an envelope, a request or a result was lost, or one of the logs is not complete: keep both copies as evidence")
	}
	return nil
}

// reconcileVerify verifies the log at file with the audit public key in
// pub, printing FAIL and returning an error if it fails.
func reconcileVerify(ctx context.Context, what, file, pub string, out io.Writer) error {
	v, err := keys.ReadAuditPub(pub, "")
	if err != nil {
		return err
	}
	_, err = audit.Verify(ctx, file, v, audit.VerifyOptions{})
	var f *audit.Failure
	if errors.As(err, &f) {
		fmt.Fprintf(out, "FAIL: %s log %s: %s\n", what, file, f)
		return withHint(fmt.Errorf("audit reconcile: the %s log %s failed verification", what, file),
			"reconcile only logs that verify: run 'ferryctl audit verify' on it for details")
	}
	return err
}

// reconcileChain is a request envelope and its re-sends: the envelopes
// the DMZ sealed in each other's place, oldest first.
type reconcileChain struct {
	ids       []string
	kind      string
	published bool
	received  bool
	fate      string // expired or dropped, if one of them was
}

// reconcile compares the DMZ's log d with the intranet's log i.
func reconcile(d, i *reconcileLog) *auditReconcileJSON {
	res := &auditReconcileJSON{
		Operations:           []reconcileOperationJSON{},
		ExpiredEnvelopes:     []reconcileEnvelopeJSON{},
		ExpiredRequests:      []string{},
		DecidedAfterHold:     []reconcileRequestJSON{},
		UnreceivedNoRequests: []reconcileEnvelopeJSON{},
		Differences: reconcileDiffsJSON{
			MissingEnvelopes: []reconcileEnvelopeJSON{}, UnknownEnvelopes: []string{}, NotDecided: []string{},
			NotAccepted: []string{}, ResultsNotReceived: []reconcileRequestJSON{}, DecisionDiffers: []reconcileRequestJSON{},
			Counts: []reconcileOperationJSON{},
		},
	}
	res.Counts.DMZEntries, res.Counts.DMZPruned = d.entries, d.pruned
	res.Counts.IntranetEntries, res.Counts.IntranetPruned = i.entries, i.pruned
	reconcileEnvelopes(res, d, i)
	reconcileRequests(res, d, i)
	res.Counts.Differences = res.Differences.total()
	res.OK = res.Counts.Differences == 0
	return res
}

// reconcileEnvelopes checks that every request envelope the DMZ
// published was received, and every envelope the intranet opened was
// sealed by the DMZ.
func reconcileEnvelopes(res *auditReconcileJSON, d, i *reconcileLog) {
	opened := make(map[string]bool)
	var openedOrder []string
	for _, e := range i.all {
		if e.Event == audit.EventEnvelopeOpened && !opened[e.Envelope] {
			opened[e.Envelope] = true
			openedOrder = append(openedOrder, e.Envelope)
		}
	}

	// The DMZ's request envelopes, and which one each re-send replaces.
	var (
		order    []string // envelope ids, first seen first
		kind     = make(map[string]string)
		known    = make(map[string]bool) // sealed or published by the DMZ
		other    = make(map[string]bool) // sealed on another channel
		replaces = make(map[string]string)
		pub      = make(map[string]bool)
		acked    = make(map[string]bool)
		fate     = make(map[string]string)
	)
	see := func(id string) {
		if !known[id] {
			known[id] = true
			order = append(order, id)
		}
	}
	for _, e := range d.all {
		if e.Envelope == "" {
			continue
		}
		switch e.Event {
		case audit.EventEnvelopeSealed:
			if e.Channel != dmz.RequestsChannel {
				other[e.Envelope] = true
				continue
			}
			see(e.Envelope)
			k, old, _ := strings.Cut(e.Detail, reconcileResendsPrefix)
			kind[e.Envelope] = k
			if old != "" && old != e.Envelope {
				replaces[e.Envelope] = old
			}
		case audit.EventEnvelopePublished:
			if !other[e.Envelope] {
				see(e.Envelope)
				pub[e.Envelope] = true
			}
		case audit.EventAck:
			acked[e.Envelope] = true
		case audit.EventEnvelopeExpired:
			fate[e.Envelope] = "expired"
		case audit.EventAdmin:
			if e.Decision == reconcileDrop {
				fate[e.Envelope] = "dropped"
			}
		}
	}

	// Group each envelope with those it re-sends and that re-send it: a
	// chain is received when any of its envelopes was. The links come
	// from the log, so a cycle or a fork must not loop or panic.
	root := make(map[string]string) // union-find parent
	find := func(id string) string {
		for root[id] != "" && root[id] != id {
			if g := root[root[id]]; g != "" {
				root[id] = g // path halving
			}
			id = root[id]
		}
		return id
	}
	for newer, older := range replaces {
		if a, b := find(newer), find(older); a != b {
			root[a] = b
		}
	}
	chains := make(map[string]*reconcileChain)
	var chainOrder []*reconcileChain
	for _, id := range order {
		r := find(id)
		c := chains[r]
		if c == nil {
			c = &reconcileChain{}
			chains[r] = c
			chainOrder = append(chainOrder, c)
		}
		c.ids = append(c.ids, id)
		if c.kind == "" {
			c.kind = kind[id]
		}
		c.published = c.published || pub[id]
		c.received = c.received || opened[id] || acked[id]
		if f := fate[id]; f != "" {
			c.fate = f
		}
	}
	for _, c := range chainOrder {
		if !c.published {
			continue // never on the medium
		}
		res.Counts.Envelopes++
		last := len(c.ids) - 1
		ej := reconcileEnvelopeJSON{ID: c.ids[last], Kind: c.kind, Resends: c.ids[:last], Fate: c.fate}
		switch {
		case c.received:
			res.Counts.Received++
		case c.fate != "":
			res.Counts.ExpiredOrDropped++
			res.ExpiredEnvelopes = append(res.ExpiredEnvelopes, ej)
		case c.kind == queue.KindHeartbeat || c.kind == queue.KindQuery:
			// Nothing is lost with it: a query is asked again.
			res.Counts.NotReceived++
			res.UnreceivedNoRequests = append(res.UnreceivedNoRequests, ej)
		default:
			res.Counts.NotReceived++
			res.Differences.MissingEnvelopes = append(res.Differences.MissingEnvelopes, ej)
		}
	}
	for _, id := range openedOrder {
		if !known[id] {
			res.Differences.UnknownEnvelopes = append(res.Differences.UnknownEnvelopes, id)
		}
	}
}

// reconcileRecord is one zone's record of a request: the intranet's
// decision or a result the DMZ received.
type reconcileRecord struct {
	op, decision, reason string
}

// same reports whether r and o are of the same operation and decision.
func (r reconcileRecord) same(o reconcileRecord) bool {
	return r.op == o.op && r.decision == o.decision
}

func (r reconcileRecord) String() string { return r.op + "/" + r.decision }

// reconcileRequests checks the requests: accepted and decided, decided
// and answered, and the counts per operation and decision.
func reconcileRequests(res *auditReconcileJSON, d, i *reconcileLog) {
	accepted := make(map[string]string) // request → operation
	var acceptedOrder []string
	results := make(map[string][]reconcileRecord)
	for _, e := range d.all {
		switch {
		case e.Request == "":
		case e.Event == audit.EventRequestAccepted:
			if _, ok := accepted[e.Request]; !ok {
				accepted[e.Request] = e.Operation
				acceptedOrder = append(acceptedOrder, e.Request)
			}
		case e.Event == audit.EventResultReceived:
			results[e.Request] = append(results[e.Request], reconcileRecord{decision: e.Decision, reason: e.Reason})
		}
	}
	// A result's operation is the one the DMZ accepted the request for;
	// one for a request it never accepted has none.
	for id, rs := range results {
		for k := range rs {
			rs[k].op = accepted[id]
		}
	}
	decisions := make(map[string][]reconcileRecord)
	var decidedOrder []string
	for _, e := range i.all {
		// A request's decisions: the policy's, and for a held request its
		// final one (an admin's approval or denial, or the expiry of its
		// approval window).
		decision := e.Event == audit.EventPolicyDecision || e.Event == audit.EventApprovalExpired ||
			e.Event == audit.EventAdmin && e.Request != ""
		if !decision || e.Request == "" {
			continue
		}
		if _, ok := decisions[e.Request]; !ok {
			decidedOrder = append(decidedOrder, e.Request)
		}
		decisions[e.Request] = append(decisions[e.Request], reconcileRecord{op: e.Operation, decision: e.Decision, reason: e.Reason})
	}
	res.Counts.Accepted, res.Counts.Decided, res.Counts.Results = len(accepted), len(decisions), len(results)

	type key struct{ op, decision string }
	counts := make(map[key]*reconcileOperationJSON)
	count := func(r reconcileRecord) *reconcileOperationJSON {
		k := key{r.op, r.decision}
		if counts[k] == nil {
			counts[k] = &reconcileOperationJSON{Operation: r.op, Decision: r.decision}
		}
		return counts[k]
	}
	for _, id := range decidedOrder {
		for _, r := range decisions[id] {
			count(r).Intranet++
		}
	}

	// The DMZ's results of each request, matched against the intranet's
	// decisions of it; every request that has either, in the order the
	// DMZ accepted them, then the others.
	ids := slices.Clone(acceptedOrder)
	for _, id := range decidedOrder {
		if _, ok := accepted[id]; !ok {
			ids = append(ids, id)
		}
	}
	var others []string
	for id := range results {
		if _, ok := accepted[id]; !ok && decisions[id] == nil {
			others = append(others, id)
		}
	}
	slices.Sort(others) // map order is random; the output is not
	ids = append(ids, others...)

	for _, id := range ids {
		dec, rs := decisions[id], results[id]
		_, wasAccepted := accepted[id]
		switch {
		case dec == nil && settled(rs):
			// Its envelope expired or was dropped, and the intranet,
			// asked, settled it: it was never applied.
			res.ExpiredRequests = append(res.ExpiredRequests, id)
			continue
		case dec == nil && rs == nil:
			res.Differences.NotDecided = append(res.Differences.NotDecided, id)
			continue
		}
		if dec != nil && !wasAccepted {
			res.Differences.NotAccepted = append(res.Differences.NotAccepted, id)
		}
		if rs == nil {
			res.Differences.ResultsNotReceived = append(res.Differences.ResultsNotReceived, reconcileRequestJSON{ID: id, Intranet: records(dec), DMZ: records(nil)})
			continue
		}
		// Match result to decision; what is left differs, except the
		// final result of a request both zones saw held when the
		// intranet's log lacks the approval (a log from before approvals
		// were recorded).
		left := slices.Clone(dec)
		var unmatched, afterHold int
		held := false
		for _, r := range rs {
			if k := slices.IndexFunc(left, r.same); k >= 0 {
				left = slices.Delete(left, k, k+1)
				held = held || r.decision == batch.StatusHeld
				count(r).DMZ++
				continue
			}
			if held && r.decision != batch.StatusHeld {
				afterHold++
				continue
			}
			unmatched++
			count(r).DMZ++
		}
		if afterHold > 0 {
			res.DecidedAfterHold = append(res.DecidedAfterHold, reconcileRequestJSON{ID: id, Intranet: records(dec), DMZ: records(rs)})
		}
		if unmatched > 0 || len(left) > 0 {
			res.Differences.DecisionDiffers = append(res.Differences.DecisionDiffers, reconcileRequestJSON{ID: id, Intranet: records(dec), DMZ: records(rs)})
		}
	}

	for _, c := range counts {
		res.Operations = append(res.Operations, *c)
	}
	slices.SortFunc(res.Operations, func(a, b reconcileOperationJSON) int {
		return cmp.Or(cmp.Compare(a.Operation, b.Operation), cmp.Compare(a.Decision, b.Decision))
	})
	for _, c := range res.Operations {
		if c.Intranet != c.DMZ {
			res.Differences.Counts = append(res.Differences.Counts, c)
		}
	}
}

// settled reports whether rs holds the result the intranet gives a
// request it never received when the DMZ asks about it (expired,
// not_received), and nothing else.
func settled(rs []reconcileRecord) bool {
	return len(rs) == 1 && rs[0].decision == batch.StatusExpired && rs[0].reason == batch.ReasonNotReceived
}

// records returns rs as operation/decision strings; nil as an empty list.
func records(rs []reconcileRecord) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// printReconcile prints res as text: the counts, what is listed, and the
// differences. Every id and name from a log goes through quoteField.
func printReconcile(out io.Writer, res *auditReconcileJSON) {
	c := res.Counts
	fmt.Fprintf(out, "audit reconcile: DMZ %s, intranet %s\n", res.DMZ, res.Intranet)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(out, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("logs", "DMZ %d entries (%d pruned), intranet %d entries (%d pruned)", c.DMZEntries, c.DMZPruned, c.IntranetEntries, c.IntranetPruned)
	line("envelopes", "%d published, %d received, %d expired or dropped, %d not received", c.Envelopes, c.Received, c.ExpiredOrDropped, c.NotReceived)
	line("requests", "%d accepted at the DMZ, %d decided at the intranet, %d with a result at the DMZ", c.Accepted, c.Decided, c.Results)
	if c.DMZPruned > 0 || c.IntranetPruned > 0 {
		line("note", "pruned entries are not reconciled: what they recorded may show as a difference")
	}
	if len(res.Operations) > 0 {
		fmt.Fprintf(out, "  %-24s %-10s %8s %8s\n", "operation", "decision", "intranet", "dmz")
		for _, o := range res.Operations {
			mark := ""
			if o.Intranet != o.DMZ {
				mark = "  DIFFERS"
			}
			fmt.Fprintf(out, "  %-24s %-10s %8d %8d%s\n", quoteField(o.Operation), quoteField(o.Decision), o.Intranet, o.DMZ, mark)
		}
	}
	envelope := func(e reconcileEnvelopeJSON) string {
		s := "envelope " + quoteField(e.ID)
		if e.Kind != "" {
			s += " (" + quoteField(e.Kind) + ")"
		}
		if len(e.Resends) > 0 {
			q := make([]string, len(e.Resends))
			for k, id := range e.Resends {
				q[k] = quoteField(id)
			}
			s += ", re-sending " + strings.Join(q, ", ")
		}
		return s
	}
	request := func(r reconcileRequestJSON) string {
		return fmt.Sprintf("request %s: intranet decided %s, the DMZ received %s", quoteField(r.ID), listOrNone(r.Intranet), listOrNone(r.DMZ))
	}
	if len(res.ExpiredEnvelopes)+len(res.ExpiredRequests) > 0 {
		fmt.Fprintln(out, "expired/dropped, not received (not differences):")
		for _, e := range res.ExpiredEnvelopes {
			fmt.Fprintf(out, "  %s: %s\n", envelope(e), e.Fate)
		}
		for _, id := range res.ExpiredRequests {
			fmt.Fprintf(out, "  request %s: settled expired, not received\n", quoteField(id))
		}
	}
	if len(res.UnreceivedNoRequests) > 0 {
		fmt.Fprintln(out, "heartbeat and query envelopes not received (they carry no requests; not differences):")
		for _, e := range res.UnreceivedNoRequests {
			fmt.Fprintf(out, "  %s\n", envelope(e))
		}
	}
	if len(res.DecidedAfterHold) > 0 {
		fmt.Fprintln(out, "decided after a hold, the approval not in the intranet's log (not differences):")
		for _, r := range res.DecidedAfterHold {
			fmt.Fprintf(out, "  %s\n", request(r))
		}
	}
	if res.OK {
		fmt.Fprintln(out, "reconciled: no differences")
		return
	}
	df := res.Differences
	fmt.Fprintf(out, "DIFFERENCES (%d):\n", c.Differences)
	for _, e := range df.MissingEnvelopes {
		fmt.Fprintf(out, "  missing %s: published by the DMZ, never opened or acknowledged by the intranet\n", envelope(e))
	}
	for _, id := range df.UnknownEnvelopes {
		fmt.Fprintf(out, "  envelope %s: opened by the intranet, never sealed by the DMZ\n", quoteField(id))
	}
	for _, id := range df.NotDecided {
		fmt.Fprintf(out, "  request %s: accepted at the DMZ, never decided at the intranet\n", quoteField(id))
	}
	for _, id := range df.NotAccepted {
		fmt.Fprintf(out, "  request %s: decided at the intranet, never accepted at the DMZ\n", quoteField(id))
	}
	for _, r := range df.ResultsNotReceived {
		fmt.Fprintf(out, "  request %s: result not received: decided %s at the intranet, no result at the DMZ\n",
			quoteField(r.ID), listOrNone(r.Intranet))
	}
	for _, r := range df.DecisionDiffers {
		fmt.Fprintf(out, "  %s\n", request(r))
	}
	for _, o := range df.Counts {
		fmt.Fprintf(out, "  count %s %s: intranet %d, DMZ %d\n", quoteField(o.Operation), quoteField(o.Decision), o.Intranet, o.DMZ)
	}
}

// listOrNone returns the quoted items of l joined by commas, or "nothing".
func listOrNone(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	q := make([]string, len(l))
	for k, s := range l {
		q[k] = quoteField(s)
	}
	return strings.Join(q, ", ")
}
