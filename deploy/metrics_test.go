package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/status"
)

// The monitoring files this test checks.
const (
	promRulesFile     = "prometheus/ferry-rules.yml"
	promRulesTestFile = "prometheus/ferry-rules.test.yml"
	promConfigFile    = "prometheus/prometheus.yml"
	grafanaFile       = "grafana/ferry.json"
)

// promProxyUnits relay the intranet agent's admin socket to TCP.
var promProxyUnits = []string{"ferry-intranet-metrics.socket", "ferry-intranet-metrics.service"}

// promRuleFile is a Prometheus rules file; unknown keys are errors.
type promRuleFile struct {
	Groups []struct {
		Name     string     `yaml:"name"`
		Interval string     `yaml:"interval"`
		Rules    []promRule `yaml:"rules"`
	} `yaml:"groups"`
}

// promRule is one rule of a promRuleFile.
type promRule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// grafanaDashboard is the part of a Grafana dashboard the test reads.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string             `json:"expr"`
		RefID      string             `json:"refId"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a row's, when collapsed
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// grafanaDSUID is the datasource every panel and target must use: the
// dashboard's datasource variable, so that it imports into any Grafana.
const grafanaDSUID = "${datasource}"

// promExpr is one PromQL expression and where it comes from, for errors.
type promExpr struct {
	where string // "prometheus/ferry-rules.yml: rule FerryX"
	expr  string
	dash  bool // from the dashboard: selectors must filter on $zone
}

// promSelector is one vector selector of an expression: a metric name
// and its label matchers.
type promSelector struct {
	name     string
	matchers []promMatcher
}

type promMatcher struct {
	label, op, value string
}

// promKeywords are the PromQL words that are neither metric names nor
// functions called with parentheses right after them.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "offset": true, "bool": true,
	"atan2": true, "inf": true, "nan": true, "sum": true, "min": true, "max": true, "avg": true,
	"group": true, "stddev": true, "stdvar": true, "count": true, "count_values": true,
	"bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// promLabelLists are the keywords followed by a parenthesised list of
// label names.
var promLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// parsePromQL returns the vector selectors of expr. It is a lexer, not a
// parser: it knows strings, numbers and durations, label lists, matcher
// blocks and range brackets, which is all it takes to find every metric
// name and its matchers. It fails on a matcher block without a metric
// name before it ({__name__=...}): every metric must be named directly.
func parsePromQL(expr string) ([]promSelector, error) {
	var out []promSelector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
		return i
	}
	// skipString returns the index after the string literal at i.
	skipString := func(i int) (int, string, error) {
		q := expr[i]
		var b strings.Builder
		for j := i + 1; j < len(expr); j++ {
			switch c := expr[j]; {
			case c == '\\' && q != '`' && j+1 < len(expr):
				j++
				b.WriteByte(expr[j])
			case c == q:
				return j + 1, b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return 0, "", fmt.Errorf("unterminated string at offset %d", i)
	}
	// matchers parses the matcher block whose '{' is at i.
	matchers := func(i int) (int, []promMatcher, error) {
		var ms []promMatcher
		i++
		for {
			i = skipSpace(i)
			if i >= len(expr) {
				return 0, nil, fmt.Errorf("unterminated matcher block")
			}
			if expr[i] == '}' {
				return i + 1, ms, nil
			}
			if expr[i] == ',' {
				i++
				continue
			}
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			label := expr[i:j]
			j = skipSpace(j)
			var op string
			for _, o := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(expr[j:], o) {
					op = o
					break
				}
			}
			if label == "" || op == "" {
				return 0, nil, fmt.Errorf("bad matcher at offset %d", i)
			}
			j = skipSpace(j + len(op))
			if j >= len(expr) || !strings.ContainsRune("\"'`", rune(expr[j])) {
				return 0, nil, fmt.Errorf("matcher %s: want a quoted value at offset %d", label, j)
			}
			end, value, err := skipString(j)
			if err != nil {
				return 0, nil, err
			}
			ms = append(ms, promMatcher{label, op, value})
			i = end
		}
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, _, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			return nil, fmt.Errorf("a matcher block without a metric name at offset %d: name every metric directly", i)
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated range at offset %d", i)
			}
			i += end + 1
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := skipSpace(j)
			switch {
			case promLabelLists[word]:
				if k >= len(expr) || expr[k] != '(' {
					return nil, fmt.Errorf("%s without a label list at offset %d", word, i)
				}
				end := strings.IndexByte(expr[k:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unterminated label list at offset %d", k)
				}
				i = k + end + 1
			case promKeywords[word] || k < len(expr) && expr[k] == '(':
				i = j // a function, an aggregation or an operator
			default:
				sel := promSelector{name: word}
				i = j
				if k < len(expr) && expr[k] == '{' {
					end, ms, err := matchers(k)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", word, err)
					}
					sel.matchers, i = ms, end
				}
				out = append(out, sel)
			}
		default:
			i++
		}
	}
	return out, nil
}

