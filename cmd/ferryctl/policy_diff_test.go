package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/sample"
)

func TestPolicyDiff_same(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, sample.Policy(), 0o644)
	// Comments and layout do not count.
	writeFile(t, b, []byte(strings.ReplaceAll(string(sample.Policy()), "  # ", "  #~ ")), 0o644)
	out, _ := mustFerryctl(t, 0, "policy", "diff", a, b)
	matches(t, "stdout", out, `^no changes: .*/a\.yaml and .*/b\.yaml allow the same\n$`)
}

// TestPolicyDiff_changes changes one of everything and checks the whole
// report, which is deterministic.
func TestPolicyDiff_changes(t *testing.T) {
	dir := t.TempDir()
	old := string(sample.Policy())
	s := replaceOnce(t, old, "timezone: Asia/Shanghai", "timezone: UTC")
	s = replaceOnce(t, s, "    asserts_subject: true\n", "    asserts_subject: false\n  - name: kiosk\n")
	s = replaceOnce(t, s, "description: traffic violations recorded against one of my vehicles", "description: violations of my vehicle")
	s = replaceOnce(t, s, "      ORDER BY v.occurred_at DESC, v.id\n", "      ORDER BY v.id\n      LIMIT 10\n")
	s = replaceOnce(t, s, "    max_rows: 100\n", "    max_rows: 50\n")
	s = replaceOnce(t, s, "      vehicles: [plate, owner]\n", "      vehicles: [owner, plate, brand]\n")
	s = replaceOnce(t, s, "      per_subject: 10/1m\n", "      per_subject: 5/1m\n      per_client: 100/1h\n")
	s = replaceOnce(t, s, "      mobile: mobile\n", "      mobile: full\n")
	s = replaceOnce(t, s, "      holder: name\n", "")
	s = replaceOnce(t, s, "        min: 1\n        max: 4\n        example: 1\n", "        min: 1\n        max: 5\n        example: 1\n")
	s = replaceOnce(t, s, "        description: first exam date to list (YYYY-MM-DD)\n", "        description: first exam date to list (YYYY-MM-DD)\n        min: '2026-01-01'\n")
	s = replaceOnce(t, s, "    description: driving-test slots with places left, for one subject\n    mode: read\n", "    description: driving-test slots with places left, for one subject\n    mode: read\n    subject: id_number\n")
	s = replaceOnce(t, s, "    params:\n      subject:\n", "    params:\n      id_number:\n        type: id_number\n        required: false\n      subject:\n")
	s = replaceOnce(t, s, "      WHERE s.subject = :subject\n", "      WHERE s.subject = :subject AND :id_number IS NOT NULL\n")
	s = s[:strings.Index(s, "  - name: exam.book")] + `  - name: exam.cancel
    mode: write
    params:
      slot_id: {type: int, min: 1}
    statement: UPDATE appointments SET slot_id = slot_id WHERE slot_id = :slot_id
    updates: {appointments: [slot_id]}
    reads: {appointments: [slot_id]}
    approval: {within: 3d}
`
	a, b := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	writeFile(t, a, []byte(old), 0o644)
	writeFile(t, b, []byte(s), 0o644)
	out, errOut := mustFerryctl(t, 1, "policy", "diff", a, b)
	want := `--- OLD
+++ NEW
~ timezone: Asia/Shanghai -> UTC
~ client portal: asserts_subject true -> false
+ client kiosk (asserts_subject: false)
- operation exam.book (write)
- operation licence.renew (write)
~ operation violations.query
    ~ description: "traffic violations recorded against one of my vehicles" -> "violations of my vehicle"
    ~ max_rows: 100 -> 50
    ~ reads.vehicles: [owner, plate] -> [brand, owner, plate]
    ~ statement:
       SELECT v.id, v.occurred_at, v.place, v.code, v.description, v.fine_yuan, v.points,
              CASE v.paid WHEN 1 THEN 'paid' ELSE 'unpaid' END AS payment
       FROM violations v
       JOIN vehicles ve ON ve.plate = v.plate
       WHERE ve.plate = :plate AND ve.owner = :id_number
      -ORDER BY v.occurred_at DESC, v.id
      +ORDER BY v.id
      +LIMIT 10
~ operation licence.status
    ~ limits.per_subject: 10/1m -> 5/1m
    + limits.per_client: 100/1h
    - mask.holder: name
    ~ mask.mobile: mobile -> full
~ operation exam.slots
    + subject: id_number
    + param id_number: type id_number, required false
    ~ param subject: max: 4 -> 5
    + param date_from: min: "2026-01-01"
    ~ statement:
       SELECT s.id AS slot_id, s.exam_date, s.start_time, s.centre, s.subject,
              s.capacity - (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id) AS remaining
       FROM exam_slots s
      -WHERE s.subject = :subject
      +WHERE s.subject = :subject AND :id_number IS NOT NULL
         AND (:date_from IS NULL OR s.exam_date >= :date_from)
         AND (:date_to IS NULL OR s.exam_date <= :date_to)
         AND s.capacity > (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id)
       ORDER BY s.exam_date, s.start_time, s.id
+ operation exam.cancel
    mode: write
    approval.within: 72h
    reads.appointments: [slot_id]
    updates.appointments: [slot_id]
    param slot_id: type int, required true, min 1
    statement:
      +UPDATE appointments SET slot_id = slot_id WHERE slot_id = :slot_id
operations: 1 added, 2 removed, 3 changed
`
	want = strings.Replace(strings.Replace(want, "OLD", a, 1), "NEW", b, 1)
	if out != want {
		t.Errorf("diff output:\n%s\nwant:\n%s", out, want)
	}
	matches(t, "stderr", errOut, `the policies differ`)

	// A parameter reordered, and the reverse direction.
	r := replaceOnce(t, old, `      id_number:
        type: id_number
        required: false
        description: the candidate's resident ID number; the subject's if left out
        example: '110101198001010010'
      slot_id:
        type: int
        description: a slot_id from exam.slots
        min: 1
        max: 999999999
        example: 1
`, `      slot_id:
        type: int
        description: a slot_id from exam.slots
        min: 1
        max: 999999999
        example: 1
      id_number:
        type: id_number
        required: false
        description: the candidate's resident ID number; the subject's if left out
        example: '110101198001010010'
`)
	writeFile(t, b, []byte(r), 0o644)
	out, _ = mustFerryctl(t, 1, "policy", "diff", a, b)
	matches(t, "stdout", out, `(?m)^~ operation exam\.book\n    ~ params order: id_number, slot_id -> slot_id, id_number\noperations: 0 added, 0 removed, 1 changed\n$`)
}

