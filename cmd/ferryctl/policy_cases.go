package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// Expectations of a policy test case.
const (
	expectAllow = "allow"
	expectDeny  = "deny"
	expectHeld  = "held"
)

// policyTestApprover is the admin name a case's approve: decides as.
const policyTestApprover = "ferryctl-policy-test"

// Bounds of a cases file.
const (
	maxCaseRepeat    = 10000
	maxCaseJSONDepth = 32
	maxCaseJSONBytes = 64 << 10
)

// The envelope a policy test sends its requests in.
const (
	policyTestSender  = "ferryctl-policy-test"
	policyTestChannel = "policy-test"
)

// errCasesFailed is returned by test when a case did not get what it
// expected; the cases are already reported.
var errCasesFailed = errors.New("policy test failed")

// rawCaseFile is the YAML shape of a cases file.
type rawCaseFile struct {
	Cases []rawCase `yaml:"cases"`
}

type rawCase struct {
	Name         string            `yaml:"name"`
	Client       string            `yaml:"client"`
	Subject      string            `yaml:"subject"`
	Operation    string            `yaml:"operation"`
	Params       yaml.Node         `yaml:"params"`
	ParamsJSON   *string           `yaml:"params_json"`
	Expect       string            `yaml:"expect"`
	Reason       string            `yaml:"reason"`
	Rows         *int              `yaml:"rows"`
	RowsAffected *int64            `yaml:"rows_affected"`
	Match        map[string]string `yaml:"match"`
	Repeat       *int              `yaml:"repeat"`
	Approve      *bool             `yaml:"approve"`
}

// policyCase is one validated test case.
type policyCase struct {
	Name      string
	Client    string
	Subject   string
	Operation string
	Params    json.RawMessage
	Expect    string // expectAllow, expectDeny or expectHeld
	Reason    string // deny: the reason code wanted, or "" for any
	// Rows and RowsAffected, when not nil, are the row count of a read and
	// the rows affected by a write that allow wants.
	Rows         *int
	RowsAffected *int64
	// Match maps result columns to anchored patterns that the column's
	// value in every returned row must match (allow only).
	Match  map[string]*regexp.Regexp
	Repeat int
	// Approve, when not nil, says the request must be held for approval,
	// and is then approved (true) or denied (false) before Expect is
	// checked against its final result.
	Approve *bool
	Line    int
	columns []string // the keys of Match, sorted
}

