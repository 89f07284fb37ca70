package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
)

// Subjects of the query fixture: ID numbers that must never be printed.
const (
	subjectA = "7801011234"
	subjectB = "8502029876"
	subjectC = "9003035555"
)

// queryFixture is a zone's audit log of known entries, with its keys.
type queryFixture struct {
	dir     string        // the audit directory, holding audit.db
	file    string        // audit.db
	pub     string        // audit.pub
	hmacKey string        // audit-hmac.key (0600)
	entries []audit.Entry // what was appended, index by index, times as stored
	hasher  *audit.Hasher
}

// at returns 2026-11-d at hh:00 UTC.
func at(d, hh int) time.Time { return time.Date(2026, 11, d, hh, 0, 0, 0, time.UTC) }

// newQueryFixture writes a log of zone dmz holding entries of every kind
// the report counts, mostly in November 2026, some just outside it; the
// first, dated January 2025, is pruned. Then it signs a checkpoint.
func newQueryFixture(t *testing.T) *queryFixture {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	keyDir := filepath.Join(root, "keys")
	if err := keys.GenerateAudit(keyDir, "dmz"); err != nil {
		t.Fatal(err)
	}
	ak, err := keys.LoadAudit(keyDir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	h, err := audit.NewHasher(ak.HMACKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &queryFixture{dir: filepath.Join(root, "audit"), pub: filepath.Join(keyDir, keys.AuditPubFile),
		hmacKey: filepath.Join(keyDir, keys.AuditHMACKeyFile), hasher: h}
	if err := os.Mkdir(f.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.file = filepath.Join(f.dir, audit.FileName)
	log, err := audit.OpenLog(ctx, f.file, "dmz", ak.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()

	A, B, C := h.Subject(subjectA), h.Subject(subjectB), h.Subject(subjectC)
	acc, ref, dec := audit.EventRequestAccepted, audit.EventRequestRefused, audit.EventPolicyDecision
	const vq, hq = "violations.query", "vehicles.query"
	f.entries = []audit.Entry{
		/* 0 */ {Time: time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC), Event: acc, Operation: vq, Subject: A, Request: "r0"}, // pruned
		/* 1 */ {Time: time.Date(2026, 10, 31, 23, 59, 59, 999e6, time.UTC), Event: acc, Actor: "app", Operation: vq, Subject: A, Request: "r1"},
		/* 2 */ {Time: at(1, 0), Event: acc, Actor: "app", Operation: vq, Subject: A, Request: "r2"},
		/* 3 */ {Time: at(2, 8), Event: acc, Actor: "app", Operation: hq, Subject: B, Request: "r3"},
		/* 4 */ {Time: at(2, 9), Event: ref, Actor: "app", Operation: vq, Reason: "rate_limited"},
		/* 5 */ {Time: at(3, 9), Event: ref, Count: 5, Detail: "refusals beyond the audit queue, recorded as a count"},
		/* 6 */ {Time: at(3, 10), Event: ref, Actor: "app", Operation: hq, Reason: "bad_request"},
		/* 7 */ {Time: at(4, 0), Event: audit.EventEnvelopeSealed, Envelope: "e1", Channel: "requests", Seq: 1, Count: 2},
		/* 8 */ {Time: at(4, 1), Event: audit.EventEnvelopePublished, Envelope: "e1", Count: 1},
		/* 9 */ {Time: at(5, 0), Event: dec, Actor: "app", Request: "r2", Envelope: "e1", Operation: vq, Decision: "done", Rows: 3, Subject: A},
		/* 10 */ {Time: at(5, 1), Event: dec, Actor: "app", Request: "r3", Envelope: "e1", Operation: hq, Decision: "rejected", Reason: "not_allowed", Subject: B},
		/* 11 */ {Time: at(6, 0), Event: dec, Actor: "app", Request: "r4", Operation: vq, Decision: "rejected", Reason: "rate_limited", Subject: A},
		/* 12 */ {Time: at(6, 1), Event: audit.EventQuarantined, Reason: "bad_signature", Detail: "x.env"},
		/* 13 */ {Time: at(7, 0), Event: audit.EventQuarantined, Reason: "bad_signature", Detail: "y.env"},
		/* 14 */ {Time: at(7, 1), Event: audit.EventQuarantined, Reason: "expired", Detail: "z.env"},
		/* 15 */ {Time: at(8, 0), Event: audit.EventEnvelopeOpened, Envelope: "e2", Channel: "results", Seq: 1, Count: 2},
		/* 16 */ {Time: at(8, 1), Event: audit.EventEnvelopeExpired, Envelope: "e0"},
		/* 17 */ {Time: at(9, 0), Event: audit.EventAck, Envelope: "e1"},
		/* 18 */ {Time: at(10, 0), Event: audit.EventAdmin, Actor: "alice", Decision: "queue.retry", Envelope: "e0", Count: 3},
		/* 19 */ {Time: at(10, 1), Event: audit.EventAdmin, Actor: "alice", Decision: "queue.retry", Envelope: "e3", Count: 2},
		/* 20 */ {Time: at(11, 0), Event: audit.EventAdmin, Actor: "bob", Decision: "queue.drop", Envelope: "e4", Count: 1},
		/* 21 */ {Time: at(12, 0), Event: audit.EventGap, Channel: "requests", Detail: "seq 4 to 6"},
		/* 22 */ {Time: time.Date(2026, 11, 30, 23, 59, 59, 999e6, time.UTC), Event: dec, Actor: "app", Request: "r5", Operation: vq, Decision: "done", Subject: C},
		/* 23 */ {Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Event: acc, Actor: "app", Operation: vq, Subject: A, Request: "r6"},
	}
	// 24-34: eleven more subjects with one entry each, for the top 10.
	for i := range 11 {
		f.entries = append(f.entries, audit.Entry{Time: at(15, i), Event: audit.EventResultReceived, Request: fmt.Sprintf("s%d", i),
			Decision: "done", Subject: h.Subject(fmt.Sprintf("99%08d", i))})
	}
	for i := range f.entries {
		f.entries[i].Zone = "dmz"
		if _, err := log.Append(ctx, f.entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := log.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// The first entry's body pruned as Log.Prune does it, without the
	// audit.pruned entry Prune appends: dated now, that entry would fall
	// into this fixture's periods on some days and not on others.
	log.Close()
	tamperAudit(t, f.file, `UPDATE audit_entries SET body = NULL WHERE time < `+
		strconv.FormatInt(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), 10))
	return f
}

// indexes returns the index at the start of each line of text output.
func indexes(t *testing.T, stdout string) []int64 {
	t.Helper()
	var out []int64
	for line := range strings.Lines(stdout) {
		field, _, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			t.Fatalf("line %q does not start with an index:\n%s", line, stdout)
		}
		out = append(out, n)
	}
	return out
}

func TestAuditSearch(t *testing.T) {
	f := newQueryFixture(t)
	for _, tc := range []struct {
		name string
		args []string
		want []int64
	}{
		{"operation", []string{"--operation", "vehicles.query"}, []int64{3, 6, 10}},
		{"event", []string{"--event", "envelope.quarantined"}, []int64{12, 13, 14}},
		{"decision", []string{"--decision", "rejected"}, []int64{10, 11}},
		{"reason", []string{"--reason", "bad_signature"}, []int64{12, 13}},
		{"request", []string{"--request", "r2"}, []int64{2, 9}},
		{"all of them", []string{"--operation", "violations.query", "--event", "policy.decision", "--decision", "done"}, []int64{9, 22}},
		{"since a date", []string{"--event", "request.accepted", "--since", "2026-11-01"}, []int64{2, 3, 23}},
		{"until a date, exclusive", []string{"--event", "request.accepted", "--until", "2026-12-01"}, []int64{1, 2, 3}},
		{"since and until RFC 3339", []string{"--since", "2026-11-30T23:59:59.999Z", "--until", "2026-12-01T00:00:00.001Z"}, []int64{22, 23}},
		{"with an offset", []string{"--since", "2026-11-02T09:30:00+01:00", "--until", "2026-11-02T10:30:00+01:00"}, []int64{4}},
		{"subject", []string{"--subject", subjectA, "--hmac-key", f.hmacKey}, []int64{1, 2, 9, 11, 23}},
		{"subject in November", []string{"--subject", subjectA, "--hmac-key", f.hmacKey, "--since", "2026-11-01", "--until", "2026-12-01"}, []int64{2, 9, 11}},
		{"subject and decision", []string{"--subject", subjectB, "--hmac-key", f.hmacKey, "--decision", "rejected"}, []int64{10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _ := mustFerryctl(t, 0, append([]string{"audit", "search", f.dir}, tc.args...)...)
			// Index 0 was pruned: the text says so when it is in the period.
			stdout = strings.TrimSuffix(stdout, "(1 entry in the period pruned after the retention period: not searched)\n")
			if got := indexes(t, stdout); !slices.Equal(got, tc.want) {
				t.Errorf("matched %v, want %v:\n%s", got, tc.want, stdout)
			}
			for _, id := range []string{subjectA, subjectB, subjectC} {
				if strings.Contains(stdout, id) {
					t.Errorf("output holds the ID number %s", id)
				}
			}
			for line := range strings.Lines(stdout) {
				i, _, _ := strings.Cut(line, " ")
				n, _ := strconv.Atoi(i)
				if line != formatEntry(int64(n), f.entries[n])+"\n" {
					t.Errorf("line %q, want formatEntry's", line)
				}
			}

			stdout, _ = mustFerryctl(t, 0, append([]string{"audit", "search", f.file, "--json"}, tc.args...)...)
			var got []int64
			for line := range strings.Lines(stdout) {
				var e auditEntryJSON
				dec := json.NewDecoder(strings.NewReader(line))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&e); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				want := f.entries[e.Index]
				if !e.Time.Equal(want.Time) {
					t.Errorf("--json line %s: time, want %v", line, want.Time)
				}
				if e.Time = want.Time; e.Entry != want {
					t.Errorf("--json line %s, want %+v", line, want)
				}
				got = append(got, e.Index)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("--json matched %v, want %v:\n%s", got, tc.want, stdout)
			}
		})
	}

	t.Run("no match", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "search", f.dir, "--operation", "nothing.query", "--since", "2026-01-01")
		if stdout != "no entries match\n" {
			t.Errorf("stdout %q", stdout)
		}
		stdout, _ = mustFerryctl(t, 0, "audit", "search", f.dir, "--operation", "nothing.query", "--json")
		if stdout != "" {
			t.Errorf("--json: stdout %q, want nothing", stdout)
		}
		stdout, _ = mustFerryctl(t, 0, "audit", "search", f.dir, "--until", "2025-02-01")
		if stdout != "no entries match\n(1 entry in the period pruned after the retention period: not searched)\n" {
			t.Errorf("pruned period: stdout %q", stdout)
		}
	})

	t.Run("another hmac key", func(t *testing.T) {
		keyDir := filepath.Join(t.TempDir(), "keys")
		if err := keys.GenerateAudit(keyDir, "dmz"); err != nil {
			t.Fatal(err)
		}
		stdout, _ := mustFerryctl(t, 0, "audit", "search", f.dir, "--subject", subjectA, "--hmac-key", filepath.Join(keyDir, keys.AuditHMACKeyFile))
		if stdout != "no entries match\n(1 entry in the period pruned after the retention period: not searched)\n" {
			t.Errorf("stdout %q", stdout)
		}
	})

	t.Run("hmac key files", func(t *testing.T) {
		data, err := os.ReadFile(f.hmacKey)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for _, tc := range []struct {
			name   string
			data   string
			mode   os.FileMode
			stderr string
		}{
			{"loose", string(data), 0o644, `audit-hmac.key: .*mode 0644, want 0600`},
			{"group readable", string(data), 0o640, `mode 0640, want 0600`},
			{"uppercase", strings.ToUpper(string(data)), 0o600, `not an audit hmac key: want 64 lowercase hex digits`},
			{"short", string(data[:62]) + "\n", 0o600, `not an audit hmac key`},
			{"two newlines", string(data) + "\n", 0o600, `not an audit hmac key`},
			{"empty", "", 0o600, `not an audit hmac key`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file := filepath.Join(dir, tc.name, "audit-hmac.key")
				if err := os.Mkdir(filepath.Dir(file), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, file, []byte(tc.data), tc.mode)
				stdout, stderr := mustFerryctl(t, 1, "audit", "search", f.dir, "--subject", subjectA, "--hmac-key", file)
				if stdout != "" {
					t.Errorf("stdout %q, want nothing", stdout)
				}
				matches(t, "stderr", stderr, `^ferryctl: error: `)
				matches(t, "stderr", stderr, tc.stderr)
				if strings.Contains(stderr, subjectA) {
					t.Errorf("stderr holds the ID number: %s", stderr)
				}
			})
		}
		_, stderr := mustFerryctl(t, 1, "audit", "search", f.dir, "--subject", subjectA, "--hmac-key", filepath.Join(dir, "absent"))
		matches(t, "stderr", stderr, `private key file .*/absent is missing`)
	})

	t.Run("not an entry", func(t *testing.T) {
		g := newQueryFixture(t)
		tamperAudit(t, g.file, `UPDATE audit_entries SET body = CAST('not json' AS BLOB) WHERE idx = 13`)
		stdout, stderr := mustFerryctl(t, 1, "audit", "search", g.dir, "--event", "envelope.quarantined", "--since", "2026-01-01")
		if got := indexes(t, stdout); !slices.Equal(got, []int64{12, 14}) {
			t.Errorf("matched %v, want the entries around the bad one", got)
		}
		matches(t, "stderr", stderr, `audit search: 1 stored bodies in .*audit.db are not audit entries \(the first at index 13\)\nhint: the file was altered`)
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{},
			{f.dir, f.dir},
			{f.dir, "--subject", subjectA},
			{f.dir, "--subject", "", "--hmac-key", f.hmacKey},
			{f.dir, "--hmac-key", f.hmacKey},
			{f.dir, "--event", "request.accept"},
			{f.dir, "--since", "yesterday"},
			{f.dir, "--until", "2026-13-01"},
			{f.dir, "--since", "2026-11-02", "--until", "2026-11-01"},
			{f.dir, "--since", "2026-11-01", "--until", "2026-11-01"},
			{f.dir, "--nonsense"},
		} {
			mustFerryctl(t, 2, append([]string{"audit", "search"}, args...)...)
		}
		_, stderr := mustFerryctl(t, 1, "audit", "search", filepath.Join(f.dir, "nothing"))
		matches(t, "stderr", stderr, `audit log .*/nothing: no such file or directory`)
	})
}

