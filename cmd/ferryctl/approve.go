package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/intranet"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
)

type approveOptions struct {
	Config string
	Key    string
	Deny   bool
	All    bool
	JSON   bool
}

const configFlagHelp = "the intranet agent's config `file` (its replica, approvals and admins directories)"

func newApproveCmd(g *globals) *cobra.Command {
	var opts approveOptions
	cmd := &cobra.Command{
		Use:   "approve --config FILE --key NAME.key [--deny] REQUEST",
		Short: "Approve or deny a write request held for approval",
		Long: `Sign your decision on a held write request and put it in the intranet
agent's approvals directory, where the agent takes it in within approval_poll.

A write operation with 'approval:' in the policy is held on the intranet until
an admin approves or denies it, or until its approval.within passes. The agent
accepts a decision only from a known admin (a NAME.pub in its admins
directory) who did not sign the policy in force: whoever accepted the policy
never reviews its requests. On approval it checks the request again against
the policy in force and runs it; on denial it answers it rejected with reason
approval_denied. A decision the agent refuses is moved to approvals/refused/
with a .reason file.

Review the request first with 'ferryctl approve show REQUEST'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runApprove(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", configFlagHelp)
	cmd.Flags().StringVar(&opts.Key, "key", "", "your admin private key `file` (NAME.key, mode 0600)")
	cmd.Flags().BoolVar(&opts.Deny, "deny", false, "deny the request instead of approving it")
	cmd.AddCommand(newApproveListCmd(g), newApproveShowCmd(g))
	return cmd
}

func newApproveListCmd(g *globals) *cobra.Command {
	var opts approveOptions
	cmd := &cobra.Command{
		Use:   "list --config FILE [--all] [--json]",
		Short: "List the write requests waiting for approval",
		Long: `List the held write requests of the intranet's replica, oldest first: the
ones waiting for a decision, or with --all also the decided and expired ones.
It reads the replica read-only and may run while the agent runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runApproveList(cmd.Context(), opts, g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", configFlagHelp)
	cmd.Flags().BoolVar(&opts.All, "all", false, "also list decided and expired requests")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

func newApproveShowCmd(g *globals) *cobra.Command {
	var opts approveOptions
	cmd := &cobra.Command{
		Use:   "show --config FILE [--json] REQUEST",
		Short: "Show a held write request, with its parameters, for review",
		Long: `Show one held write request: its operation, client, parameters and
subject (masked), when it was held and when its approval expires, and, once
decided, who decided and whether its result has been sent. The parameters
and subject are personal data: they are shown only while the request waits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runApproveShow(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", configFlagHelp)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// heldJSON is a held request as ferryctl prints it.
type heldJSON struct {
	Request   string          `json:"request"`
	Operation string          `json:"operation"`
	Client    string          `json:"client"`
	Subject   string          `json:"subject,omitempty"` // masked
	Params    json.RawMessage `json:"params,omitempty"`
	State     string          `json:"state"`
	HeldAt    time.Time       `json:"held_at"`
	Expires   time.Time       `json:"expires"`
	DecidedBy string          `json:"decided_by,omitempty"`
	DecidedAt *time.Time      `json:"decided_at,omitempty"`
	Sent      bool            `json:"result_sent"`
}

func toHeldJSON(h *replica.Held, personal bool) heldJSON {
	j := heldJSON{Request: h.RequestID, Operation: h.Operation, Client: h.Client, State: h.State,
		HeldAt: h.HeldAt, Expires: h.Expires, DecidedBy: h.DecidedBy, Sent: h.Sent}
	if personal {
		j.Params = h.Params
		if h.Subject != "" {
			j.Subject = policy.MaskValue(policy.MaskIDNumber, h.Subject)
		}
	}
	if !h.DecidedAt.IsZero() {
		t := h.DecidedAt
		j.DecidedAt = &t
	}
	return j
}

// openApproveConfig loads the intranet config and opens its replica's
// ledger read-only.
func openApproveConfig(ctx context.Context, path string) (*intranet.Config, *replica.Ledger, error) {
	if path == "" {
		return nil, nil, &usageError{errors.New("--config is required: the intranet agent's config file")}
	}
	cfg, err := intranet.LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	l, err := replica.OpenLedger(ctx, cfg.Replica)
	if err != nil {
		return nil, nil, err
	}
	return cfg, l, nil
}

func runApproveList(ctx context.Context, opts approveOptions, out io.Writer) error {
	_, l, err := openApproveConfig(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer l.Close()
	var states []string
	if !opts.All {
		states = []string{replica.HeldWaiting}
	}
	list, err := l.HeldRequests(ctx, states...)
	if err != nil {
		return err
	}
	if opts.JSON {
		js := make([]heldJSON, len(list))
		for i, h := range list {
			js[i] = toHeldJSON(h, false)
		}
		return writeJSON(out, js)
	}
	if len(list) == 0 {
		if opts.All {
			fmt.Fprintln(out, "no write request has been held")
		} else {
			fmt.Fprintln(out, "no write request waits for approval")
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tOPERATION\tCLIENT\tHELD\tEXPIRES\tSTATE\tBY")
	for _, h := range list {
		by := h.DecidedBy
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.RequestID, h.Operation, h.Client,
			h.HeldAt.Format(time.RFC3339), h.Expires.Format(time.RFC3339), h.State, by)
	}
	return tw.Flush()
}

func runApproveShow(ctx context.Context, opts approveOptions, id string, out io.Writer) error {
	if !batch.ValidID(id) {
		return &usageError{fmt.Errorf("invalid request id %q: want 32 lowercase hex digits", id)}
	}
	_, l, err := openApproveConfig(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer l.Close()
	h, err := l.HeldRequest(ctx, id)
	if err != nil {
		return withHint(err, "'ferryctl approve list' lists the held requests")
	}
	j := toHeldJSON(h, true)
	if opts.JSON {
		return writeJSON(out, j)
	}
	fmt.Fprintf(out, "request    %s\noperation  %s\nclient     %s\n", j.Request, j.Operation, j.Client)
	if j.Subject != "" {
		fmt.Fprintf(out, "subject    %s\n", j.Subject)
	}
	if j.Params != nil {
		fmt.Fprintf(out, "params     %s\n", j.Params)
	}
	fmt.Fprintf(out, "state      %s\nheld at    %s\nexpires    %s\n", j.State, j.HeldAt.Format(time.RFC3339), j.Expires.Format(time.RFC3339))
	if j.DecidedAt != nil {
		by := j.DecidedBy
		if by == "" {
			by = "(nobody: it expired)"
		}
		fmt.Fprintf(out, "decided    %s by %s\nsent       %v\n", j.DecidedAt.Format(time.RFC3339), by, j.Sent)
	}
	return nil
}

func runApprove(ctx context.Context, opts approveOptions, id string, out io.Writer) error {
	if !batch.ValidID(id) {
		return &usageError{fmt.Errorf("invalid request id %q: want 32 lowercase hex digits", id)}
	}
	if opts.Key == "" {
		return &usageError{errors.New("--key is required: your admin key")}
	}
	cfg, l, err := openApproveConfig(ctx, opts.Config)
	if err != nil {
		return err
	}
	defer l.Close()
	s, err := admin.LoadSigner(opts.Key)
	if err != nil {
		return withHint(err, "--key is your NAME.key from 'ferryctl admin keygen', mode 0600")
	}
	who := fmt.Sprintf("%s (key %s)", s.Name(), keys.KeyID(s.KeyHash()))
	// What the agent will check, checked here first so that the admin
	// hears at once rather than from approvals/refused/.
	ring, err := admin.LoadKeyring(cfg.Admins)
	if err != nil {
		return err
	}
	if _, err := ring.Verifier(s.Name(), s.KeyHash()); err != nil {
		return withHint(fmt.Errorf("%s is not a known admin of this intranet: %w", who, err),
			"install NAME.pub in "+cfg.Admins+" first")
	}
	if data, sig, _, err := admin.ReadPolicyFile(cfg.Policy); err == nil && sig != nil {
		if signers, err := admin.VerifyPolicy(data, sig, ring, cfg.PolicySigs); err == nil && slices.Contains(signers, s.Name()) {
			return withHint(fmt.Errorf("%s signed the policy in force (%s), and may not approve its requests", who, cfg.Policy),
				"separation of duties: another admin, who did not sign the policy, decides")
		}
	}
	h, err := l.HeldRequest(ctx, id)
	if err != nil {
		return withHint(err, "'ferryctl approve list' lists the requests waiting for approval")
	}
	if h.State != replica.HeldWaiting {
		by := ""
		if h.DecidedBy != "" {
			by = " by " + h.DecidedBy
		}
		return fmt.Errorf("request %s is already %s%s", id, h.State, by)
	}
	now := time.Now()
	if !now.Before(h.Expires) {
		return fmt.Errorf("request %s: its approval expired at %s", id, h.Expires.Format(time.RFC3339))
	}
	decision := admin.DecisionApprove
	if opts.Deny {
		decision = admin.DecisionDeny
	}
	data, err := admin.SignApproval(admin.Approval{RequestID: id, Decision: decision, Time: now}, s)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.Approvals, admin.ApprovalFileName(id, s.Name()))
	if err := admin.WriteFile(path, data, 0o644, true); err != nil {
		return err
	}
	verb := "approved"
	if opts.Deny {
		verb = "denied"
	}
	fmt.Fprintf(out, "%s request %s (%s, held %s) as %s\nwrote %s; the intranet agent takes it in within %s\n",
		verb, id, h.Operation, h.HeldAt.Format(time.RFC3339), who, path, time.Duration(cfg.ApprovalPoll))
	return nil
}