// parseCases reads a cases file strictly; every problem is a *config.Error
// naming file, line and field, joined.
func parseCases(file string, data []byte) ([]policyCase, error) {
	var raw rawCaseFile
	root, err := config.Decode(file, data, &raw)
	if err != nil {
		return nil, err
	}
	var errs []error
	fail := func(msg string, path ...string) {
		errs = append(errs, config.FieldError(file, root, msg, path...))
	}
	if mappingValue(documentRoot(root), "cases") == nil {
		fail("required: a list of cases", "cases")
	} else if len(raw.Cases) == 0 {
		fail("must list at least one case", "cases")
	}
	seen := map[string]bool{}
	var out []policyCase
	for i, r := range raw.Cases {
		at := func(field ...string) []string { return append([]string{"cases", strconv.Itoa(i)}, field...) }
		c := policyCase{
			Name: r.Name, Client: r.Client, Subject: r.Subject, Operation: r.Operation,
			Expect: r.Expect, Reason: r.Reason, Rows: r.Rows, RowsAffected: r.RowsAffected,
			Repeat: 1, Approve: r.Approve, Line: config.Line(root, at()...),
		}
		n := len(errs)
		switch {
		case r.Name == "":
			fail("required", at("name")...)
		case !printable(r.Name):
			fail("must be printable text on one line", at("name")...)
		case seen[r.Name]:
			fail(fmt.Sprintf("duplicate case name %q", r.Name), at("name")...)
		}
		seen[r.Name] = true
		if r.Operation == "" {
			fail("required", at("operation")...)
		}
		switch r.Expect {
		case expectAllow:
			if r.Reason != "" {
				fail("only a deny case has a reason", at("reason")...)
			}
		case expectDeny:
			if r.Reason != "" && !slices.Contains(policy.Reasons, r.Reason) {
				fail(fmt.Sprintf("unknown reason code %q (see docs/policy.md, \"Reason codes\")", r.Reason), at("reason")...)
			}
			for _, f := range []struct {
				key string
				set bool
			}{{"rows", r.Rows != nil}, {"rows_affected", r.RowsAffected != nil}, {"match", r.Match != nil}} {
				if f.set {
					fail("only an allow case has "+f.key, at(f.key)...)
				}
			}
		case expectHeld:
			for _, f := range []struct {
				key string
				set bool
			}{{"reason", r.Reason != ""}, {"rows", r.Rows != nil}, {"rows_affected", r.RowsAffected != nil},
				{"match", r.Match != nil}, {"approve", r.Approve != nil}} {
				if f.set {
					fail("a held case has no "+f.key+" (use approve: with allow or deny to check the final result)", at(f.key)...)
				}
			}
		case "":
			fail("required: allow, deny or held", at("expect")...)
		default:
			fail(fmt.Sprintf("must be allow, deny or held, not %q", r.Expect), at("expect")...)
		}
		if r.Rows != nil && *r.Rows < 0 {
			fail("must not be negative", at("rows")...)
		}
		if r.RowsAffected != nil && *r.RowsAffected < 0 {
			fail("must not be negative", at("rows_affected")...)
		}
		if r.Repeat != nil {
			if *r.Repeat < 1 || *r.Repeat > maxCaseRepeat {
				fail(fmt.Sprintf("must be between 1 and %d", maxCaseRepeat), at("repeat")...)
			}
			c.Repeat = *r.Repeat
		}
		if len(r.Match) > 0 {
			c.Match = map[string]*regexp.Regexp{}
			for col, pat := range r.Match {
				re, err := regexp.Compile(`^(?:` + pat + `)$`)
				if err != nil {
					fail(fmt.Sprintf("pattern does not compile: %v", err), at("match", col)...)
					continue
				}
				c.Match[col] = re
				c.columns = append(c.columns, col)
			}
			slices.Sort(c.columns)
		}
		switch {
		case r.ParamsJSON != nil && present(&r.Params):
			fail("params and params_json are mutually exclusive", at("params_json")...)
		case r.ParamsJSON != nil:
			c.Params = json.RawMessage(*r.ParamsJSON)
		case present(&r.Params) && r.Params.Kind != yaml.MappingNode:
			fail("want a mapping of parameter names to values", at("params")...)
		case present(&r.Params):
			p, err := yamlJSON(&r.Params, 0)
			if err != nil {
				errs = append(errs, &config.Error{File: file, Line: err.line, Field: fieldName(at("params")...), Msg: err.msg})
				break
			}
			if len(p) > maxCaseJSONBytes {
				fail(fmt.Sprintf("larger than %d bytes as JSON", maxCaseJSONBytes), at("params")...)
				break
			}
			c.Params = p
		default:
			c.Params = json.RawMessage(`{}`)
		}
		if len(errs) == n {
			out = append(out, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// fieldName renders a path as config.FieldError does.
func fieldName(path ...string) string {
	return config.FieldError("", nil, "", path...).Field
}

// present reports whether a YAML value was given (and is not null).
func present(n *yaml.Node) bool {
	return n.Kind != 0 && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// printable reports whether s is one line of printable text.
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// nodeError is a problem with a YAML value, at its line.
type nodeError struct {
	line int
	msg  string
}

// yamlJSON turns a YAML value into JSON the way a client would write it:
// an int stays an integer literal, a float keeps its literal when JSON can
// carry it, a string stays a string (an ID number must be quoted in YAML
// to be a string), mappings keep their key order.
func yamlJSON(n *yaml.Node, depth int) (json.RawMessage, *nodeError) {
	if depth > maxCaseJSONDepth {
		return nil, &nodeError{n.Line, fmt.Sprintf("nested deeper than %d levels", maxCaseJSONDepth)}
	}
	switch n.Kind {
	case yaml.AliasNode:
		return nil, &nodeError{n.Line, "aliases are not allowed in params"}
	case yaml.MappingNode:
		var b bytes.Buffer
		b.WriteByte('{')
		keys := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil, &nodeError{k.Line, "a key must be a plain string"}
			}
			if keys[k.Value] {
				return nil, &nodeError{k.Line, fmt.Sprintf("duplicate key %q (write params_json to send a repeated key)", k.Value)}
			}
			keys[k.Value] = true
			v, err := yamlJSON(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				b.WriteByte(',')
			}
			kj, _ := json.Marshal(k.Value)
			b.Write(kj)
			b.WriteByte(':')
			b.Write(v)
			if b.Len() > maxCaseJSONBytes {
				return nil, &nodeError{n.Line, fmt.Sprintf("larger than %d bytes as JSON", maxCaseJSONBytes)}
			}
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	case yaml.SequenceNode:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, item := range n.Content {
			v, err := yamlJSON(item, depth+1)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(v)
			if b.Len() > maxCaseJSONBytes {
				return nil, &nodeError{n.Line, fmt.Sprintf("larger than %d bytes as JSON", maxCaseJSONBytes)}
			}
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return json.RawMessage("null"), nil
		case "!!bool":
			var v bool
			if err := n.Decode(&v); err != nil {
				return nil, &nodeError{n.Line, "not a boolean"}
			}
			return json.RawMessage(strconv.FormatBool(v)), nil
		case "!!int":
			var v int64
			if err := n.Decode(&v); err == nil {
				return json.RawMessage(strconv.FormatInt(v, 10)), nil
			}
			if jsonNumber(n.Value) {
				return json.RawMessage(n.Value), nil
			}
			return nil, &nodeError{n.Line, fmt.Sprintf("integer %s cannot be written in JSON; quote it, or write params_json", n.Value)}
		case "!!float":
			if jsonNumber(n.Value) {
				return json.RawMessage(n.Value), nil
			}
			var v float64
			if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, &nodeError{n.Line, fmt.Sprintf("number %s cannot be written in JSON", n.Value)}
			}
			return json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64)), nil
		case "!!str":
			s, _ := json.Marshal(n.Value)
			return s, nil
		}
		return nil, &nodeError{n.Line, fmt.Sprintf("a value tagged %s cannot be written in JSON", n.ShortTag())}
	}
	return nil, &nodeError{n.Line, "unsupported YAML value"}
}

// jsonNumber reports whether s is a JSON number literal.
func jsonNumber(s string) bool {
	var v any
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return false
	}
	_, ok := v.(json.Number)
	return ok && !d.More() && d.InputOffset() == int64(len(s))
}

