package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/status"
)

type statusOptions struct {
	Config  string
	Socket  string
	JSON    bool
	Timeout time.Duration
	Wait    time.Duration
}

func newStatusCmd(g *globals) *cobra.Command {
	var opts statusOptions
	cmd := &cobra.Command{
		Use:   "status (--config FILE | --socket PATH) [--json]",
		Short: "Show a running agent's health, keys, policy, queues and alarms",
		Long: `Ask the agent running on this host for its status, over its admin socket
(admin.socket in its config; a unix socket of mode 0660, so run as the
agent's user or a member of admin.group). Nothing is read over TCP.

It prints the agent's state and version, the keys in force with the
signing key's rotation date (alarms.key_max_age), the policy in force and
its signers, the queues (backlog and unacknowledged envelopes against
their limits, dead letters, held requests, gaps, quarantined files), the
last envelope sent and received, when the peer was last heard, the audit
log's size and witnessing, free disk, and the alarms raised. The agent
takes a fresh snapshot every 5 seconds.

The exit status is 1 when any alarm is raised, so a script or a monitoring
check can run it as it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g.stdout, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", "the agent's config `file` (its admin.socket)")
	cmd.Flags().StringVar(&opts.Socket, "socket", "", "the agent's admin socket `path`, instead of --config")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the status as JSON")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Second, "give up after this `duration`")
	cmd.Flags().DurationVar(&opts.Wait, "wait", 0, "wait up to this `duration` for the agent to answer (after a start)")
	return cmd
}

// errAlarms is returned (exit 1) when the agent reports alarms.
var errAlarms = errors.New("alarms raised")

// adminSocket returns the admin socket a --config or --socket names.
func adminSocket(configPath, socket string) (string, error) {
	switch {
	case socket != "" && configPath != "":
		return "", &usageError{errors.New("give --config or --socket, not both")}
	case socket != "":
		return socket, nil
	case configPath == "":
		return "", &usageError{errors.New("--config or --socket is required")}
	}
	ac, err := loadAgentConfig(configPath)
	if err != nil {
		return "", err
	}
	if ac.Admin.Socket == "" {
		return "", withHint(fmt.Errorf("%s has no admin.socket", configPath),
			"set admin.socket in the config (see docs/operations.md) and reload or restart the agent")
	}
	return ac.Admin.Socket, nil
}

func runStatus(ctx context.Context, out io.Writer, opts statusOptions) error {
	sock, err := adminSocket(opts.Config, opts.Socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout+opts.Wait)
	defer cancel()
	deadline := time.Now().Add(opts.Wait)
	body, err := status.Get(ctx, sock, status.PathStatus)
	for errors.Is(err, status.ErrNoAgent) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
		body, err = status.Get(ctx, sock, status.PathStatus)
	}
	if err != nil {
		return err
	}
	var s status.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("%s: status answer: %w", sock, err)
	}
	if opts.JSON {
		if _, err := out.Write(body); err != nil {
			return err
		}
	} else if err := printStatus(out, &s); err != nil {
		return err
	}
	if s.InAlarm() {
		return fmt.Errorf("%d %w", len(s.Alarms), errAlarms)
	}
	return nil
}

// printStatus prints a snapshot for a person: one line per part, times
// relative to when the agent took it.
func printStatus(out io.Writer, s *status.Snapshot) error {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never since start"
		}
		return s.Taken.Sub(t).Round(time.Second).String() + " ago"
	}
	day := func(t time.Time) string {
		if t.IsZero() {
			return "unknown"
		}
		return t.UTC().Format(time.DateOnly)
	}
	fmt.Fprintf(out, "%s (zone %s, peer %s): %s\n", s.Agent, s.Zone, s.Peer, s.State)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("version", "%s (%s), up %s", s.Version, s.GoVersion, s.Taken.Sub(s.Started).Round(time.Second))
	k := s.Keys
	row("signing key", "%s since %s, rotate by %s", k.Signing, day(k.Since), day(k.Expires))
	row("peer keys", "%s", strings.Join(k.Peer, ", "))
	row("audit keys", "%s (peer %s)", k.Audit, k.PeerAudit)
	if p := s.Policy; p != nil {
		line := fmt.Sprintf("%s, %d operations", p.Version, p.Operations)
		if len(p.Signers) > 0 {
			line += ", signed by " + strings.Join(p.Signers, ", ")
		}
		if !p.Since.IsZero() {
			line += ", since " + day(p.Since)
		}
		if !p.Expires.IsZero() {
			line += ", review by " + day(p.Expires)
		}
		row("policy", "%s", line)
	} else {
		row("policy", "none in force")
	}
	q := s.Queue
	if q.MaxBacklog > 0 {
		row("backlog", "%d of %d requests", q.Backlog, q.MaxBacklog)
		unacked := fmt.Sprintf("%d of %d envelopes", q.Unacked, q.MaxUnacked)
		if !q.OldestUnacked.IsZero() {
			unacked += ", oldest sealed " + ago(q.OldestUnacked)
		}
		row("unacknowledged", "%s", unacked)
	}
	row("envelopes", "%s", countsLine(q.Envelopes))
	row("held", "%d requests awaiting approval", q.Held)
	row("gaps", "%d missing ranges", q.Gaps)
	row("quarantine", "%d files", q.Quarantined)
	row("last sent", "%s", ago(s.LastSent))
	row("last received", "%s", ago(s.LastReceived))
	silent := ""
	if s.PeerHeard.Silent {
		silent = " (silent)"
	}
	row("peer heard", "%s%s", ago(s.PeerHeard.At), silent)
	row("audit log", "%d entries; peer's checkpoint witnessed %s; ours countersigned %s", s.Audit.Entries, ago(s.Audit.Witnessed), ago(s.Audit.Cosigned))
	if s.Disk.Total > 0 {
		row("disk", "%s: %.1f%% free", s.Disk.Path, 100*float64(s.Disk.Free)/float64(s.Disk.Total))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Alarms) == 0 {
		_, err := fmt.Fprintln(out, "alarms: none")
		return err
	}
	fmt.Fprintf(out, "alarms: %d\n", len(s.Alarms))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, a := range s.Alarms {
		fmt.Fprintf(tw, "  %s\t%s\t%s\tsince %s\n", a.Severity, a.Name, a.Message, ago(a.Since))
	}
	return tw.Flush()
}

// countsLine prints counts by name in a fixed order.
func countsLine(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
