package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/policy"
)

// errPoliciesDiffer is returned by diff when the policies differ (exit 1,
// as diff(1)); the differences are already printed.
var errPoliciesDiffer = errors.New("the policies differ")

// maxDiffCells bounds the work of a statement line diff (lines × lines);
// larger statements are shown as wholly removed and added.
const maxDiffCells = 1 << 22

func newPolicyDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show what changed between two policies, for the reviewers",
		Long: `Compare policy OLD with policy NEW and print, for the admins who review and
sign NEW, what changed in what the policy allows: the timezone, the clients,
the operations added and removed, and for each changed operation its
description, mode, subject binding, every parameter rule (added, removed or
changed), the statement (a line diff), the tables and columns it may read,
insert or update, masks, rate limits, approval and row limit. Comments and
layout are not compared. Both files must load.

Lines start with '+' (added), '-' (removed) or '~' (changed); a changed
value reads "old -> new", "(none)" standing for absent.

Exit codes: 0 the policies are the same, 1 they differ, 2 a file does not
load or bad usage.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyDiff(args[0], args[1], g.stdout, g.stderr)
		},
	}
}

func runPolicyDiff(oldPath, newPath string, out, errOut io.Writer) error {
	var pols [2]*policy.Policy
	var bad []string
	for i, path := range []string{oldPath, newPath} {
		data, err := config.ReadFile(path)
		if err == nil {
			pols[i], err = policy.Parse(path, data)
		}
		if err != nil {
			for _, e := range splitErrors(err) {
				fmt.Fprintln(errOut, e.Error())
			}
			bad = append(bad, path)
		}
	}
	if len(bad) > 0 {
		// Exit 2, as diff(1) does when it cannot compare.
		verb := "does"
		if len(bad) > 1 {
			verb = "do"
		}
		return &usageError{fmt.Errorf("cannot compare: %s %s not load", strings.Join(bad, " and "), verb)}
	}
	lines := diffPolicies(pols[0], pols[1])
	if len(lines) == 0 {
		fmt.Fprintf(out, "no changes: %s and %s allow the same\n", oldPath, newPath)
		return nil
	}
	fmt.Fprintf(out, "--- %s\n+++ %s\n", oldPath, newPath)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return fmt.Errorf("%s and %s: %w", oldPath, newPath, errPoliciesDiffer)
}

// diffPolicies returns the differences from a to b as lines, in a fixed
// order: timezone, clients (removed in a's order, then added or changed in
// b's), operations (likewise), then a summary line.
func diffPolicies(a, b *policy.Policy) []string {
	var out []string
	if a.Timezone != b.Timezone {
		out = append(out, fmt.Sprintf("~ timezone: %s -> %s", a.Timezone, b.Timezone))
	}

	for _, ca := range a.Clients {
		if _, ok := b.Client(ca.Name); !ok {
			out = append(out, fmt.Sprintf("- client %s (asserts_subject: %t)", ca.Name, ca.AssertsSubject))
		}
	}
	for _, cb := range b.Clients {
		ca, ok := a.Client(cb.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("+ client %s (asserts_subject: %t)", cb.Name, cb.AssertsSubject))
		case ca.AssertsSubject != cb.AssertsSubject:
			out = append(out, fmt.Sprintf("~ client %s: asserts_subject %t -> %t", cb.Name, ca.AssertsSubject, cb.AssertsSubject))
		}
	}

	catA, catB := catalogueOps(a), catalogueOps(b)
	var added, removed, changed int
	for _, oa := range a.Operations {
		if _, ok := b.Operation(oa.Name); !ok {
			removed++
			out = append(out, fmt.Sprintf("- operation %s (%s)", oa.Name, oa.Mode))
		}
	}
	for _, ob := range b.Operations {
		oa, ok := a.Operation(ob.Name)
		if !ok {
			added++
			out = append(out, fmt.Sprintf("+ operation %s", ob.Name))
			out = append(out, describeOperation(ob, catB[ob.Name])...)
			continue
		}
		if d := diffOperation(oa, ob, catA[oa.Name], catB[ob.Name]); len(d) > 0 {
			changed++
			out = append(out, fmt.Sprintf("~ operation %s", ob.Name))
			out = append(out, d...)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append(out, fmt.Sprintf("operations: %d added, %d removed, %d changed", added, removed, changed))
}

// catalogueOps indexes a policy's catalogue operations, which render every
// parameter rule as the policy writes it.
func catalogueOps(p *policy.Policy) map[string]policy.CatalogueOperation {
	m := map[string]policy.CatalogueOperation{}
	for _, co := range p.Catalogue().Operations {
		m[co.Name] = co
	}
	return m
}

// field is one comparable property of an operation or parameter.
type field struct {
	key, value string // value "" is absent
}

// operationFields lists an operation's properties other than its
// parameters and statement, in a fixed order.
func operationFields(op *policy.Operation, co policy.CatalogueOperation) []field {
	f := []field{
		{"description", quoteNonEmpty(op.Description)},
		{"mode", string(op.Mode)},
		{"subject", op.Subject},
	}
	if op.Mode == policy.ModeRead {
		f = append(f, field{"max_rows", strconv.Itoa(op.MaxRows)})
	}
	f = append(f,
		field{"limits.per_subject", op.Limits.PerSubject.String()},
		field{"limits.per_client", op.Limits.PerClient.String()},
	)
	if co.Approval != nil {
		f = append(f, field{"approval.within", co.Approval.Within})
	}
	f = append(f, tableFields("reads", op.Reads)...)
	if op.Inserts != nil {
		f = append(f, field{"inserts", setText(op.Inserts)})
	}
	f = append(f, tableFields("updates", op.Updates)...)
	for _, col := range sortedKeys(op.Mask) {
		f = append(f, field{"mask." + col, op.Mask[col]})
	}
	return f
}

// tableFields renders a table → columns declaration, one field per table;
// a declared but empty mapping ({}) is one field of its own.
func tableFields(key string, m map[string][]string) []field {
	if m == nil {
		return nil
	}
	if len(m) == 0 {
		return []field{{key, "{}"}}
	}
	var f []field
	for _, t := range sortedKeys(m) {
		f = append(f, field{key + "." + t, setText(m[t])})
	}
	return f
}

// paramFields lists a parameter's rules in a fixed order.
func paramFields(cp policy.CatalogueParam) []field {
	f := []field{
		{"type", cp.Type},
		{"required", strconv.FormatBool(cp.Required)},
		{"description", quoteNonEmpty(cp.Description)},
		{"max_len", intNonZero(cp.MaxLen)},
		{"pattern", quoteNonEmpty(cp.Pattern)},
		{"min", string(cp.Min)},
		{"max", string(cp.Max)},
		{"max_days", intNonZero(cp.MaxDays)},
		{"example", string(cp.Example)},
	}
	if cp.Values != nil {
		quoted := make([]string, len(cp.Values))
		for i, v := range cp.Values {
			quoted[i] = strconv.Quote(v)
		}
		f = append(f, field{"values", "[" + strings.Join(quoted, ", ") + "]"})
	}
	return f
}

// describeOperation lists a new operation in full.
func describeOperation(op *policy.Operation, co policy.CatalogueOperation) []string {
	var out []string
	for _, f := range operationFields(op, co) {
		if f.value != "" {
			out = append(out, fmt.Sprintf("    %s: %s", f.key, f.value))
		}
	}
	for _, cp := range co.Params {
		out = append(out, fmt.Sprintf("    param %s: %s", cp.Name, paramText(cp)))
	}
	out = append(out, "    statement:")
	for _, l := range statementLines(op.Statement) {
		out = append(out, "      +"+l)
	}
	return out
}

// paramText renders every rule a parameter sets on one line.
func paramText(cp policy.CatalogueParam) string {
	var parts []string
	for _, f := range paramFields(cp) {
		if f.value != "" {
			parts = append(parts, f.key+" "+f.value)
		}
	}
	return strings.Join(parts, ", ")
}

// diffOperation lists what changed from a to b (same name); nil if
// nothing did.
func diffOperation(a, b *policy.Operation, ca, cb policy.CatalogueOperation) []string {
	var out []string
	out = append(out, diffFields("    ", "", operationFields(a, ca), operationFields(b, cb))...)

	paramsA := map[string]policy.CatalogueParam{}
	var orderA, orderB []string
	for _, cp := range ca.Params {
		paramsA[cp.Name] = cp
		orderA = append(orderA, cp.Name)
	}
	paramsB := map[string]bool{}
	for _, cp := range cb.Params {
		paramsB[cp.Name] = true
		orderB = append(orderB, cp.Name)
	}
	for _, cp := range ca.Params {
		if !paramsB[cp.Name] {
			out = append(out, fmt.Sprintf("    - param %s: %s", cp.Name, paramText(cp)))
		}
	}
	for _, cp := range cb.Params {
		old, ok := paramsA[cp.Name]
		if !ok {
			out = append(out, fmt.Sprintf("    + param %s: %s", cp.Name, paramText(cp)))
			continue
		}
		out = append(out, diffFields("    ", "param "+cp.Name+": ", paramFields(old), paramFields(cp))...)
	}
	// Declaration order is what clients are shown; report a reordering of
	// the parameters both keep.
	keptA := slices.DeleteFunc(slices.Clone(orderA), func(n string) bool { return !paramsB[n] })
	keptB := slices.DeleteFunc(slices.Clone(orderB), func(n string) bool { _, ok := paramsA[n]; return !ok })
	if !slices.Equal(keptA, keptB) {
		out = append(out, fmt.Sprintf("    ~ params order: %s -> %s", strings.Join(keptA, ", "), strings.Join(keptB, ", ")))
	}

	if a.Statement != b.Statement {
		out = append(out, "    ~ statement:")
		for _, l := range lineDiff(statementLines(a.Statement), statementLines(b.Statement)) {
			out = append(out, "      "+l)
		}
	}
	return out
}

// diffFields compares two field lists; keys absent from one side count as
// absent values.
func diffFields(indent, prefix string, a, b []field) []string {
	va := map[string]string{}
	var keys []string
	for _, f := range a {
		va[f.key] = f.value
		keys = append(keys, f.key)
	}
	vb := map[string]string{}
	for _, f := range b {
		vb[f.key] = f.value
		if _, ok := va[f.key]; !ok {
			keys = append(keys, f.key)
		}
	}
	var out []string
	for _, k := range keys {
		x, y := va[k], vb[k]
		switch {
		case x == y:
		case x == "":
			out = append(out, fmt.Sprintf("%s+ %s%s: %s", indent, prefix, k, y))
		case y == "":
			out = append(out, fmt.Sprintf("%s- %s%s: %s", indent, prefix, k, x))
		default:
			out = append(out, fmt.Sprintf("%s~ %s%s: %s -> %s", indent, prefix, k, x, y))
		}
	}
	return out
}

// statementLines splits a statement into lines without the final newline.
func statementLines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

// lineDiff returns b's lines against a's, each prefixed with ' ' (kept),
// '-' (only in a) or '+' (only in b), from a longest common subsequence.
func lineDiff(a, b []string) []string {
	if len(a)*len(b) > maxDiffCells {
		var out []string
		for _, l := range a {
			out = append(out, "-"+l)
		}
		for _, l := range b {
			out = append(out, "+"+l)
		}
		return out
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, " "+a[i])
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "-"+a[i])
			i++
		default:
			out = append(out, "+"+b[j])
			j++
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// setText renders a set of names, sorted, as [a, b].
func setText(l []string) string {
	return "[" + strings.Join(slices.Sorted(slices.Values(l)), ", ") + "]"
}

func quoteNonEmpty(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

func intNonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}
