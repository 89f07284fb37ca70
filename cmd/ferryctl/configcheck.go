package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/intranet"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/status"
)

// errConfigHasErrors is returned by config check when a file has an
// error (or, with --strict, a warning); the findings are already printed.
var errConfigHasErrors = errors.New("the config has errors")

// Agent kinds of a config file.
const (
	agentDMZ      = "dmz"
	agentIntranet = "intranet"
)

// Severities of a finding.
const (
	severityError   = "error"
	severityWarning = "warning"
)

// Thresholds of the weak-settings warnings.
const (
	// weakEnvelopeTTL: an envelope valid longer than a week.
	weakEnvelopeTTL = 7 * 24 * time.Hour
	// weakMaxAge: the operating rules' key lifetime, two years.
	weakMaxAge = 2 * 365 * 24 * time.Hour
)

type configCheckOptions struct {
	Agent  string
	Strict bool
	JSON   bool
}

func (o *configCheckOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Agent, "agent", "", "check every FILE as the config of this `agent` (dmz or intranet) instead of telling from its keys")
	cmd.Flags().BoolVar(&o.Strict, "strict", false, "count warnings as errors")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print a JSON list of {file, line, field, severity, message}")
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check agent config files",
	}
	cmd.AddCommand(newConfigCheckCmd(g))
	return cmd
}

