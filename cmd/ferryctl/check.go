package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/media"
	"github.com/ferrybridge/ferry/internal/status"
)

type checkDailyOptions struct {
	Config string
	Since  time.Duration
	MaxAge time.Duration
	JSON   bool
}

func newCheckCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Run the operating rules' checks of a zone",
	}
	cmd.AddCommand(newCheckDailyCmd(g))
	return cmd
}

func newCheckDailyCmd(g *globals) *cobra.Command {
	var opts checkDailyOptions
	cmd := &cobra.Command{
		Use:   "daily --config AGENT.yaml [--since 24h] [--json]",
		Short: "The daily exchange check: agent, media, queues, quarantine, audit log, keys, policy, disk",
		Long: `Run the daily check of the exchange that the operating rules ask for, on the
zone whose agent config is given, and print one line per item:

  agent       the agent answers on its admin socket, and the alarms it raises
  send        the medium the zone sends on is reachable and drained
  receive     the medium it receives from is reachable and drained
  queue       no dead letters, no envelope unacknowledged too long, no gaps
  quarantine  the files quarantined within --since (each listed with its reason)
  audit       the zone's audit log verifies against its key (audit.pub)
  keys        the signing key is not within alarms.expiry_warning of key_max_age
  policy      the policy in force is not near policy_max_age (intranet)
  disk        the state's file system has more than alarms.disk_free free

Each problem is a finding. The exit status is 1 when there is any, so a
timer (deploy/systemd/ferry-check-daily@.timer) or cron can run it and
mail or alert on failure. It changes nothing and may run while the agent
runs; run it as the zone's user (it reads the audit log) with access to the
admin socket.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return runCheckDaily(cmd.Context(), opts, g.stdout, log)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", "the agent's config `file`")
	cmd.Flags().DurationVar(&opts.Since, "since", 24*time.Hour, "list quarantines within this `duration`")
	cmd.Flags().DurationVar(&opts.MaxAge, "max-age", defaultMaxAge, "a file waiting on a medium longer than this `duration` is a finding")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// alarmItem is the item of the daily check each alarm concerns; the
// others are the agent's.
var alarmItem = map[string]string{
	alarm.MediumStalled: directionSend, alarm.Unacknowledged: "queue", alarm.SequenceGap: "queue",
	alarm.SpoolFull: "queue", alarm.QuarantineBurst: "quarantine", alarm.KeyExpiry: "keys",
	alarm.PolicyExpiry: "policy", alarm.DiskFull: "disk",
}

// checkItem is one line of the daily check.
type checkItem struct {
	Item     string   `json:"item"`
	OK       bool     `json:"ok"`
	Summary  string   `json:"summary"`
	Findings []string `json:"findings,omitempty"`
}

// checkDailyJSON is the output of check daily --json.
type checkDailyJSON struct {
	Config   string      `json:"config"`
	Agent    string      `json:"agent"`
	Zone     string      `json:"zone"`
	Time     time.Time   `json:"time"`
	Findings int         `json:"findings"`
	Items    []checkItem `json:"items"`
}

func runCheckDaily(ctx context.Context, opts checkDailyOptions, out io.Writer, log *slog.Logger) error {
	if opts.Config == "" {
		return &usageError{errors.New("--config is required: the agent's config file")}
	}
	ac, err := loadAgentConfig(opts.Config)
	if err != nil {
		return err
	}
	alarms := ac.Alarms
	now := time.Now()
	res := checkDailyJSON{Config: opts.Config, Agent: ac.Agent, Zone: ac.Zone, Time: now.UTC()}
	add := func(it checkItem) { res.Items = append(res.Items, it) }

	// The agent, through its admin socket.
	var snap *status.Snapshot
	agent := checkItem{Item: "agent"}
	switch {
	case ac.Admin.Socket == "":
		agent.Findings = append(agent.Findings, "the config has no admin.socket: the agent's health cannot be checked")
	default:
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		snap, err = status.Fetch(sctx, ac.Admin.Socket)
		cancel()
		if err != nil {
			agent.Findings = append(agent.Findings, fmt.Sprintf("the agent does not answer: %v", err))
			break
		}
		agent.Summary = fmt.Sprintf("%s %s, version %s, up %s", snap.Agent, snap.State, snap.Version, snap.Taken.Sub(snap.Started).Round(time.Second))
	}
	add(agent)

	// Both media, as the agent reaches them.
	for _, dir := range []string{directionSend, directionReceive} {
		cfg := ac.Send
		if dir == directionReceive {
			cfg = ac.Receive
		}
		it := checkItem{Item: dir}
		r, err := media.Check(ctx, cfg, log)
		if err != nil {
			it.Findings = append(it.Findings, fmt.Sprintf("cannot check the %s medium: %v", dir, err))
			add(it)
			continue
		}
		if opts.MaxAge > 0 && r.Files > 0 && r.OldestAge > opts.MaxAge {
			r.Problemf("the oldest waiting file, %s, has waited %v: nobody drains this medium", r.Oldest, r.OldestAge.Round(time.Second))
		}
		it.Summary = fmt.Sprintf("%s: reachable %s, %d files waiting", r.Medium, yesNo(r.Reachable), r.Files)
		it.Findings = append(it.Findings, r.Problems...)
		add(it)
	}

	// What waits in the zone.
	if snap != nil {
		q := snap.Queue
		it := checkItem{Item: "queue", Summary: fmt.Sprintf("envelopes %s; dead letters %d; held %d; gaps %d", countsLine(q.Envelopes), q.Dead, q.Held, q.Gaps)}
		if q.Dead > 0 {
			it.Findings = append(it.Findings, fmt.Sprintf("%d dead letters: see 'ferryctl queue list --state dead'", q.Dead))
		}
		add(it)
	}

	// Quarantines within --since.
	qs, err := quarantinedSince(ac.Quarantine, now.Add(-opts.Since))
	it := checkItem{Item: "quarantine", Summary: fmt.Sprintf("none since %s", now.Add(-opts.Since).UTC().Format(time.DateTime))}
	switch {
	case err != nil:
		it.Findings = append(it.Findings, fmt.Sprintf("cannot read %s: %v", ac.Quarantine, err))
	case len(qs) > 0:
		it.Summary = fmt.Sprintf("%d files since %s, in %s", len(qs), now.Add(-opts.Since).UTC().Format(time.DateTime), ac.Quarantine)
		it.Findings = append(it.Findings, qs...)
	}
	add(it)

	// The audit log, against the zone's key.
	it = checkItem{Item: "audit"}
	var buf bytes.Buffer
	if err := runAuditVerify(ctx, auditVerifyOptions{PubKey: filepath.Join(ac.Keys, keys.AuditPubFile)}, ac.AuditLog, &buf); err != nil {
		msg := strings.TrimSpace(strings.TrimPrefix(buf.String(), "FAIL: "))
		if msg == "" {
			msg = err.Error()
		}
		it.Findings = append(it.Findings, "the audit log does not verify: "+msg)
	} else {
		it.Summary = firstLine(buf.String())
	}
	add(it)

	// Keys and policy, from the agent's own view.
	if snap != nil {
		k := snap.Keys
		add(checkItem{Item: "keys", Summary: fmt.Sprintf("signing key %s, rotate by %s", k.Signing, k.Expires.UTC().Format(time.DateOnly))})
		if p := snap.Policy; p != nil && ac.Agent == "intranet" {
			add(checkItem{Item: "policy", Summary: fmt.Sprintf("%s signed by %s, review by %s", p.Version, strings.Join(p.Signers, ", "), p.Expires.UTC().Format(time.DateOnly))})
		}
	}

	// Disk space where the state is.
	d := status.DiskOf(filepath.Dir(ac.AuditLog))
	it = checkItem{Item: "disk"}
	if d.Total == 0 {
		it.Findings = append(it.Findings, fmt.Sprintf("cannot read the file system of %s", d.Path))
	} else {
		free := float64(d.Free) / float64(d.Total)
		it.Summary = fmt.Sprintf("%s: %.1f%% free", d.Path, 100*free)
		// With the agent answering, its disk_full alarm says it.
		if snap == nil && free < alarms.DiskFree {
			it.Findings = append(it.Findings, fmt.Sprintf("%s has %.1f%% free, below alarms.disk_free %.0f%%", d.Path, 100*free, 100*alarms.DiskFree))
		}
	}
	add(it)

	// The agent's alarms, each under the item it concerns: the agent
	// decides them (status.Evaluate), the check does not again.
	if snap != nil {
		for _, a := range snap.Alarms {
			i := slices.IndexFunc(res.Items, func(it checkItem) bool { return it.Item == alarmItem[a.Name] })
			if i < 0 {
				i = 0 // the agent
			}
			res.Items[i].Findings = append(res.Items[i].Findings, fmt.Sprintf("alarm %s (%s): %s", a.Name, a.Severity, a.Message))
		}
	}
	for i := range res.Items {
		res.Items[i].OK = len(res.Items[i].Findings) == 0
		res.Findings += len(res.Items[i].Findings)
	}
	if opts.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else if err := printCheckDaily(out, &res); err != nil {
		return err
	}
	if res.Findings > 0 {
		return fmt.Errorf("daily check: %s", plural(res.Findings, "finding"))
	}
	return nil
}

func printCheckDaily(out io.Writer, res *checkDailyJSON) error {
	fmt.Fprintf(out, "daily check of the %s zone %q (%s) at %s\n", res.Agent, res.Zone, res.Config, res.Time.Format(time.DateTime+" UTC"))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, it := range res.Items {
		mark := "ok"
		if !it.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", mark, it.Item, it.Summary)
		for _, f := range it.Findings {
			fmt.Fprintf(tw, "  \t\t- %s\n", f)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.Findings == 0 {
		_, err := fmt.Fprintln(out, "no findings")
		return err
	}
	_, err := fmt.Fprintf(out, "%s\n", plural(res.Findings, "finding"))
	return err
}

// quarantinedSince lists the files quarantined in dir since t, each as
// "NAME: REASON", oldest first, from their .reason files.
func quarantinedSince(dir string, t time.Time) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type q struct {
		at   time.Time
		line string
	}
	var qs []q
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), medium.ReasonExt) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.ModTime().Before(t) {
			continue
		}
		reason := "unknown reason"
		if f, err := os.Open(filepath.Join(dir, e.Name())); err == nil {
			sc := bufio.NewScanner(io.LimitReader(f, 4<<10))
			for sc.Scan() {
				if r, ok := strings.CutPrefix(sc.Text(), "reason: "); ok {
					reason = r
					break
				}
			}
			f.Close()
		}
		qs = append(qs, q{fi.ModTime(), fmt.Sprintf("%s: %s", strings.TrimSuffix(e.Name(), medium.ReasonExt), reason)})
	}
	sort.SliceStable(qs, func(i, j int) bool { return qs[i].at.Before(qs[j].at) })
	out := make([]string, len(qs))
	for i, x := range qs {
		out[i] = x.line
	}
	return out, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
