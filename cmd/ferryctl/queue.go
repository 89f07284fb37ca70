package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/queue"
)

type queueOptions struct {
	Config  string
	State   string
	JSON    bool
	Actor   string
	AllDead bool
	Reason  string
	Limit   int
}

const queueConfigHelp = "the DMZ agent's config `file` (its spool)"

// queueStates are the envelope states --state accepts, besides "open"
// (the default: sealed, published and dead) and "all".
var queueStates = []string{queue.EnvSealed, queue.EnvPublished, queue.EnvDead, queue.EnvDropped, queue.EnvAcked, queue.EnvExpired}

func newQueueCmd(g *globals) *cobra.Command {
	var opts queueOptions
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Show and act on the DMZ spool's request envelopes and dead letters",
		Long: `Show the request envelopes in the DMZ agent's spool, and retry or drop the ones
the intranet has not acknowledged.

The agent sends the unanswered requests of an unacknowledged request
envelope again, in a new envelope that replaces it, after resend_after,
waiting twice as long after each further re-send (at most resend_max).
Once sent max_resends times and still unacknowledged when its next re-send
falls due, the envelope is a dead letter: it is not sent again, and its
requests stay "sent" until the envelope expires, unless a late result or
acknowledgement arrives. 'ferryctl queue retry' makes it due again;
'ferryctl queue drop' stops it for good. Either way, once the envelope
expires or is dropped the agent asks the intranet about its requests: the
intranet answers the result of each one it applied and settles the others
as expired (reason not_received), never to apply them. Each retry and drop
is recorded in the spool ('ferryctl queue log').

Every subcommand may run while the agent runs: ferryctl changes only the
spool, and the agent re-sends a retried envelope at its next maintenance
tick (at most 30s later). ferryctl never writes to the medium.`,
	}
	cmd.PersistentFlags().StringVar(&opts.Config, "config", "", queueConfigHelp)
	cmd.AddCommand(newQueueListCmd(g, &opts), newQueueShowCmd(g, &opts), newQueueRetryCmd(g, &opts), newQueueDropCmd(g, &opts), newQueueLogCmd(g, &opts))
	return cmd
}