// exportLines decodes the lines of audit export: entries by index, and
// the indexes of pruned lines.
func exportLines(t *testing.T, out string) (entries map[int64]audit.Entry, order []int64, pruned []int64) {
	t.Helper()
	entries = map[int64]audit.Entry{}
	for line := range strings.Lines(out) {
		var probe map[string]any
		if err := json.Unmarshal([]byte(line), &probe); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if probe["pruned"] == true {
			var p auditPrunedJSON
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatal(err)
			}
			pruned = append(pruned, p.Index)
			order = append(order, p.Index)
			continue
		}
		var e auditEntryJSON
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		entries[e.Index] = e.Entry
		order = append(order, e.Index)
	}
	return entries, order, pruned
}

func TestAuditExport(t *testing.T) {
	f := newQueryFixture(t)

	t.Run("round trip", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "export", f.dir, "--format", "jsonl")
		entries, order, pruned := exportLines(t, stdout)
		if len(order) != len(f.entries) || !slices.IsSorted(order) || order[0] != 0 || order[len(order)-1] != int64(len(f.entries)-1) {
			t.Fatalf("%d lines in order %v, want the log's %d entries in order", len(order), order, len(f.entries))
		}
		if !slices.Equal(pruned, []int64{0}) {
			t.Errorf("pruned lines %v, want [0]", pruned)
		}
		for i, want := range f.entries[1:] {
			got := entries[int64(i+1)]
			if !got.Time.Equal(want.Time) {
				t.Errorf("entry %d: time %v, want %v", i+1, got.Time, want.Time)
			}
			got.Time = want.Time
			if got != want {
				t.Errorf("entry %d: %+v, want %+v", i+1, got, want)
			}
		}
		// The same shape as show --json, entry lines byte for byte.
		show, _ := mustFerryctl(t, 0, "audit", "show", f.dir, "--json")
		if !strings.HasPrefix(show, stdout) {
			t.Errorf("export is not show --json's entry lines:\n%s\n%s", stdout, show)
		}

		out := filepath.Join(t.TempDir(), "audit.jsonl")
		msg, _ := mustFerryctl(t, 0, "audit", "export", f.file, "--format", "jsonl", "-o", out)
		if msg != fmt.Sprintf("%d entries exported to %s\n", len(f.entries), out) {
			t.Errorf("-o printed %q", msg)
		}
		data, err := os.ReadFile(out)
		if err != nil || string(data) != stdout {
			t.Errorf("-o wrote other bytes than standard output (%v)", err)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*tmp*")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})

	t.Run("period", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "export", f.dir, "--format", "jsonl", "--since", "2026-11-01", "--until", "2026-11-30T23:59:59.999Z")
		_, order, _ := exportLines(t, stdout)
		want := []int64{}
		for i := int64(2); i <= 21; i++ {
			want = append(want, i)
		}
		for i := int64(24); i < int64(len(f.entries)); i++ {
			want = append(want, i)
		}
		if !slices.Equal(order, want) {
			t.Errorf("exported %v, want %v", order, want)
		}
		stdout, _ = mustFerryctl(t, 0, "audit", "export", f.dir, "--format", "jsonl", "--until", "2026-01-01")
		if _, order, pruned := exportLines(t, stdout); !slices.Equal(order, []int64{0}) || len(pruned) != 1 {
			t.Errorf("2025: %s", stdout)
		}
	})

	t.Run("not an entry", func(t *testing.T) {
		g := newQueryFixture(t)
		tamperAudit(t, g.file, `UPDATE audit_entries SET body = CAST('not json' AS BLOB) WHERE idx = 5`)
		stdout, stderr := mustFerryctl(t, 1, "audit", "export", g.dir, "--format", "jsonl")
		lines := slices.Collect(strings.Lines(stdout))
		if len(lines) != len(g.entries) {
			t.Fatalf("%d lines, want %d", len(lines), len(g.entries))
		}
		var bad auditBadEntryJSON
		if err := json.Unmarshal([]byte(lines[5]), &bad); err != nil || bad.Index != 5 || bad.Body != "not json" || bad.Error == "" {
			t.Errorf("line 5: %s (%v)", lines[5], err)
		}
		matches(t, "stderr", stderr, `audit export: 1 stored bodies .* \(the first at index 5\)`)
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{f.dir},
			{f.dir, "--format", "csv"},
			{f.dir, "--format", "json"},
			{f.dir, "--format", "jsonl", "--since", "last week"},
			{f.dir, "--format", "jsonl", "--since", "2026-11-02", "--until", "2026-11-01"},
			{"--format", "jsonl"},
		} {
			mustFerryctl(t, 2, append([]string{"audit", "export"}, args...)...)
		}
		_, stderr := mustFerryctl(t, 1, "audit", "export", f.dir, "--format", "jsonl", "-o", filepath.Join(t.TempDir(), "no", "such", "dir", "x.jsonl"))
		matches(t, "stderr", stderr, `audit export: write .*x\.jsonl: `)
	})
}