func TestPolicyDiff_errors(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, sample.Policy(), 0o644)
	writeFile(t, b, []byte("version: 2\noperations:\n  - name: A\n    mode: read\n    statement: SELECT 1\n"), 0o644)
	_, errOut := mustFerryctl(t, 2, "policy", "diff", a, b)
	matches(t, "stderr", errOut, `(?m)^.*/b\.yaml:1: version: must be 1$`)
	matches(t, "stderr", errOut, `(?m)^.*/b\.yaml:3: operations\[0\]\.name: `)
	matches(t, "stderr", errOut, `cannot compare: .*/b\.yaml does not load`)
	_, errOut = mustFerryctl(t, 2, "policy", "diff", filepath.Join(dir, "missing.yaml"), b)
	matches(t, "stderr", errOut, `cannot compare: .*/missing\.yaml and .*/b\.yaml do not load`)
	mustFerryctl(t, 2, "policy", "diff", a)
}

func TestLineDiff(t *testing.T) {
	for _, tc := range []struct {
		a, b, want string
	}{
		{"x", "x", " x"},
		{"a\nb\nc", "a\nc", " a|-b| c"},
		{"a\nc", "a\nb\nc", " a|+b| c"},
		{"a\nb", "c\nd", "-a|-b|+c|+d"},
		{"a\nb\nc\nd", "b\nx\nd", "-a| b|-c|+x| d"},
	} {
		got := strings.Join(lineDiff(strings.Split(tc.a, "\n"), strings.Split(tc.b, "\n")), "|")
		if got != tc.want {
			t.Errorf("lineDiff(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	big := slices.Repeat([]string{"x"}, 3000)
	if got := lineDiff(big, append(big, "y")); len(got) != 6001 {
		t.Errorf("large statements: %d lines, want all removed and added", len(got))
	}
}
