package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/intranet"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/media"
	"github.com/ferrybridge/ferry/internal/status"
)

// defaultMaxAge is how long a file may wait on a medium before the check
// calls the medium undrained.
const defaultMaxAge = 10 * time.Minute

// Directions --direction accepts.
const (
	directionSend    = "send"
	directionReceive = "receive"
	directionBoth    = "both"
)

type mediumCheckOptions struct {
	Config    string
	Direction string
	JSON      bool
	MaxAge    time.Duration
}

func newMediumCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "medium",
		Short: "Check the media an agent sends on and receives from",
	}
	cmd.AddCommand(newMediumCheckCmd(g))
	return cmd
}

func newMediumCheckCmd(g *globals) *cobra.Command {
	var opts mediumCheckOptions
	cmd := &cobra.Command{
		Use:   "check --config AGENT.yaml [--direction send|receive|both] [--json] [--max-age DURATION]",
		Short: "Check the boundary server or directory an agent uses (the daily check)",
		Long: `Check the media an agent's config names (the DMZ agent's or the intranet
agent's: ferryctl tells them apart), reaching each one exactly as the agent
does, and report for each:

  reachable    the directory exists, or the server was connected and logged in to
  host key     SFTP: the fingerprint of the host key the server showed, and
               whether it is the one pinned in known_hosts
  certificate  FTPS: the SHA-256 of the server's certificate, and whether it
               was verified
  probe        a probe file (.ferry-check-<16 hex>, a dot name no receiver
               takes) was written, renamed and removed
  free space   where the medium can tell
  waiting      the envelope files nobody has claimed yet, and the oldest's age
  temp files   left by interrupted uploads (the agents' janitors remove them)
  problems     each problem found, as a sentence

This is the daily check of the boundary server that the operating rules ask
for: run it from each zone with that zone's agent config (by hand or from a
timer) and act on a non-zero exit. A file older than --max-age (default 10m,
0 to disable) is a problem: nobody drains that medium, so the agent on the
other side is down or cannot reach it. The check never claims, changes or
removes a file it did not write, so it may run while the agent runs.

Exit codes: 0 when every medium checked is healthy, 1 when any problem is
found (or a medium could not be checked), 2 on a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return runMediumCheck(cmd.Context(), opts, g.stdout, log)
		},
	}
	cmd.Flags().StringVar(&opts.Config, "config", "", "the agent's config `file` (DMZ or intranet)")
	cmd.Flags().StringVar(&opts.Direction, "direction", directionBoth, "check the `medium` the agent sends on, receives from, or both")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&opts.MaxAge, "max-age", defaultMaxAge, "a file waiting longer than this `duration` is a problem (0: no limit)")
	return cmd
}

// agentConfig is what ferryctl's operator commands need of an agent
// config: which agent it is, its two media and its admin socket.
type agentConfig struct {
	Agent   string // "dmz" or "intranet"
	Zone    string
	Send    medium.Config
	Receive medium.Config
	Admin   status.Config
	Alarms  alarm.Config
	// Keys, AuditLog and Quarantine are the paths the config names.
	Keys, AuditLog, Quarantine string
}

// channelOf names what a direction of an agent carries.
func (a agentConfig) channelOf(direction string) string {
	if (a.Agent == "dmz") == (direction == directionSend) {
		return "requests"
	}
	return "results"
}

// loadAgentConfig loads the DMZ or the intranet agent config at path,
// telling them apart as config check does (looksIntranet); a file that is
// not clearly the intranet's is loaded as the DMZ's first, then as the
// intranet's.
func loadAgentConfig(path string) (agentConfig, error) {
	if looksIntranet(path) {
		ic, err := intranet.LoadConfig(path)
		if err != nil {
			return agentConfig{}, err
		}
		return intranetAgentConfig(ic), nil
	}
	dc, derr := dmz.LoadConfig(path)
	if derr == nil {
		return agentConfig{Agent: "dmz", Zone: dc.Zone, Send: dc.Send, Receive: dc.Receive, Admin: dc.Admin,
			Alarms: dc.Alarms, Keys: dc.Keys, AuditLog: dc.AuditLog, Quarantine: dc.Quarantine}, nil
	}
	if ic, err := intranet.LoadConfig(path); err == nil {
		return intranetAgentConfig(ic), nil
	}
	return agentConfig{}, derr
}

func intranetAgentConfig(ic *intranet.Config) agentConfig {
	return agentConfig{Agent: "intranet", Zone: ic.Zone, Send: ic.Send, Receive: ic.Receive, Admin: ic.Admin,
		Alarms: ic.Alarms, Keys: ic.Keys, AuditLog: ic.AuditLog, Quarantine: ic.Quarantine}
}

// looksIntranet reports whether the YAML file at path is an intranet
// agent config by the rule config check uses (configKind: the agent with
// more of its own keys, then the zone). Any failure answers false: the
// DMZ config's loader then reports it.
func looksIntranet(path string) bool {
	data, err := config.ReadFile(path)
	if err != nil {
		return false
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return false
	}
	kind, err := configKind(&root)
	return err == nil && kind == agentIntranet
}

// mediumCheckJSON is one medium's report as ferryctl prints it.
type mediumCheckJSON struct {
	Direction        string   `json:"direction"` // send or receive
	Channel          string   `json:"channel"`   // requests or results
	Type             string   `json:"type"`
	Medium           string   `json:"medium"`
	Reachable        bool     `json:"reachable"`
	Identity         string   `json:"identity,omitempty"`
	Writable         bool     `json:"writable"`
	FreeBytes        int64    `json:"free_bytes"` // -1: unknown
	Files            int      `json:"files"`
	Oldest           string   `json:"oldest,omitempty"`
	OldestAgeSeconds float64  `json:"oldest_age_seconds"`
	Temps            int      `json:"temps"`
	Problems         []string `json:"problems"`
	Healthy          bool     `json:"healthy"`
}

// mediumCheckOutJSON is the output of medium check --json.
type mediumCheckOutJSON struct {
	Config  string            `json:"config"`
	Agent   string            `json:"agent"` // dmz or intranet
	Healthy bool              `json:"healthy"`
	Media   []mediumCheckJSON `json:"media"`
}

func runMediumCheck(ctx context.Context, opts mediumCheckOptions, out io.Writer, log *slog.Logger) error {
	if opts.Config == "" {
		return &usageError{errors.New("--config is required: the agent's config file")}
	}
	var directions []string
	switch opts.Direction {
	case directionSend, directionReceive:
		directions = []string{opts.Direction}
	case directionBoth:
		directions = []string{directionSend, directionReceive}
	default:
		return &usageError{fmt.Errorf("--direction %q: want send, receive or both", opts.Direction)}
	}
	if opts.MaxAge < 0 {
		return &usageError{fmt.Errorf("--max-age %v: must not be negative", opts.MaxAge)}
	}
	am, err := loadAgentConfig(opts.Config)
	if err != nil {
		return err
	}
	res := mediumCheckOutJSON{Config: opts.Config, Agent: am.Agent, Healthy: true}
	problems := 0
	for _, dir := range directions {
		cfg := am.Send
		if dir == directionReceive {
			cfg = am.Receive
		}
		r, err := media.Check(ctx, cfg, log)
		if err != nil {
			return fmt.Errorf("check the %s medium: %w", dir, err)
		}
		if opts.MaxAge > 0 && r.Files > 0 && r.OldestAge > opts.MaxAge {
			r.Problemf("the oldest waiting file, %s, has waited %v, longer than --max-age %v: nobody drains this medium (is the %s agent running, and can it reach the medium?)",
				r.Oldest, r.OldestAge.Round(time.Second), opts.MaxAge, otherAgent(am.Agent))
		}
		problems += len(r.Problems)
		res.Healthy = res.Healthy && r.Healthy()
		res.Media = append(res.Media, mediumCheckJSON{
			Direction: dir, Channel: am.channelOf(dir), Type: cfg.Type, Medium: r.Medium,
			Reachable: r.Reachable, Identity: r.Identity, Writable: r.Writable, FreeBytes: r.FreeBytes,
			Files: r.Files, Oldest: r.Oldest, OldestAgeSeconds: r.OldestAge.Seconds(), Temps: r.Temps,
			Problems: append([]string{}, r.Problems...), Healthy: r.Healthy(),
		})
	}
	if opts.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		printMediumChecks(out, am.Agent, res.Media)
	}
	if problems > 0 {
		return fmt.Errorf("medium check: %s found", plural(problems, "problem"))
	}
	return nil
}

// otherAgent names the agent on the other side of the boundary.
func otherAgent(agent string) string {
	if agent == "dmz" {
		return "intranet"
	}
	return "DMZ"
}

// printMediumChecks prints the reports for a person.
func printMediumChecks(out io.Writer, agent string, reports []mediumCheckJSON) {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s agent, %s (%s): %s\n", agent, r.Direction, r.Channel, r.Medium)
		line := func(label, format string, args ...any) {
			fmt.Fprintf(out, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
		}
		line("reachable", "%s", yesNo(r.Reachable))
		if r.Identity != "" || r.Type != medium.TypeDir {
			label, how := "certificate", "verified"
			if r.Type == medium.TypeSFTP {
				label, how = "host key", "as pinned"
			}
			switch {
			case r.Identity == "":
				line(label, "unknown")
			case r.Reachable:
				line(label, "%s (%s)", r.Identity, how)
			default:
				line(label, "%s (NOT %s)", r.Identity, how)
			}
		}
		switch {
		case r.Writable:
			line("probe", "written, renamed and removed")
		case r.Reachable:
			line("probe", "FAILED")
		default:
			line("probe", "not tried")
		}
		if r.FreeBytes >= 0 {
			line("free space", "%s", formatBytes(r.FreeBytes))
		} else {
			line("free space", "unknown")
		}
		switch {
		case !r.Reachable:
			line("waiting", "unknown")
		case r.Files == 0:
			line("waiting", "none")
		default:
			age := time.Duration(r.OldestAgeSeconds * float64(time.Second)).Round(time.Second)
			line("waiting", "%s, the oldest %s for %v", plural(r.Files, "file"), r.Oldest, age)
		}
		if r.Reachable {
			line("temp files", "%d", r.Temps)
		}
		if len(r.Problems) == 0 {
			line("problems", "none")
			continue
		}
		line("problems", "%d", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(out, "    - %s\n", p)
		}
	}
}

// formatBytes prints n in binary units, such as "71.3 GiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}