// novemberReport is the report of the query fixture for November 2026
// (without File and Verification).
func novemberReport(f *queryFixture) auditSecurityReport {
	subjects := []auditReportSubject{{f.hasher.Subject(subjectA), 3}, {f.hasher.Subject(subjectB), 2}}
	var ones []auditReportSubject
	ones = append(ones, auditReportSubject{f.hasher.Subject(subjectC), 1})
	for i := range 11 {
		ones = append(ones, auditReportSubject{f.hasher.Subject(fmt.Sprintf("99%08d", i)), 1})
	}
	slices.SortFunc(ones, func(a, b auditReportSubject) int { return strings.Compare(a.Subject, b.Subject) })
	return auditSecurityReport{
		Zone: "dmz", From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Entries: 32, Pruned: 0, Unreadable: 0,
		Accepted:    map[string]int64{"violations.query": 1, "vehicles.query": 1},
		Decisions:   map[string]map[string]int64{"violations.query": {"done": 2, "rejected": 1}, "vehicles.query": {"rejected": 1}},
		Refused:     map[string]int64{"rate_limited": 1, "unspecified": 5, "bad_request": 1},
		Rejected:    map[string]int64{"not_allowed": 1, "rate_limited": 1},
		RateLimited: 2,
		Quarantined: map[string]int64{"bad_signature": 2, "expired": 1},
		Envelopes:   auditReportEnvelopes{Sealed: 1, Published: 1, Opened: 1, Expired: 1},
		Acks:        1, Gaps: 1,
		Admin: []auditReportAdmin{
			{Actor: "alice", Action: "queue.retry", Actions: 2, Requests: 5},
			{Actor: "bob", Action: "queue.drop", Actions: 1, Requests: 1},
		},
		Subjects: append(subjects, ones[:8]...),
	}
}

