package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/sqlguard"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// errLintFailed is returned by lint when the policy has errors; the
// problems themselves are already printed.
var errLintFailed = errors.New("the policy has errors")

type policyLintOptions struct {
	Replica string
	Schema  string
	Strict  bool
}

func (o *policyLintOptions) Add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Replica, "replica", "", "prove the statements against this replica `database` (opened read-only)")
	cmd.Flags().StringVar(&o.Schema, "schema", "", "prove the statements against the replica schema in this SQL `file`")
	cmd.Flags().BoolVar(&o.Strict, "strict", false, "count warnings as errors")
}

func newPolicyLintCmd(g *globals) *cobra.Command {
	var opts policyLintOptions
	cmd := &cobra.Command{
		Use:   "lint FILE [--replica DB | --schema SCHEMA.sql] [--strict]",
		Short: "Check a policy file and prove its statements, listing every problem",
		Long: `Check policy FILE as the intranet agent does at load and list every problem
at once, one per line as file:line: field: message:

  - the language rules (types, names, placeholders, table declarations...);
  - the warnings of the language (declarations a later version requires),
    which --strict counts as errors;
  - with --replica or --schema, the proof of every statement: it is compiled
    under an SQLite authorizer that allows only what its operation declares
    (reads, inserts, updates), and a read statement must be read-only.

--replica opens the replica read-only and never changes it; --schema loads
the schema into a private in-memory database. Without either, only the
language is checked. Exits 1 if there is any error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyLint(cmd.Context(), opts, args[0], g.stdout)
		},
	}
	opts.Add(cmd)
	return cmd
}

func runPolicyLint(ctx context.Context, opts policyLintOptions, path string, out io.Writer) error {
	if opts.Replica != "" && opts.Schema != "" {
		return &usageError{errors.New("--replica and --schema are mutually exclusive")}
	}
	data, err := config.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lint policy: %w", err)
	}
	nerr, nwarn := 0, 0
	pol, perr := policy.Parse(path, data)
	if perr != nil {
		for _, e := range splitErrors(perr) {
			fmt.Fprintln(out, e.Error())
			nerr++
		}
		fmt.Fprintf(out, "%s: %s, %s; statements not proven (the policy does not load)\n",
			path, plural(nerr, "error"), plural(0, "warning"))
		return fmt.Errorf("%s: %w", path, errLintFailed)
	}
	for _, w := range pol.Warnings() {
		if opts.Strict {
			fmt.Fprintln(out, w)
			nerr++
		} else {
			fmt.Fprintf(out, "%s (warning)\n", w)
			nwarn++
		}
	}

	proof := "statements not proven (no --replica or --schema)"
	if opts.Replica != "" || opts.Schema != "" {
		problems, against, err := provePolicyFile(ctx, opts, path, data, pol)
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(out, p)
		}
		nerr += len(problems)
		if len(problems) == 0 {
			proof = "statements proven against " + against
		} else {
			proof = "statements checked against " + against
		}
	} else {
		fmt.Fprintln(out, "note: statements were not proven read-only or checked against the replica's tables; pass --replica DB or --schema SCHEMA.sql")
	}
	fmt.Fprintf(out, "%s: %s, %s, %s; %s\n", path, plural(len(pol.Operations), "operation"),
		plural(nerr, "error"), plural(nwarn, "warning"), proof)
	if nerr > 0 {
		return fmt.Errorf("%s: %w", path, errLintFailed)
	}
	return nil
}

// provePolicyFile proves pol's statements against the replica or schema
// that opts name, and returns one "file:line: field: message" line per
// failing operation and the name of what it proved against. An error means
// the proof could not run at all.
func provePolicyFile(ctx context.Context, opts policyLintOptions, path string, data []byte, pol *policy.Policy) (problems []string, against string, err error) {
	var db *sql.DB
	if opts.Replica != "" {
		against = opts.Replica
		fi, err := os.Stat(opts.Replica)
		if err != nil {
			return nil, "", fmt.Errorf("lint policy: replica: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, "", fmt.Errorf("lint policy: replica %s: not a regular file", opts.Replica)
		}
		db, err = sqlitedb.Open(ctx, opts.Replica, sqlitedb.Options{ReadOnly: true, MaxReaders: 1})
		if err != nil {
			return nil, "", fmt.Errorf("lint policy: %w", err)
		}
	} else {
		against = opts.Schema
		schema, err := os.ReadFile(opts.Schema)
		if err != nil {
			return nil, "", fmt.Errorf("lint policy: schema: %w", err)
		}
		db, err = sqlguard.SchemaDB(ctx, string(schema))
		if err != nil {
			return nil, "", fmt.Errorf("lint policy: %s: %w", opts.Schema, err)
		}
	}
	defer db.Close()

	perr := replica.ProvePolicy(ctx, db, pol)
	if perr == nil {
		return nil, against, nil
	}
	if ctx.Err() != nil {
		return nil, "", fmt.Errorf("lint policy: %w", ctx.Err())
	}
	places := statementPlaces(data)
	for _, e := range splitErrors(perr) {
		msg := e.Error()
		op := failingOperation(pol, msg)
		if op == "" {
			// Not an operation's proof failure: the database could not
			// be used at all.
			if !strings.HasPrefix(msg, "operation ") {
				return nil, "", fmt.Errorf("lint policy: %w", e)
			}
			problems = append(problems, (&config.Error{File: path, Msg: msg}).Error())
			continue
		}
		pl := places[op]
		problems = append(problems, (&config.Error{
			File: path, Line: pl.line, Field: "operations[" + strconv.Itoa(pl.index) + "].statement", Msg: msg,
		}).Error())
	}
	return problems, against, nil
}

// failingOperation returns the name of the operation of pol that a
// ProvePolicy error message ("operation NAME: ...") is about, or "".
func failingOperation(pol *policy.Policy, msg string) string {
	rest, ok := strings.CutPrefix(msg, "operation ")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, ": ")
	if !ok {
		return ""
	}
	if _, ok := pol.Operation(name); !ok {
		return ""
	}
	return name
}

// place is where an operation sits in a policy file.
type place struct {
	index int // in the operations list
	line  int // of its statement key, or of the operation when it has none
}

// statementPlaces maps each operation name in a policy's YAML to its index
// and the line of its statement. It reads only the node tree; data is a
// policy that already parsed.
func statementPlaces(data []byte) map[string]place {
	places := map[string]place{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return places
	}
	ops := mappingValue(documentRoot(&root), "operations")
	if ops == nil || ops.Kind != yaml.SequenceNode {
		return places
	}
	for i, item := range ops.Content {
		if item.Kind != yaml.MappingNode {
			continue
		}
		name := mappingValue(item, "name")
		if name == nil || name.Kind != yaml.ScalarNode {
			continue
		}
		pl := place{index: i, line: item.Line}
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "statement" {
				pl.line = item.Content[j].Line
			}
		}
		if _, dup := places[name.Value]; !dup {
			places[name.Value] = pl
		}
	}
	return places
}

// documentRoot returns the top node of a parsed document.
func documentRoot(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

// mappingValue returns the value of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// splitErrors returns the errors that errors.Join joined into err, or err
// alone.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			if e != nil {
				out = append(out, e)
			}
		}
		return out
	}
	return []error{err}
}

// plural renders "1 error", "2 errors".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