type policyTestOptions struct {
	Replica string
}

func (o *policyTestOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Replica, "replica", "", "the replica `database` to test against (copied; never changed)")
}

func newPolicyTestCmd(g *globals) *cobra.Command {
	var opts policyTestOptions
	cmd := &cobra.Command{
		Use:   "test FILE CASES --replica DB",
		Short: "Run a policy's test cases against a copy of a replica",
		Long: `Run the cases in CASES (YAML) against policy FILE on a private copy of the
replica DB, and report each case as ok or FAIL. The replica itself is opened
read-only and never changed.

Each case is one request, sent in its own envelope through the same path the
intranet agent applies requests with (policy evaluation, rate limits, the
statement on the replica, masks). Cases run in file order on one copy, so a
write is seen by the cases after it, and rate limits count across cases.

  cases:
    - name: own licence
      client: portal                    # the DMZ client that sends it
      subject: '330106199101300696'     # the citizen it asserts, if any
      operation: licence.status
      params: {}                        # or params_json: '{"raw": "json"}'
      expect: allow                     # allow: status done
      rows: 1                           # optional: rows returned by a read
      match: {mobile: '[0-9]{3}\*{4}[0-9]{4}'}  # optional: every row's column matches
    - name: someone else's licence
      client: portal
      subject: '330106199101300696'
      operation: licence.status
      params: {id_number: '320102197905145138'}
      expect: deny                      # deny: status rejected
      reason: forbidden_subject         # optional: the reason code wanted
    - name: renewal waits for review
      client: portal
      subject: '330106199101300696'
      operation: licence.renew
      expect: held                      # held: waits for an admin's approval
  # also: rows_affected (allow, a write), repeat: N (send N times, check the
  # last), approve: true|false (the request must be held; it is approved or
  # denied, then allow or deny is checked against its final result)

Exits 1 if any case does not get what it expects.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyTest(cmd.Context(), opts, args[0], args[1], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runPolicyTest(ctx context.Context, opts policyTestOptions, policyPath, casesPath string, out io.Writer) error {
	if opts.Replica == "" {
		return &usageError{errors.New("--replica is required")}
	}
	pol, err := policy.Load(policyPath)
	if err != nil {
		return withHint(err, "run 'ferryctl policy lint "+policyPath+"' to list every problem")
	}
	data, err := config.ReadFile(casesPath)
	if err != nil {
		return fmt.Errorf("read test cases: %w", err)
	}
	cases, err := parseCases(casesPath, data)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "ferryctl-policy-test-")
	if err != nil {
		return fmt.Errorf("policy test: %w", err)
	}
	defer os.RemoveAll(dir)
	copyPath := filepath.Join(dir, "replica.db")
	if err := copyReplica(ctx, opts.Replica, copyPath); err != nil {
		return err
	}
	db, err := replica.Open(ctx, copyPath)
	if err != nil {
		return fmt.Errorf("policy test: copy of %s: %w", opts.Replica, err)
	}
	defer db.Close()
	if err := db.ProvePolicy(ctx, pol); err != nil {
		return withHint(fmt.Errorf("policy test: %s: statements fail the proof against %s: %w", policyPath, opts.Replica, err),
			"run 'ferryctl policy lint --replica "+opts.Replica+" "+policyPath+"' to see where")
	}

	failed := 0
	var seq uint64
	for _, c := range cases {
		var res batch.Result
		for range c.Repeat {
			seq++
			env := replica.Envelope{ID: envelope.NewID(), From: policyTestSender, Channel: policyTestChannel, Seq: seq}
			req := batch.Request{
				ID: envelope.NewID(), Client: c.Client, Operation: c.Operation, Params: c.Params,
				Received: time.Now().UTC(), Subject: c.Subject,
			}
			applied, err := db.Apply(ctx, env, []batch.Request{req}, pol)
			if err != nil {
				return fmt.Errorf("policy test: case %q (%s:%d): %w", c.Name, casesPath, c.Line, err)
			}
			if len(applied.Results) != 1 {
				return fmt.Errorf("policy test: case %q: %d results for one request", c.Name, len(applied.Results))
			}
			res = applied.Results[0]
		}
		if c.Approve != nil && res.Status == batch.StatusHeld {
			final, err := db.Decide(ctx, replica.Decision{RequestID: res.RequestID, Approve: *c.Approve,
				By: policyTestApprover, Time: time.Now()}, pol)
			if err != nil {
				return fmt.Errorf("policy test: case %q (%s:%d): %w", c.Name, casesPath, c.Line, err)
			}
			res = *final
		} else if c.Approve != nil {
			failed++
			fmt.Fprintf(out, "FAIL %s: got %s, want held for approval\n", c.Name, res.Status)
			continue
		}
		if why := c.mismatch(res); why != "" {
			failed++
			fmt.Fprintf(out, "FAIL %s: %s\n", c.Name, why)
		} else {
			fmt.Fprintf(out, "ok   %s\n", c.Name)
		}
	}
	fmt.Fprintf(out, "%s: %s, %d passed, %d failed (policy %s, replica %s)\n", casesPath,
		plural(len(cases), "case"), len(cases)-failed, failed, policyPath, opts.Replica)
	if failed > 0 {
		return fmt.Errorf("%s: %d of %s: %w", casesPath, failed, plural(len(cases), "case"), errCasesFailed)
	}
	return nil
}

// mismatch says how res differs from what c expects, or "" if it does not.
// It never shows row values: they are personal data.
func (c *policyCase) mismatch(res batch.Result) string {
	got := res.Status
	if res.Reason != "" {
		got += " " + res.Reason
	}
	switch c.Expect {
	case expectHeld:
		if res.Status != batch.StatusHeld {
			return fmt.Sprintf("got %s, want held for approval", got)
		}
		return ""
	case expectDeny:
		want := "deny"
		if c.Reason != "" {
			want += " " + c.Reason
		}
		if res.Status != batch.StatusRejected || (c.Reason != "" && res.Reason != c.Reason) {
			return fmt.Sprintf("got %s, want %s", got, want)
		}
		return ""
	}
	if res.Status != batch.StatusDone {
		return fmt.Sprintf("got %s, want allow", got)
	}
	if c.Rows != nil && len(res.Rows) != *c.Rows {
		return fmt.Sprintf("got done with %s, want %s", plural(len(res.Rows), "row"), plural(*c.Rows, "row"))
	}
	if c.RowsAffected != nil && res.RowsAffected != *c.RowsAffected {
		return fmt.Sprintf("got done with %d rows affected, want %d", res.RowsAffected, *c.RowsAffected)
	}
	for _, col := range c.columns {
		re := c.Match[col]
		for i, row := range res.Rows {
			v, ok := row[col]
			if !ok {
				return fmt.Sprintf("row %d has no column %s", i+1, col)
			}
			if !re.MatchString(cellText(v)) {
				return fmt.Sprintf("row %d: column %s does not match %s", i+1, col, re)
			}
		}
	}
	return ""
}

// cellText renders a result value as the masks see it.
func cellText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// copyReplica writes a consistent copy of the replica at src to dst with
// VACUUM INTO on a connection opened with mode=ro, so src is never
// written. (sqlitedb's read-only pools also set query_only, under which
// SQLite refuses VACUUM INTO.)
func copyReplica(ctx context.Context, src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("policy test: replica: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("policy test: replica %s: not a regular file", src)
	}
	dsn := "file:" + (&url.URL{Path: src}).EscapedPath() + "?mode=ro&_busy_timeout=" +
		strconv.Itoa(int(sqlitedb.DefaultBusyTimeout/time.Millisecond))
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return fmt.Errorf("policy test: open replica %s: %w", src, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("policy test: copy replica %s: %w", src, err)
	}
	return nil
}