// exported is what the agents export: each metric name of
// metrics.Names(), with its label names (job and instance, which
// Prometheus adds, besides), and the names Prometheus derives from a
// histogram's.
type exported struct {
	labels map[string][]string // by exposed name (a histogram's _bucket, _sum, _count)
	base   map[string]string   // exposed name to metric name
}

// exportedMetrics builds both agents' metrics on their real registries,
// with the alarm set and the webhook, touches every labelled series, and
// gathers them. It fails if what they export differs from
// metrics.Names(), the list the files are checked against.
func exportedMetrics(t *testing.T) exported {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "webhook.secret")
	if err := alarm.GenerateSecret(secret); err != nil {
		t.Fatal(err)
	}
	hook, err := alarm.NewWebhook(alarm.WebhookConfig{URL: "http://127.0.0.1:9/alarms", SecretFile: secret}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	snap := &status.Snapshot{
		Taken:     now,
		Queue:     status.Queue{Envelopes: map[string]int{status.WaitingToSend: 1}, OldestUnacked: now},
		Policy:    &status.Policy{Expires: now},
		Disk:      status.Disk{Free: 1, Total: 2},
		PeerHeard: status.PeerHeard{At: now},
	}
	ex := exported{labels: map[string][]string{}, base: map[string]string{}}
	for _, agent := range []string{metrics.DMZ, metrics.Intranet} {
		extra := []prometheus.Collector{alarm.NewSet(agent, nil, nil), hook}
		if agent == metrics.DMZ {
			extra = append(extra, callback.NewMetrics())
		}
		m := metrics.New(agent, agent, "test", extra...)
		m.Request("lookup", "accepted", time.Millisecond)
		m.Envelope(metrics.Received, now)
		m.Quarantine("signature")
		m.Decision("allow", "")
		m.MediumError(metrics.Send)
		m.SetSnapshot(snap)
		fams, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatalf("%s: gather: %v", agent, err)
		}
		for _, f := range fams {
			name := f.GetName()
			if !strings.HasPrefix(name, "ferry_") {
				continue // go_*, process_*
			}
			labels := []string{"job", "instance"}
			for _, mt := range f.GetMetric() {
				for _, lp := range mt.GetLabel() {
					labels = append(labels, lp.GetName())
				}
			}
			add := func(exposed string, extra ...string) {
				ex.labels[exposed] = append(ex.labels[exposed], append(extra, labels...)...)
				ex.base[exposed] = name
			}
			add(name)
			if f.GetType().String() == "HISTOGRAM" {
				add(name+"_bucket", "le")
				add(name + "_sum")
				add(name + "_count")
			}
		}
	}
	var got []string
	for exposed, name := range ex.base {
		if exposed == name {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	want := metrics.Names()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the agents' registries export %v, but metrics.Names() is %v", got, want)
	}
	return ex
}

// checkExprs checks every expression's metric names and matchers against
// what the agents export, and returns the metric names used.
func checkExprs(t *testing.T, ex exported, exprs []promExpr) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, e := range exprs {
		sels, err := parsePromQL(e.expr)
		if err != nil {
			t.Errorf("%s: %v in %q", e.where, err, e.expr)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: names no metric: %q", e.where, e.expr)
		}
		for _, s := range sels {
			var labels []string
			switch {
			case s.name == "up":
				// Prometheus' own, per target; the scrape config gives it the
				// zone of the target.
				labels = []string{"job", "instance", "zone"}
			case ex.base[s.name] != "":
				used[ex.base[s.name]] = true
				labels = ex.labels[s.name]
			default:
				t.Errorf("%s: metric %s is not exported by the agents (metrics.Names())", e.where, s.name)
				continue
			}
			zoned := false
			for _, m := range s.matchers {
				if !slices.Contains(labels, m.label) {
					t.Errorf("%s: metric %s has no label %q (it has %v)", e.where, s.name, m.label, uniq(labels))
				}
				if m.label == "zone" && m.op == "=~" && m.value == "$zone" {
					zoned = true
				}
			}
			if e.dash && !zoned {
				t.Errorf("%s: %s is not filtered by the zone variable (zone=~\"$zone\")", e.where, s.name)
			}
		}
	}
	return used
}