// reportJSON runs audit report --json, expecting exit code want.
func reportJSON(t *testing.T, want int, args ...string) auditSecurityReport {
	t.Helper()
	stdout, _ := mustFerryctl(t, want, append([]string{"audit", "report", "--json"}, args...)...)
	var rep auditSecurityReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	return rep
}

func TestAuditReport(t *testing.T) {
	f := newQueryFixture(t)

	t.Run("november", func(t *testing.T) {
		got := reportJSON(t, 0, f.dir, "--from", "2026-11-01", "--to", "2026-12-01")
		if got.File != f.file || got.Verification.State != "not verified" {
			t.Errorf("file %q, verification %+v", got.File, got.Verification)
		}
		got.File, got.Verification = "", auditReportVerification{}
		if want := novemberReport(f); !reflect.DeepEqual(got, want) {
			t.Errorf("report\n%+v\nwant\n%+v", got, want)
		}

		got = reportJSON(t, 0, f.file, "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z", "--pubkey", f.pub)
		if got.Verification.State != "verified" || !strings.Contains(got.Verification.Message, "ferry.audit/dmz: 35 entries") {
			t.Errorf("verification %+v", got.Verification)
		}
	})

	t.Run("text", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "report", f.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--pubkey", f.pub)
		want := novemberReport(f)
		for _, line := range []string{
			"security report of zone dmz, 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z (" + f.file + ")\n",
			"  verification   verified (ferry.audit/dmz: 35 entries, newest checkpoint at size 35, 0 after it)\n",
			"  entries        32 in the period, 0 pruned (not counted below), 0 unreadable\n",
			"requests accepted (DMZ), per operation\n  vehicles.query   1\n  violations.query 1\n",
			"  vehicles.query   rejected 1\n",
			"  violations.query done 2, rejected 1\n",
			"  api            bad_request 1, rate_limited 1, unspecified 5\n",
			"  policy         not_allowed 1, rate_limited 1\n",
			"  rate-limited   2\n",
			"  bad_signature  2\n  expired        1\n",
			"  sealed         1\n",
			"  expired        1\n  acks           1\n  gaps           1\n",
			"  alice queue.retry: 2 actions on 5 requests\n  bob queue.drop: 1 action on 1 request\n",
			"high-frequency subjects (keyed hashes), top 10\n  " + want.Subjects[0].Subject + "  3 entries\n  " + want.Subjects[1].Subject + "  2 entries\n",
		} {
			if !strings.Contains(stdout, line) {
				t.Errorf("output lacks %q:\n%s", line, stdout)
			}
		}
		if n := strings.Count(stdout, "  1 entry\n"); n != 8 {
			t.Errorf("%d subjects with 1 entry, want 8 (top 10):\n%s", n, stdout)
		}
		for _, id := range []string{subjectA, subjectB, subjectC} {
			if strings.Contains(stdout, id) {
				t.Errorf("the report holds the ID number %s", id)
			}
		}
	})

	t.Run("bounds", func(t *testing.T) {
		// From the first instant of November to the 5th at 01:00,
		// exclusive: entries 2 to 9.
		got := reportJSON(t, 0, f.dir, "--from", "2026-11-01", "--to", "2026-11-05T01:00:00Z")
		if got.Entries != 8 || !reflect.DeepEqual(got.Accepted, map[string]int64{"violations.query": 1, "vehicles.query": 1}) ||
			!reflect.DeepEqual(got.Decisions, map[string]map[string]int64{"violations.query": {"done": 1}}) || got.RateLimited != 1 ||
			got.Envelopes != (auditReportEnvelopes{Sealed: 1, Published: 1}) || len(got.Admin) != 0 || len(got.Quarantined) != 0 {
			t.Errorf("report to the 5th at 01:00: %+v", got)
		}
		// The last millisecond of October holds entry 1 alone; 2025 the
		// pruned entry 0.
		got = reportJSON(t, 0, f.dir, "--from", "2026-10-31T23:59:59.999Z", "--to", "2026-11-01")
		if got.Entries != 1 || !reflect.DeepEqual(got.Accepted, map[string]int64{"violations.query": 1}) || len(got.Subjects) != 1 || got.Subjects[0].Entries != 1 {
			t.Errorf("last millisecond of October: %+v", got)
		}
		got = reportJSON(t, 0, f.dir, "--from", "2025-01-01", "--to", "2025-02-01")
		if got.Entries != 1 || got.Pruned != 1 || len(got.Accepted) != 0 || len(got.Subjects) != 0 || got.Zone != "" {
			t.Errorf("2025: %+v", got)
		}
		stdout, _ := mustFerryctl(t, 0, "audit", "report", f.dir, "--from", "2030-01-01", "--to", "2030-02-01")
		for _, want := range []string{"security report of zone (no entries), ", "  entries        0 in the period", "per operation\n  none\n", "admin actions\n  none\n"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("empty period: output lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("verification fails", func(t *testing.T) {
		g := newQueryFixture(t)
		tamperAudit(t, g.file, `UPDATE audit_entries SET body = CAST(replace(CAST(body AS TEXT), 'bad_signature', 'bad_signaturz') AS BLOB) WHERE idx = 12`)
		got := reportJSON(t, 1, g.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--pubkey", g.pub)
		if got.Verification.State != "failed" || !strings.HasPrefix(got.Verification.Message, "entry 12: altered") {
			t.Errorf("verification %+v", got.Verification)
		}
		stdout, stderr := mustFerryctl(t, 1, "audit", "report", g.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--pubkey", g.pub)
		matches(t, "stdout", stdout, `\n  verification   failed \(entry 12: altered`)
		matches(t, "stderr", stderr, `audit report: the log .* failed verification: entry 12: altered.*\nhint: `)
		// Without the key the counts are what the file holds.
		got = reportJSON(t, 0, g.dir, "--from", "2026-11-01", "--to", "2026-12-01")
		if got.Verification.State != "not verified" || got.Quarantined["bad_signaturz"] != 1 {
			t.Errorf("unverified: %+v", got)
		}

		keyDir := filepath.Join(t.TempDir(), "keys")
		if err := keys.GenerateAudit(keyDir, "dmz"); err != nil {
			t.Fatal(err)
		}
		got = reportJSON(t, 1, f.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--pubkey", filepath.Join(keyDir, keys.AuditPubFile))
		if got.Verification.State != "failed" {
			t.Errorf("another key: %+v", got.Verification)
		}
	})

	t.Run("not an entry", func(t *testing.T) {
		g := newQueryFixture(t)
		tamperAudit(t, g.file, `UPDATE audit_entries SET body = CAST('not json' AS BLOB) WHERE idx = 3`)
		got := reportJSON(t, 1, g.dir, "--from", "2026-11-01", "--to", "2026-12-01")
		if got.Unreadable != 1 || got.Entries != 31 || got.Accepted["vehicles.query"] != 0 {
			t.Errorf("report: %+v", got)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{f.dir},
			{f.dir, "--from", "2026-11-01"},
			{f.dir, "--to", "2026-12-01"},
			{f.dir, "--from", "2026-12-01", "--to", "2026-11-01"},
			{f.dir, "--from", "November", "--to", "2026-12-01"},
			{"--from", "2026-11-01", "--to", "2026-12-01"},
			{f.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--format", "csv"},
		} {
			mustFerryctl(t, 2, append([]string{"audit", "report"}, args...)...)
		}
		_, stderr := mustFerryctl(t, 1, "audit", "report", f.dir, "--from", "2026-11-01", "--to", "2026-12-01", "--pubkey", filepath.Join(f.dir, "absent.pub"))
		matches(t, "stderr", stderr, `absent.pub`)
	})
}