func newQueueListCmd(g *globals, opts *queueOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list --config FILE [--state STATE] [--json]",
		Short: "List request envelopes and count requests by status",
		Long: `List the request envelopes in sequence order, with their state, requests,
publications (attempts), last publication, next re-send and expiry, and
count the spool's requests by status. Given the intranet agent's config,
it lists the held write requests waiting for approval instead, as
'ferryctl approve list' does.

--state is open (the default: sealed, published and dead), all, or one of
sealed, published, dead, dropped, acked, expired.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQueueList(cmd.Context(), *opts, g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.State, "state", "open", "list envelopes in this `state`")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

func newQueueShowCmd(g *globals, opts *queueOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show --config FILE [--json] ENVELOPE",
		Short: "Show one request envelope and the status of each of its requests",
		Long: `Show one request envelope of the DMZ spool: its channel, sequence number,
state, publications, next re-send and expiry, and each request it carried
with its client, operation and status (no parameters, subjects or results).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQueueShow(cmd.Context(), *opts, args[0], g.stdout)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

func newQueueRetryCmd(g *globals, opts *queueOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retry --config FILE [--actor NAME] (ENVELOPE | --all-dead)",
		Short: "Make a dead or published envelope due to be sent again now",
		Long: `Make a dead (or published) request envelope due to be sent again now, with
its attempts reset: at its next maintenance tick the running agent seals
the envelope's requests still unanswered into a new envelope that replaces
it, and the re-send backoff starts over. With --all-dead,
every dead envelope. Each envelope retried is recorded with the user
ferryctl runs as (and who ran sudo); --actor adds a name.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQueueRetry(cmd.Context(), *opts, args, g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.Actor, "actor", "", "a name to record with the user ferryctl runs as")
	cmd.Flags().BoolVar(&opts.AllDead, "all-dead", false, "retry every dead envelope")
	return cmd
}

func newQueueDropCmd(g *globals, opts *queueOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drop --config FILE --reason TEXT [--actor NAME] ENVELOPE",
		Short: "Stop re-sending an unacknowledged envelope; settle its requests with the intranet",
		Long: `Take an unacknowledged (sealed, published or dead) request envelope out of the
re-send cycle for good. Dropping cannot take back an envelope already on the
medium, and the intranet may have applied it, so its requests still queued or
sent are not failed here: the agent asks the intranet about them at once. The
intranet answers the stored result of each one it applied, and settles each
one it never received as expired (reason not_received): it will not apply it
even if the envelope arrives later. Held requests stay held. The drop is
recorded with the user ferryctl runs as (and who ran sudo; --actor adds a
name) and --reason.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQueueDrop(cmd.Context(), *opts, args[0], g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.Actor, "actor", "", "a name to record with the user ferryctl runs as")
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, for the record (required)")
	return cmd
}

func newQueueLogCmd(g *globals, opts *queueOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log --config FILE [--limit N] [--json]",
		Short: "Show the recorded retries and drops",
		Long:  `Show the last retries and drops, oldest first: when, who, what, which envelope, how many requests, and why.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQueueLog(cmd.Context(), *opts, g.stdout)
		},
	}
	cmd.Flags().IntVar(&opts.Limit, "limit", 100, "show at most `N` actions")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// openQueueSpool loads the DMZ config and opens its spool, which must
// exist. It may be open in the running agent too: both write through
// BEGIN IMMEDIATE and wait for each other (sqlitedb.DefaultBusyTimeout).
func openQueueSpool(ctx context.Context, path string) (*queue.Spool, error) {
	if path == "" {
		return nil, &usageError{errors.New("--config is required: the DMZ agent's config file")}
	}
	cfg, err := dmz.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	// queue.Open would create a missing spool; an admin command must not.
	if _, err := os.Stat(cfg.Spool); errors.Is(err, fs.ErrNotExist) {
		return nil, withHint(fmt.Errorf("spool %s does not exist", cfg.Spool), "the DMZ agent creates it when it first starts")
	} else if err != nil {
		return nil, err
	}
	return queue.Open(ctx, cfg.Spool)
}

// queueActor is who acts, for the record: the user ferryctl runs as (and
// who ran sudo, as the admin journal names them); with --actor, that name
// followed by "(by USER)", so the record names the account that acted
// whatever --actor says.
func queueActor(opts queueOptions) (string, error) {
	who := operator()
	actor := strings.TrimSpace(opts.Actor)
	if actor == "" {
		return who, nil
	}
	if len(actor) > 64 || !printable(actor) {
		return "", &usageError{errors.New("--actor must be one line of printable text, at most 64 bytes")}
	}
	return actor + " (by " + who + ")", nil
}

// queueEnvelopeJSON is a request envelope as ferryctl prints it.
type queueEnvelopeJSON struct {
	ID         string     `json:"id"`
	Channel    string     `json:"channel"`
	Seq        uint64     `json:"seq"`
	State      string     `json:"state"`
	Requests   int        `json:"requests"`
	Attempts   int        `json:"attempts"`
	Published  *time.Time `json:"published,omitempty"`
	NextResend *time.Time `json:"next_resend,omitempty"`
	Expires    time.Time  `json:"expires"`
}

// queueListJSON is the output of queue list --json.
type queueListJSON struct {
	Envelopes []queueEnvelopeJSON `json:"envelopes"`
	Requests  map[string]int      `json:"requests"` // count by status
	// Orphaned counts the queued and sent requests whose envelope expired
	// or was dropped: the agent is asking the intranet about them.
	Orphaned int `json:"orphaned"`
}

// queueActionJSON is a recorded action as ferryctl prints it.
type queueActionJSON struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Envelope string    `json:"envelope"`
	Requests int       `json:"requests"`
	Reason   string    `json:"reason,omitempty"`
}

func queueOptTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func queueTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runQueueList(ctx context.Context, opts queueOptions, out io.Writer) error {
	// The intranet's queue is its held writes, waiting for approval.
	if opts.Config != "" && looksIntranet(opts.Config) {
		return runApproveList(ctx, approveOptions{Config: opts.Config, JSON: opts.JSON}, out)
	}
	var states []string
	switch st := opts.State; {
	case st == "open" || st == "":
		states = []string{queue.EnvSealed, queue.EnvPublished, queue.EnvDead}
	case st == "all":
	case slices.Contains(queueStates, st):
		states = []string{st}
	default:
		return &usageError{fmt.Errorf("unknown --state %q: want open, all, %s", st, strings.Join(queueStates, ", "))}
	}
	s, err := openQueueSpool(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := s.ListEnvelopes(ctx, states...)
	if err != nil {
		return err
	}
	counts, err := s.CountRequests(ctx)
	if err != nil {
		return err
	}
	orphaned, err := s.CountOrphaned(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		js := queueListJSON{Envelopes: make([]queueEnvelopeJSON, len(list)), Requests: counts, Orphaned: orphaned}
		for i, e := range list {
			js.Envelopes[i] = queueEnvelopeJSON{ID: e.ID, Channel: e.Channel, Seq: e.Seq, State: e.State, Requests: e.Requests,
				Attempts: e.Attempts, Published: queueOptTime(e.Published), NextResend: queueOptTime(e.ResendAt), Expires: e.Expires}
		}
		return writeJSON(out, js)
	}
	if len(list) == 0 {
		fmt.Fprintf(out, "no %s request envelope\n", opts.State)
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENVELOPE\tSEQ\tSTATE\tREQUESTS\tATTEMPTS\tPUBLISHED\tNEXT RESEND\tEXPIRES")
		for _, e := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", e.ID, e.Seq, e.State, e.Requests, e.Attempts,
				queueTime(e.Published), queueTime(e.ResendAt), queueTime(e.Expires))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	// Every status, in the order of a request's life, so that scripts
	// and eyes find the same columns each time.
	var parts []string
	for _, st := range []string{batch.StatusQueued, batch.StatusSent, batch.StatusHeld, batch.StatusDone,
		batch.StatusRejected, batch.StatusFailed, batch.StatusExpired} {
		parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
	}
	if _, err := fmt.Fprintf(out, "requests: %s\n", strings.Join(parts, ", ")); err != nil {
		return err
	}
	if orphaned > 0 {
		_, err = fmt.Fprintf(out, "%d queued or sent requests are orphaned (their envelope expired or was dropped): the agent asks the intranet about them\n", orphaned)
	}
	return err
}

// queueActionError adds a hint to the spool's refusals.
func queueActionError(err error) error {
	switch {
	case errors.Is(err, queue.ErrEnvelopeState):
		return withHint(err, "'ferryctl queue list --state all' shows every envelope's state")
	case errors.Is(err, queue.ErrNotFound):
		return withHint(err, "'ferryctl queue list --state all' lists the envelopes")
	}
	return err
}

func validEnvelopeID(id string) error {
	if !batch.ValidID(id) {
		return &usageError{fmt.Errorf("invalid envelope id %q: want 32 lowercase hex digits", id)}
	}
	return nil
}

// queueShowJSON is the output of queue show --json.
type queueShowJSON struct {
	queueEnvelopeJSON
	Kind        string             `json:"kind"`
	Created     time.Time          `json:"created"`
	RequestList []queueRequestJSON `json:"request_list"`
}

// queueRequestJSON is one request of an envelope, without its content.
type queueRequestJSON struct {
	ID        string `json:"id"`
	Client    string `json:"client"`
	Operation string `json:"operation"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
}

func runQueueShow(ctx context.Context, opts queueOptions, id string, out io.Writer) error {
	if err := validEnvelopeID(id); err != nil {
		return err
	}
	s, err := openQueueSpool(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer s.Close()
	e, err := s.EnvelopeByID(ctx, id)
	if err != nil {
		return err
	}
	reqs, err := s.EnvelopeRequests(ctx, id)
	if err != nil {
		return err
	}
	res := queueShowJSON{
		queueEnvelopeJSON: queueEnvelopeJSON{ID: e.ID, Channel: e.Channel, Seq: e.Seq, State: e.State, Requests: e.Requests,
			Attempts: e.Attempts, Published: queueOptTime(e.Published), NextResend: queueOptTime(e.ResendAt), Expires: e.Expires},
		Kind: e.Kind, Created: e.Created, RequestList: []queueRequestJSON{},
	}
	for _, r := range reqs {
		res.RequestList = append(res.RequestList, queueRequestJSON{ID: r.ID, Client: r.Client, Operation: r.Op, Status: r.Status, Reason: r.Reason})
	}
	if opts.JSON {
		return writeJSON(out, res)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "envelope\t%s\n", e.ID)
	fmt.Fprintf(tw, "kind\t%s\n", e.Kind)
	fmt.Fprintf(tw, "channel\t%s %d\n", e.Channel, e.Seq)
	fmt.Fprintf(tw, "state\t%s\n", e.State)
	fmt.Fprintf(tw, "created\t%s\n", queueTime(e.Created))
	fmt.Fprintf(tw, "published\t%s (%d times since stored or retried)\n", queueTime(e.Published), e.Attempts)
	fmt.Fprintf(tw, "next re-send\t%s\n", queueTime(e.ResendAt))
	fmt.Fprintf(tw, "expires\t%s\n", queueTime(e.Expires))
	fmt.Fprintf(tw, "requests\t%d\n", len(reqs))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(reqs) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  REQUEST\tCLIENT\tOPERATION\tSTATUS\tREASON")
	for _, r := range reqs {
		reason := r.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.ID, r.Client, r.Op, r.Status, reason)
	}
	return tw.Flush()
}

func runQueueRetry(ctx context.Context, opts queueOptions, args []string, out io.Writer) error {
	switch {
	case opts.AllDead && len(args) > 0:
		return &usageError{errors.New("give an envelope id or --all-dead, not both")}
	case !opts.AllDead && len(args) == 0:
		return &usageError{errors.New("give an envelope id or --all-dead")}
	case len(args) > 0:
		if err := validEnvelopeID(args[0]); err != nil {
			return err
		}
	}
	actor, err := queueActor(opts)
	if err != nil {
		return err
	}
	s, err := openQueueSpool(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer s.Close()
	var done []*queue.Action
	if opts.AllDead {
		if done, err = s.RetryDead(ctx, actor, time.Now()); err != nil {
			return err
		}
		if len(done) == 0 {
			fmt.Fprintln(out, "no dead request envelope")
			return nil
		}
	} else {
		a, err := s.Retry(ctx, args[0], actor, time.Now())
		if err != nil {
			return queueActionError(err)
		}
		done = append(done, a)
	}
	for _, a := range done {
		fmt.Fprintf(out, "retry %s (%d requests): due for publication now\n", a.Envelope, a.Requests)
	}
	_, err = fmt.Fprintln(out, "the DMZ agent publishes what is due at its next maintenance tick")
	return err
}

func runQueueDrop(ctx context.Context, opts queueOptions, id string, out io.Writer) error {
	if err := validEnvelopeID(id); err != nil {
		return err
	}
	if strings.TrimSpace(opts.Reason) == "" {
		return &usageError{errors.New("--reason is required: why the envelope is dropped, for the record")}
	}
	actor, err := queueActor(opts)
	if err != nil {
		return err
	}
	s, err := openQueueSpool(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := s.Drop(ctx, id, actor, opts.Reason, time.Now())
	if err != nil {
		return queueActionError(err)
	}
	_, err = fmt.Fprintf(out, "drop %s: no longer sent; the agent asks the intranet about its %d unanswered requests\n",
		a.Envelope, a.Requests)
	return err
}

func runQueueLog(ctx context.Context, opts queueOptions, out io.Writer) error {
	if opts.Limit < 1 {
		return &usageError{fmt.Errorf("--limit %d: want at least 1", opts.Limit)}
	}
	s, err := openQueueSpool(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := s.Actions(ctx, opts.Limit)
	if err != nil {
		return err
	}
	if opts.JSON {
		js := make([]queueActionJSON, len(list))
		for i, a := range list {
			js[i] = queueActionJSON{ID: a.ID, At: a.At, Actor: a.Actor, Action: a.Action, Envelope: a.Envelope,
				Requests: a.Requests, Reason: a.Reason}
		}
		return writeJSON(out, js)
	}
	if len(list) == 0 {
		fmt.Fprintln(out, "no retry or drop recorded")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tENVELOPE\tREQUESTS\tREASON")
	for _, a := range list {
		// The reason is the admin's free text: quoted, so that no
		// control character reaches the terminal.
		reason := "-"
		if a.Reason != "" {
			reason = strconv.Quote(a.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", queueTime(a.At), a.Actor, a.Action, a.Envelope, a.Requests, reason)
	}
	return tw.Flush()
}