func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// loadRules reads the rules file strictly.
func loadRules(t *testing.T) promRuleFile {
	t.Helper()
	data, err := os.ReadFile(promRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf promRuleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", promRulesFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no groups", promRulesFile)
	}
	return rf
}

// loadDashboard reads the dashboard and returns it with all its panels,
// those inside rows included.
func loadDashboard(t *testing.T) (grafanaDashboard, []grafanaPanel) {
	t.Helper()
	data, err := os.ReadFile(grafanaFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", grafanaFile, err)
	}
	var all []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d, all
}

// dashboardExprs returns the dashboard's queries: the targets' and the
// query variables'.
func dashboardExprs(t *testing.T, d grafanaDashboard, panels []grafanaPanel) []promExpr {
	t.Helper()
	var out []promExpr
	for _, p := range panels {
		for _, tg := range p.Targets {
			out = append(out, promExpr{fmt.Sprintf("%s: panel %d %q, target %s", grafanaFile, p.ID, p.Title, tg.RefID), tg.Expr, true})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := templateQuery(v.Query)
		// label_values(METRIC, LABEL): check METRIC.
		m := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]\w*\)$`).FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", grafanaFile, v.Name, q)
			continue
		}
		out = append(out, promExpr{fmt.Sprintf("%s: variable %s", grafanaFile, v.Name), m[1], false})
	}
	return out
}

// templateQuery returns a query variable's query, a string or an object
// with a "query" string.
func templateQuery(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Query
}

// promDuration is a Prometheus duration such as 5m or 1h30m.
var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// TestRules_structure: every rule is an alert with an expression, a for
// duration (0m where the expression already holds its own window), a
// severity of warning or critical, a summary naming the zone, and a
// description; alert names are unique.
func TestRules_structure(t *testing.T) {
	rf := loadRules(t)
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: a group without a name or rules", promRulesFile)
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("%s: group %s, rule %d %q", promRulesFile, g.Name, i+1, r.Alert)
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: want an alert rule (alert:, no record:)", where)
			}
			if seen[r.Alert] {
				t.Errorf("%s: alert name used twice", where)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			if !promDuration.MatchString(r.For) {
				t.Errorf("%s: for %q: want a duration such as 5m", where, r.For)
			}
			if s := r.Labels["severity"]; s != string(alarm.Warning) && s != string(alarm.Critical) {
				t.Errorf("%s: severity %q: want warning or critical", where, s)
			}
			if s := r.Annotations["summary"]; !strings.Contains(s, "{{ $labels.zone }}") {
				t.Errorf("%s: summary %q does not name {{ $labels.zone }}", where, s)
			}
			if r.Annotations["description"] == "" {
				t.Errorf("%s: no description", where)
			}
		}
	}
}

// TestRules_alarms: the rules on ferry_alarm_active cover every alarm
// name exactly once, and give each the severity status.Evaluate raises it
// with first (key_expiry and policy_expiry: warning; their critical stage
// has rules of its own).
func TestRules_alarms(t *testing.T) {
	rf := loadRules(t)
	// One snapshot that raises every alarm.
	now := time.Now()
	snap := &status.Snapshot{
		Started:   now.Add(-2 * time.Hour),
		Taken:     now,
		LastSent:  now.Add(-time.Hour),
		PeerHeard: status.PeerHeard{At: now, Silent: true},
		Queue: status.Queue{Backlog: 100, MaxBacklog: 100, OldestUnacked: now.Add(-time.Hour),
			Envelopes: map[string]int{status.WaitingToSend: 1}, Gaps: 1},
		Recent: status.Recent{Quarantined: 1000, Refused: 1000, Frequent: []string{"portal"}},
		Disk:   status.Disk{Free: 1, Total: 100},
		Keys:   status.Keys{Expires: now.Add(24 * time.Hour)},
		Policy: &status.Policy{Expires: now.Add(24 * time.Hour)},
		Audit:  status.Audit{Inconsistent: "rewritten"},
	}
	want := map[string]alarm.Severity{}
	for _, a := range status.Evaluate(snap, alarm.DefaultConfig(), now) {
		want[a.Name] = a.Severity
	}
	if len(want) != len(alarm.Names()) {
		t.Fatalf("the test's snapshot raises %d alarms, not all %d: make it raise every one", len(want), len(alarm.Names()))
	}

	got := map[string]string{} // alarm name to the rule covering it
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			sels, err := parsePromQL(r.Expr)
			if err != nil {
				continue // TestRulesAndDashboard_metrics reports it
			}
			for _, s := range sels {
				if s.name != metrics.AlarmActive {
					continue
				}
				var names []string
				for _, m := range s.matchers {
					switch {
					case m.label == "alarm" && m.op == "=":
						names = append(names, m.value)
					case m.label == "alarm" && m.op == "=~":
						names = append(names, strings.Split(m.value, "|")...)
					case m.label == "alarm":
						t.Errorf("rule %s: alarm%s: name the alarms with = or =~", r.Alert, m.op)
					}
				}
				if len(names) == 0 {
					t.Errorf("rule %s: %s without alarm=~\"...\": split the alarms by severity", r.Alert, s.name)
				}
				for _, n := range names {
					sev, ok := want[n]
					switch {
					case !ok:
						t.Errorf("rule %s: %q is not an alarm name (alarm.Names())", r.Alert, n)
					case got[n] != "":
						t.Errorf("alarm %s is in two rules: %s and %s", n, got[n], r.Alert)
					case string(sev) != r.Labels["severity"]:
						t.Errorf("rule %s: alarm %s has severity %s, the rule %s", r.Alert, n, sev, r.Labels["severity"])
					}
					got[n] = r.Alert
				}
			}
		}
	}
	var missing []string
	for _, n := range alarm.Names() {
		if got[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: no rule on %s covers the alarms %v", promRulesFile, metrics.AlarmActive, missing)
	}
}

// TestDashboard_structure: the dashboard is one Grafana imports: unique
// panel ids, grid positions inside the 24 columns, targets with an expr
// and a unique refId, the datasource variable everywhere, and a zone
// variable.
func TestDashboard_structure(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("%s: uid %q, title %q, schemaVersion %d: want a uid, a title and schemaVersion 36 or later", grafanaFile, d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["zone"] != "query" {
		t.Errorf("%s: variables %v: want datasource (datasource) and zone (query)", grafanaFile, vars)
	}
	ids := map[int]string{}
	for _, p := range panels {
		where := fmt.Sprintf("%s: panel %d %q", grafanaFile, p.ID, p.Title)
		if p.ID <= 0 {
			t.Errorf("%s: id must be positive", where)
		}
		if other, ok := ids[p.ID]; ok {
			t.Errorf("%s: id also used by %q", where, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.Type == "" {
			t.Errorf("%s: no title or type", where)
		}
		if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("%s: gridPos %+v: want h and w above 0 within 24 columns", where, g)
		}
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				t.Errorf("%s: a row with targets", where)
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		if p.Datasource == nil || p.Datasource.UID != grafanaDSUID {
			t.Errorf("%s: datasource %+v: want uid %s", where, p.Datasource, grafanaDSUID)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %q has no expr", where, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: target refId %q empty or used twice", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != grafanaDSUID {
				t.Errorf("%s: target %s: datasource uid %q: want %s", where, tg.RefID, tg.Datasource.UID, grafanaDSUID)
			}
		}
	}
}

// TestRulesAndDashboard_metrics: every metric the rules and the
// dashboard name is one the agents export (metrics.Names(); a histogram's
// _bucket, _sum and _count count as it; up is Prometheus' own), with only
// labels it has, and every dashboard selector filters on the zone
// variable. And the other way round: every metric the agents export is
// used somewhere, so that a new metric gets a panel or a rule.
func TestRulesAndDashboard_metrics(t *testing.T) {
	ex := exportedMetrics(t)
	rf := loadRules(t)
	var exprs []promExpr
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, promExpr{fmt.Sprintf("%s: rule %s", promRulesFile, r.Alert), r.Expr, false})
		}
	}
	d, panels := loadDashboard(t)
	exprs = append(exprs, dashboardExprs(t, d, panels)...)
	used := checkExprs(t, ex, exprs)
	var unused []string
	for _, n := range metrics.Names() {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	if len(unused) > 0 {
		t.Errorf("metrics neither %s nor %s uses: %v; give each a panel or a rule", promRulesFile, grafanaFile, unused)
	}
}

// TestParsePromQL: the lexer finds every metric name and matcher, and
// nothing else.
func TestParsePromQL(t *testing.T) {
	tests := []struct {
		expr string
		want string // name{label op value,...} joined by spaces
		err  bool
	}{
		{`up{job="ferry"} == 0`, `up{job="ferry"}`, false},
		{`time() - (ferry_a{direction="received"} > 0) > 600`, `ferry_a{direction="received"}`, false},
		{`sum by (le, zone) (rate(ferry_h_bucket{zone=~"$zone"}[$__rate_interval])) * 60`, `ferry_h_bucket{zone=~"$zone"}`, false},
		{`ferry_a > 0 and on (job, instance) increase(ferry_b[10m]) == 0`, `ferry_a ferry_b`, false},
		{`predict_linear(ferry_a[6h], 86400) < 1e-3 or ferry_b offset 5m`, `ferry_a ferry_b`, false},
		{`ferry_a{alarm=~"x|y", b!="say \"ferry_c\""}`, `ferry_a{alarm=~"x|y",b!="say "ferry_c""}`, false},
		{`(ferry_a > 0) - time() < 30 * 86400 > 0`, `ferry_a`, false},
		{`count without (version) (ferry_build_info)`, `ferry_build_info`, false},
		{`{__name__="ferry_a"}`, ``, true},
		{`ferry_a{zone="x`, ``, true},
		{`ferry_a{zone}`, ``, true},
	}
	for _, tt := range tests {
		sels, err := parsePromQL(tt.expr)
		if (err != nil) != tt.err {
			t.Errorf("parsePromQL(%q): error %v, want error %v", tt.expr, err, tt.err)
			continue
		}
		var got []string
		for _, s := range sels {
			var ms []string
			for _, m := range s.matchers {
				ms = append(ms, m.label+m.op+`"`+m.value+`"`)
			}
			if len(ms) > 0 {
				got = append(got, s.name+"{"+strings.Join(ms, ",")+"}")
			} else {
				got = append(got, s.name)
			}
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("parsePromQL(%q) = %s, want %s", tt.expr, g, tt.want)
		}
	}
}

