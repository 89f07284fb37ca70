package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/sample"
)

// sampleDir writes the sample policy, schema, test cases and a sample
// replica into a new directory.
func sampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"policy.yaml":       sample.Policy(),
		"schema.sql":        sample.Schema(),
		"policy_cases.yaml": sample.PolicyCases(),
	} {
		writeFile(t, filepath.Join(dir, name), data, 0o644)
	}
	if err := sample.WriteReplica(context.Background(), filepath.Join(dir, "replica.db")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// replaceOnce replaces old by new in s, failing the test unless old
// occurs exactly once.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%q occurs %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestPolicyLint_sample(t *testing.T) {
	dir := sampleDir(t)
	pol := filepath.Join(dir, "policy.yaml")
	db := filepath.Join(dir, "replica.db")

	out, _ := mustFerryctl(t, 0, "policy", "lint", "--schema", filepath.Join(dir, "schema.sql"), pol)
	matches(t, "stdout", out, `^.*/policy\.yaml: 5 operations, 0 errors, 0 warnings; statements proven against .*/schema\.sql\n$`)

	before := readBytes(t, db)
	out, _ = mustFerryctl(t, 0, "policy", "lint", "--replica", db, "--strict", pol)
	matches(t, "stdout", out, `^.*/policy\.yaml: 5 operations, 0 errors, 0 warnings; statements proven against .*/replica\.db\n$`)
	if !bytes.Equal(before, readBytes(t, db)) {
		t.Error("lint --replica changed the replica")
	}

	out, _ = mustFerryctl(t, 0, "policy", "lint", pol)
	matches(t, "stdout", out, `(?m)^note: statements were not proven`)
	matches(t, "stdout", out, `(?m)^.*/policy\.yaml: 5 operations, 0 errors, 0 warnings; statements not proven \(no --replica or --schema\)$`)

	_, errOut := mustFerryctl(t, 2, "policy", "lint", "--replica", db, "--schema", filepath.Join(dir, "schema.sql"), pol)
	matches(t, "stderr", errOut, `--replica and --schema are mutually exclusive`)
	_, errOut = mustFerryctl(t, 1, "policy", "lint", "--replica", filepath.Join(dir, "missing.db"), pol)
	matches(t, "stderr", errOut, `missing\.db: no such file`)
}

func TestPolicyLint_languageErrors(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "broken.yaml")
	writeFile(t, pol, []byte(`version: 2
operations:
  - name: A
    mode: reed
    params:
      x: {type: string}
    statement: SELECT :y
`), 0o644)
	out, errOut := mustFerryctl(t, 1, "policy", "lint", "--schema", filepath.Join(t.TempDir(), "unused.sql"), pol)
	// Every problem, each on its own line with its place, not just the first.
	for _, re := range []string{
		`(?m)^.*/broken\.yaml:1: version: must be 1$`,
		`(?m)^.*/broken\.yaml:3: operations\[0\]\.name: "A": `,
		`(?m)^.*/broken\.yaml:4: operations\[0\]\.mode: "reed": want read or write$`,
		`(?m)^.*/broken\.yaml:6: operations\[0\]\.params\.x\.max_len: required for type string$`,
		`(?m)^.*/broken\.yaml:7: operations\[0\]\.statement: placeholder :y is not a declared parameter$`,
		`(?m)^.*/broken\.yaml: 5 errors, 0 warnings; statements not proven \(the policy does not load\)$`,
	} {
		matches(t, "stdout", out, re)
	}
	matches(t, "stderr", errOut, `broken\.yaml: the policy has errors`)

	// A YAML problem stops the parse at the first one.
	writeFile(t, pol, []byte("version: 1\noperations: []\ncolour: red\n"), 0o644)
	out, _ = mustFerryctl(t, 1, "policy", "lint", pol)
	matches(t, "stdout", out, `(?m)^.*/broken\.yaml:3: colour: unknown key "colour"$`)
}

func TestPolicyLint_warnings(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	writeFile(t, pol, []byte("version: 1\noperations:\n  - name: one\n    mode: read\n    statement: SELECT 1\n"), 0o644)
	out, _ := mustFerryctl(t, 0, "policy", "lint", pol)
	matches(t, "stdout", out, `(?m)^.*/p\.yaml:3: operations\[0\]\.reads: .* \(warning\)$`)
	matches(t, "stdout", out, `(?m)^.*/p\.yaml: 1 operation, 0 errors, 1 warning; `)
	out, _ = mustFerryctl(t, 1, "policy", "lint", "--strict", pol)
	matches(t, "stdout", out, `(?m)^.*/p\.yaml:3: operations\[0\]\.reads: .*[^)]$`)
	matches(t, "stdout", out, `(?m)^.*/p\.yaml: 1 operation, 1 error, 0 warnings; `)
}

// TestPolicyLint_proof: a read statement that writes, or reads a column
// its operation does not list, is refused with the operation's name and
// the line of its statement, and so is a write that reads undeclared
// parent keys; every failing operation is listed.
func TestPolicyLint_proof(t *testing.T) {
	dir := sampleDir(t)
	base := string(sample.Policy())
	// A read whose statement writes through a CTE.
	bad := replaceOnce(t, base, `      SELECT s.id AS slot_id, s.exam_date, s.start_time, s.centre, s.subject,
             s.capacity - (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id) AS remaining
      FROM exam_slots s
      WHERE s.subject = :subject`, `      WITH x AS (SELECT 1) INSERT INTO appointments (slot_id, id_number)
      SELECT s.id, 'x'
      FROM exam_slots s
      WHERE s.subject = :subject`)
	// A read of a column the operation does not list.
	bad = replaceOnce(t, bad, `SELECT d.name AS holder, d.id_number, d.mobile,`, `SELECT d.name AS holder, d.id_number, d.mobile, d.birth_date,`)
	pol := filepath.Join(dir, "bad.yaml")
	writeFile(t, pol, []byte(bad), 0o644)
	// The statement keys of operations 1 and 2 (licence.status, exam.slots).
	var stmtLines []string
	for i, l := range strings.Split(bad, "\n") {
		if strings.TrimSpace(l) == "statement: |" {
			stmtLines = append(stmtLines, strconv.Itoa(i+1))
		}
	}
	if len(stmtLines) != 5 {
		t.Fatalf("found %d statements", len(stmtLines))
	}

	for _, against := range [][]string{
		{"--replica", filepath.Join(dir, "replica.db")},
		{"--schema", filepath.Join(dir, "schema.sql")},
	} {
		out, _ := mustFerryctl(t, 1, append([]string{"policy", "lint", pol}, against...)...)
		matches(t, "stdout", out, `(?m)^.*/bad\.yaml:`+stmtLines[1]+`: operations\[1\]\.statement: operation licence\.status: read statement not allowed: reads drivers\.birth_date$`)
		matches(t, "stdout", out, `(?m)^.*/bad\.yaml:`+stmtLines[2]+`: operations\[2\]\.statement: operation exam\.slots: read statement not allowed: is not read-only; .*inserts into appointments`)
		matches(t, "stdout", out, `(?m)^.*/bad\.yaml: 5 operations, 2 errors, 0 warnings; statements checked against `)
		if strings.Contains(out, "violations.query") || strings.Contains(out, "exam.book") {
			t.Errorf("operations that pass the proof are reported:\n%s", out)
		}
	}
}