func newConfigCheckCmd(g *globals) *cobra.Command {
	var opts configCheckOptions
	cmd := &cobra.Command{
		Use:   "check FILE [FILE...] [--agent dmz|intranet] [--strict] [--json]",
		Short: "List every error and weak setting of agent config files",
		Long: `Load each FILE exactly as its agent does at start (dmz-agent or
intranet-agent) and print every error, one per line as

  FILE:LINE: FIELD: message

A YAML problem (bad syntax, an unknown key, a value of the wrong type)
stops the reading of a file, so it is the only error printed for it; past
that, every field that fails its check is listed. Then, if the file loads,
weak settings are printed as

  FILE:LINE: warning: FIELD: message

  plain FTP        a medium of type ftp (insecure_plain_ftp): the password
                   and the envelopes cross in clear (an SFTP medium without
                   known_hosts is an error already)
  long expiry      envelope_ttl above 7d; alarms.key_max_age or
                   alarms.policy_max_age above 730d (two years, the
                   operating rules' key lifetime)
  config file      writable by group or others, or owned by neither root
                   nor the user running the check
  private files    the key directory open to group or others; a private
                   key file (*.key under keys, audit-hmac.key included),
                   alarms.webhook.secret_file, an SFTP key or an FTP
                   password_file open to group or others or not a regular
                   file: the agent refuses to start with such a file
  state            the spool's (or replica's) and the audit log's
                   directory, inbox or quarantine readable by others
  policy           policy_signatures: 1 (intranet): one admin alone can put
                   a policy in force, no two-person rule
  admin, alarms    an alarms.webhook.url over http:// rather than https://;
                   admin.metrics on an address that is not loopback; no
                   admin.socket (ferryctl status and check daily cannot
                   reach the agent)

Paths that do not exist yet are not checked. Run the check as root or as
the zone's user to see into the key directory.

Which agent a file is for: the agent with more of its own top-level keys
in it (DMZ only: listen, clients, spool, limits, resend_after...;
intranet only: replica, admins, policy_signatures, approvals...); with
as many of each (usually none), zone: dmz or zone: intranet; else the
file is an error. --agent says it instead.

Exits 0 when no file has an error (warnings alone are printed, and exit
0), 1 when any has; --strict counts warnings as errors.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConfigCheck(opts, args, g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

// configFinding is one error or warning about a config file.
type configFinding struct {
	File     string `json:"file"`
	Line     int    `json:"line"`  // 0: the file as a whole
	Field    string `json:"field"` // dotted path; "" for the file as a whole
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// String renders f as FILE:LINE: FIELD: message for an error (as
// *config.Error does) and FILE:LINE: warning: FIELD: message for a
// warning.
func (f configFinding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
	}
	b.WriteString(": ")
	if f.Severity == severityWarning {
		b.WriteString("warning: ")
	}
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

func findingOf(e *config.Error, severity string) configFinding {
	return configFinding{File: e.File, Line: e.Line, Field: e.Field, Severity: severity, Message: e.Msg}
}

func runConfigCheck(opts configCheckOptions, files []string, out io.Writer) error {
	if opts.Agent != "" && opts.Agent != agentDMZ && opts.Agent != agentIntranet {
		return &usageError{fmt.Errorf("--agent %q: want dmz or intranet", opts.Agent)}
	}
	all := []configFinding{}
	var failed []string
	for _, path := range files {
		kind, findings := checkConfigFile(path, opts.Agent)
		nerr, nwarn := 0, 0
		for _, f := range findings {
			if f.Severity == severityError {
				nerr++
			} else {
				nwarn++
			}
		}
		if nerr > 0 || (opts.Strict && nwarn > 0) {
			failed = append(failed, path)
		}
		all = append(all, findings...)
		if opts.JSON {
			continue
		}
		for _, f := range findings {
			fmt.Fprintln(out, f)
		}
		what := "not an agent config"
		if kind != "" {
			what = kind + " agent config"
		}
		strict := ""
		if opts.Strict && nwarn > 0 {
			strict = " (--strict: warnings count as errors)"
		}
		fmt.Fprintf(out, "%s: %s: %s, %s%s\n", path, what, plural(nerr, "error"), plural(nwarn, "warning"), strict)
	}
	if opts.JSON {
		if err := writeJSON(out, all); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(failed, ", "), errConfigHasErrors)
	}
	return nil
}

// checkConfigFile loads the config at path as the agent it is for (agent,
// or the one configKind tells) and returns that kind ("" if unknown) and
// its findings: its errors, sorted by line, then, if it loads, its
// warnings, sorted likewise.
func checkConfigFile(path, agent string) (kind string, findings []configFinding) {
	fail := func(msg string) []configFinding {
		return []configFinding{{File: path, Severity: severityError, Message: msg}}
	}
	data, err := config.ReadFile(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return "", []configFinding{findingOf(ce, severityError)}
		}
		return "", fail(err.Error())
	}
	// The node tree, for the lines of warnings; a file that does not parse
	// fails to load below with the reason.
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	kind = agent
	if kind == "" {
		if kind, err = configKind(&root); err != nil {
			return "", fail(err.Error())
		}
	}
	var view agentView
	switch kind {
	case agentDMZ:
		c, err := dmz.LoadConfig(path)
		if err != nil {
			return kind, loadFindings(path, err)
		}
		view = dmzView(c)
	default:
		c, err := intranet.LoadConfig(path)
		if err != nil {
			return kind, loadFindings(path, err)
		}
		view = intranetView(c)
	}
	warnings := configFileWarnings(path)
	warnings = append(warnings, weakSettings(path, &root, view)...)
	sortFindings(warnings)
	return kind, warnings
}

// loadFindings turns a LoadConfig error, one *config.Error or several
// joined, into findings sorted by line.
func loadFindings(path string, err error) []configFinding {
	var out []configFinding
	for _, e := range splitErrors(err) {
		var ce *config.Error
		if errors.As(e, &ce) {
			out = append(out, findingOf(ce, severityError))
		} else {
			out = append(out, configFinding{File: path, Severity: severityError, Message: e.Error()})
		}
	}
	sortFindings(out)
	return out
}

func sortFindings(fs []configFinding) {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Line < fs[j].Line })
}

// yamlKeys returns the YAML names of the fields of the struct type t.
func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// ownKeys returns the top-level keys of the config type mine that the
// config type other does not have.
func ownKeys(mine, other reflect.Type) []string {
	theirs := yamlKeys(other)
	var out []string
	for _, k := range yamlKeys(mine) {
		if !slices.Contains(theirs, k) {
			out = append(out, k)
		}
	}
	return out
}

var (
	dmzOwnKeys      = ownKeys(reflect.TypeFor[dmz.Config](), reflect.TypeFor[intranet.Config]())
	intranetOwnKeys = ownKeys(reflect.TypeFor[intranet.Config](), reflect.TypeFor[dmz.Config]())
)

// configKind tells which agent the config document root is for: the agent
// with more of its own top-level keys in it; with as many of each, the
// zone key if it is "dmz" or "intranet" (the agents' default zones). A
// document that is not a mapping is called a DMZ config: it fails to load
// either way, with the same error.
func configKind(root *yaml.Node) (string, error) {
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		return agentDMZ, nil
	}
	nd, ni := 0, 0
	zone := ""
	for i := 0; i+1 < len(top.Content); i += 2 {
		k := top.Content[i].Value
		switch {
		case slices.Contains(dmzOwnKeys, k):
			nd++
		case slices.Contains(intranetOwnKeys, k):
			ni++
		case k == "zone":
			zone = top.Content[i+1].Value
		}
	}
	switch {
	case nd > ni:
		return agentDMZ, nil
	case ni > nd:
		return agentIntranet, nil
	case zone == agentDMZ || zone == agentIntranet:
		return zone, nil
	case nd == 0:
		return "", fmt.Errorf("cannot tell a DMZ agent config from an intranet one: none of the keys only one of them has "+
			"(DMZ: %s; intranet: %s) and the zone is neither dmz nor intranet; pass --agent dmz or --agent intranet",
			strings.Join(dmzOwnKeys, ", "), strings.Join(intranetOwnKeys, ", "))
	default:
		return "", fmt.Errorf("cannot tell a DMZ agent config from an intranet one: as many keys only the DMZ's has "+
			"(%s) as keys only the intranet's has (%s), and the zone is neither dmz nor intranet; pass --agent dmz or --agent intranet",
			strings.Join(dmzOwnKeys, ", "), strings.Join(intranetOwnKeys, ", "))
	}
}

// agentView is what the weak-settings checks read of a loaded config of
// either agent, its paths resolved as the agent uses them.
type agentView struct {
	envelopeTTL   time.Duration
	keys          string
	send, receive medium.Config
	admin         status.Config
	alarms        alarm.Config
	policySigs    int // the intranet's; 0 for the DMZ
	// dmz is the DMZ's config, nil for the intranet's.
	dmz *dmz.Config
	// state lists the state directories, each with the field naming it.
	state []stateDir
}

type stateDir struct {
	dir   string
	field string
}

func dmzView(c *dmz.Config) agentView {
	return agentView{
		envelopeTTL: time.Duration(c.EnvelopeTTL), keys: c.Keys, send: c.Send, receive: c.Receive,
		admin: c.Admin, alarms: c.Alarms, dmz: c,
		state: []stateDir{
			{filepath.Dir(c.Spool), "spool"}, {filepath.Dir(c.AuditLog), "audit_log"},
			{c.Inbox, "inbox"}, {c.Quarantine, "quarantine"},
		},
	}
}

func intranetView(c *intranet.Config) agentView {
	return agentView{
		envelopeTTL: time.Duration(c.EnvelopeTTL), keys: c.Keys, send: c.Send, receive: c.Receive,
		admin: c.Admin, alarms: c.Alarms, policySigs: c.PolicySigs,
		state: []stateDir{
			{filepath.Dir(c.Replica), "replica"}, {filepath.Dir(c.AuditLog), "audit_log"},
			{c.Inbox, "inbox"}, {c.Quarantine, "quarantine"},
		},
	}
}

// configFileWarnings warns when the config file at path is writable by
// group or others, or owned by neither root nor the user running the
// check: whoever can change it runs the agent as they please.
func configFileWarnings(path string) []configFinding {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // it was just read: a race, reported by the next run
	}
	var out []configFinding
	warn := func(msg string) {
		out = append(out, configFinding{File: path, Severity: severityWarning, Message: msg})
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		warn(fmt.Sprintf("mode %04o: writable by group or others, who could then reconfigure the agent; want 0640 or stricter", perm))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Getuid() {
		warn(fmt.Sprintf("owned by uid %d, neither root nor the user running this check (uid %d); want root", st.Uid, os.Getuid()))
	}
	return out
}

// weakSettings returns the warnings about v's settings, each at the line
// of its field in root.
func weakSettings(file string, root *yaml.Node, v agentView) []configFinding {
	var out []configFinding
	warn := func(msg string, path ...string) {
		out = append(out, findingOf(config.FieldError(file, root, msg, path...), severityWarning))
	}
	// private checks a private file once, under the first field naming it
	// (a webhook secret may lie in the key directory, say).
	checked := map[string]bool{}
	private := func(p string, path ...string) {
		if p == "" || checked[filepath.Clean(p)] {
			return
		}
		checked[filepath.Clean(p)] = true
		if msg := privateFileProblem(p); msg != "" {
			warn(msg, path...)
		}
	}
	for _, m := range []struct {
		key string
		c   medium.Config
	}{{"send", v.send}, {"receive", v.receive}} {
		switch m.c.Type {
		case medium.TypeFTP:
			warn("plain FTP: the password and the envelopes cross the network unencrypted; use type ftps", m.key, "insecure_plain_ftp")
			fallthrough
		case medium.TypeFTPS:
			private(m.c.PasswordFile, m.key, "password_file")
		case medium.TypeSFTP:
			private(m.c.Key, m.key, "key")
		}
	}
	if v.envelopeTTL > weakEnvelopeTTL {
		warn(fmt.Sprintf("%s is above 7d: a delayed or copied envelope stays acceptable that long after it was sealed", fmtDays(v.envelopeTTL)), "envelope_ttl")
	}
	for _, a := range []struct {
		key string
		d   config.Duration
	}{{"key_max_age", v.alarms.KeyMaxAge}, {"policy_max_age", v.alarms.PolicyMaxAge}} {
		if time.Duration(a.d) > weakMaxAge {
			warn(fmt.Sprintf("%s is above 730d, the operating rules' key lifetime of two years: rotation or review comes too late", fmtDays(time.Duration(a.d))), "alarms", a.key)
		}
	}
	private(v.alarms.Webhook.SecretFile, "alarms", "webhook", "secret_file")
	if d := v.dmz; d != nil {
		private(d.TLS.Key, "tls", "key")
		for i, c := range d.Clients {
			if c.Callback != nil {
				private(c.Callback.SecretFile, "clients", strconv.Itoa(i), "callback", "secret_file")
			}
		}
		if d.PublicListener() && d.Limits.IPRate.PerSecond == 0 {
			warn("not a loopback address, and no per-address rate limit: one source can take all the agent's capacity; set limits.ip_rate", "listen")
		}
	}
	checkKeyDir(v.keys, func(msg string) { warn(msg, "keys") }, func(p string) { private(p, "keys") })
	seen := map[string]bool{}
	for _, s := range v.state {
		if seen[s.dir] {
			continue
		}
		seen[s.dir] = true
		fi, err := os.Stat(s.dir)
		if err != nil || !fi.IsDir() {
			continue // not made yet: the agent makes it
		}
		if perm := fi.Mode().Perm(); perm&0o004 != 0 {
			warn(fmt.Sprintf("directory %s has mode %04o: others can read what it holds; want 0750 or stricter", s.dir, perm), s.field)
		}
	}
	if v.policySigs == 1 {
		warn("one admin alone can put a policy in force: no two-person rule; want 2 or more", "policy_signatures")
	}
	if strings.HasPrefix(strings.ToLower(v.alarms.Webhook.URL), "http://") {
		warn("alarms are posted over plain http://: use https://", "alarms", "webhook", "url")
	}
	if m := v.admin.Metrics; m != "" && !loopback(m) {
		warn(fmt.Sprintf("%s is not a loopback address: the metrics are served to the network without authentication; bind 127.0.0.1 or scrape the admin socket", m), "admin", "metrics")
	}
	if v.admin.Socket == "" {
		warn("no admin socket: ferryctl status and ferryctl check daily cannot reach the agent", "admin", "socket")
	}
	return out
}

// checkKeyDir calls warn when the key directory dir is open to group or
// others, and private for every private key file (*.key) below it.
func checkKeyDir(dir string, warn func(msg string), private func(path string)) {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return // loading the keys reports it
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		warn(fmt.Sprintf("key directory %s has mode %04o: open to group or others; want 0700", dir, perm))
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".key") {
			private(p)
		}
		return nil
	})
	if err != nil {
		warn(fmt.Sprintf("cannot check the private key files: %v; run the check as root or as the zone's user", err))
	}
}

// privateFileProblem returns why the agent would refuse the private file
// at path (see keys.CheckPrivate), or "" if it would not or the file does
// not exist.
func privateFileProblem(path string) string {
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf("cannot check %s: %v", path, err)
	}
	if err := keys.CheckPrivate(path); err != nil {
		if errors.Is(err, keys.ErrPermissions) {
			return err.Error() + "; the agent refuses to start with it"
		}
		return err.Error()
	}
	return ""
}

// loopback reports whether the host of the host:port addr is a loopback
// address or localhost; an empty host means every address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fmtDays renders d in whole days when it is a whole number of them
// ("800d"), else as a Go duration.
func fmtDays(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