// promtool returns the path of promtool, skipping the test where it is
// not installed (Debian: apt-get install --no-install-recommends
// prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install --no-install-recommends prometheus)")
	}
	return path
}

// runPromtool runs promtool with args in dir and fails with its output
// if it fails.
func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestRules_promtool: Prometheus' own checker accepts the rules and the
// example scrape config, and the rules' unit tests
// (prometheus/ferry-rules.test.yml) pass: each rule fires when it should
// and stays quiet on the values that mean "not known yet".
func TestRules_promtool(t *testing.T) {
	promtool(t)
	runPromtool(t, "prometheus", "check", "rules", filepath.Base(promRulesFile))
	runPromtool(t, "prometheus", "check", "config", filepath.Base(promConfigFile))
	runPromtool(t, "prometheus", "test", "rules", filepath.Base(promRulesTestFile))
}

// TestDashboard_promtool: every dashboard query is valid PromQL, checked
// by promtool as a recording rule with Grafana's variables filled in.
func TestDashboard_promtool(t *testing.T) {
	promtool(t)
	_, panels := loadDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$zone", ".*")
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rec
	for _, p := range panels {
		for _, tg := range p.Targets {
			rules = append(rules, rec{fmt.Sprintf("dashboard:panel_%d_%s", p.ID, tg.RefID), vars.Replace(tg.Expr)})
		}
	}
	data, err := yaml.Marshal(map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard.yml")
}

// TestMetricsProxyUnits: the units that relay the intranet agent's admin
// socket to TCP pass `systemd-analyze verify` and rate 2.0 or lower in
// `systemd-analyze security --offline=yes`, where systemd-analyze is
// installed.
func TestMetricsProxyUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range promProxyUnits {
		data, err := os.ReadFile(filepath.Join("prometheus", u))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if out, err := exec.Command(sa, append([]string{"verify"}, paths...)...).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=20", paths[1]).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security %s: %v\n%s", promProxyUnits[1], err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	if v, _ := strconv.ParseFloat(string(m[1]), 64); v > 2.0 {
		t.Errorf("%s: exposure %.1f, want 2.0 or lower", promProxyUnits[1], v)
	}
}
