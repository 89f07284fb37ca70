package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// auditFixture is a zone's audit log, open for appending, with its keys.
type auditFixture struct {
	dir  string // the audit directory, holding audit.db
	file string // audit.db
	pub  string // audit.pub
	keys *keys.Audit
	log  *audit.Log
	cp   string // a file holding the checkpoint at size 30
}

// auditTestEntry returns the i-th test entry.
func auditTestEntry(i int, at time.Time) audit.Entry {
	e := audit.Entry{
		Time: at, Zone: "dmz", Event: audit.EventRequestAccepted, Actor: "app-backend",
		Request: fmt.Sprintf("%032x", i), Operation: "violations.query", Decision: "accepted",
		Subject: fmt.Sprintf("%032x", 1000+i), Rows: int64(i % 3),
	}
	if i == 4 {
		e.Event, e.Decision, e.Reason, e.Detail = audit.EventRequestRefused, "refused", "rate_limited", "over the limit\nfor=this client"
	}
	return e
}

// newAuditFixture makes audit keys for zone dmz with keys.GenerateAudit
// and a log of 33 entries: the first 3 dated 200 days ago and pruned,
// checkpoints at sizes 20 and 30, 2 entries after the newest, and the
// audit.pruned entry the pruning appends.
func newAuditFixture(t *testing.T) *auditFixture {
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
	f := &auditFixture{dir: filepath.Join(root, "audit"), pub: filepath.Join(keyDir, keys.AuditPubFile), keys: ak}
	if err := os.Mkdir(f.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.file = filepath.Join(f.dir, audit.FileName)
	f.log, err = audit.OpenLog(ctx, f.file, "dmz", ak.Signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := now.Add(-200 * 24 * time.Hour)
	for i := range 32 {
		at := now.Add(time.Duration(i-32) * time.Second)
		if i < 3 {
			at = old
		}
		if _, err := f.log.Append(ctx, auditTestEntry(i, at)); err != nil {
			t.Fatal(err)
		}
		if i == 19 || i == 29 {
			cp, err := f.log.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if i == 29 {
				f.cp = filepath.Join(root, "cp30")
				writeFile(t, f.cp, cp, 0o644)
			}
		}
	}
	if n, err := f.log.Prune(ctx, now.Add(-190*24*time.Hour)); err != nil || n != 3 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	return f
}

// tamperAudit runs SQL statements on an audit database directly, as
// someone with write access to the host would.
func tamperAudit(t *testing.T, file string, stmts ...string) {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), file, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// verifyJSON runs audit verify --json and decodes its output.
func verifyJSON(t *testing.T, want int, args ...string) auditVerifyJSON {
	t.Helper()
	stdout, _ := mustFerryctl(t, want, append([]string{"audit", "verify", "--json"}, args...)...)
	var out struct {
		auditVerifyJSON
		auditReportJSON
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	if strings.Contains(stdout, `"entries"`) { // a report, not a failure
		out.auditVerifyJSON.auditReportJSON = &out.auditReportJSON
	}
	return out.auditVerifyJSON
}

func TestAuditVerify(t *testing.T) {
	f := newAuditFixture(t)

	t.Run("verified", func(t *testing.T) {
		for _, where := range []string{f.dir, f.file} {
			stdout, _ := mustFerryctl(t, 0, "audit", "verify", where, "--pubkey", f.pub)
			for _, want := range []string{
				"audit log ferry.audit/dmz: verified (" + f.file + ")\n",
				"  entries      33, 3 pruned\n",
				"  checkpoints  2 stored, 0 known, all verified\n",
				"  uncommitted  3 (",
			} {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			matches(t, "stdout", stdout, `\n  newest       size 30, root [A-Za-z0-9+/]{43}=\n`)
		}
		out := verifyJSON(t, 0, f.dir, "--pubkey", f.pub, "--checkpoint", f.cp)
		r := out.auditReportJSON
		if !out.OK || out.Origin != "ferry.audit/dmz" || out.File != f.file || out.Failure != nil || r == nil ||
			r.Entries != 33 || r.Pruned != 3 || r.Checkpoints != 2 || r.Known != 1 || r.LatestSize != 30 || len(r.LatestRoot) != 44 || r.Uncommitted != 3 {
			t.Errorf("--json: %+v %+v", out, r)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		// The same zone's name under another key, and another zone's key.
		for _, zone := range []string{"dmz", "intranet"} {
			keyDir := filepath.Join(t.TempDir(), "keys")
			if err := keys.GenerateAudit(keyDir, zone); err != nil {
				t.Fatal(err)
			}
			stdout, stderr := mustFerryctl(t, 1, "audit", "verify", f.dir, "--pubkey", filepath.Join(keyDir, keys.AuditPubFile))
			matches(t, "stdout", stdout, `^FAIL: checkpoint at size 20: .*\(replaced or forged\)\n$`)
			matches(t, "stderr", stderr, `ferryctl: error: audit verify: the log .*audit.db failed verification\nhint: `)
		}
	})

	t.Run("files", func(t *testing.T) {
		empty := t.TempDir()
		notDB := filepath.Join(empty, "audit.db.txt")
		writeFile(t, notDB, []byte("not a database, not a database, not a database, not a database, not a database, not a database"), 0o644)
		garbage := filepath.Join(empty, "garbage.cp")
		writeFile(t, garbage, []byte("ferry.audit/dmz\n30\nnot a checkpoint\n"), 0o644)
		for _, tc := range []struct {
			name   string
			args   []string
			stdout string // regexp; "" for none
			stderr string // regexp
		}{
			{"no such directory", []string{filepath.Join(empty, "nowhere"), "--pubkey", f.pub}, "",
				`audit log .*/nowhere: no such file or directory`},
			{"directory without audit.db", []string{empty, "--pubkey", f.pub}, "",
				`audit log .*: the directory holds no audit.db\nhint: give the zone's audit directory`},
			{"not a database", []string{notDB, "--pubkey", f.pub}, "", `audit.db.txt`},
			{"no pubkey file", []string{f.dir, "--pubkey", filepath.Join(empty, "audit.pub")}, "",
				`key file .*/audit.pub is missing`},
			{"not an audit pubkey", []string{f.dir, "--pubkey", notDB}, "", `key file .*audit.db.txt`},
			{"no checkpoint file", []string{f.dir, "--pubkey", f.pub, "--checkpoint", filepath.Join(empty, "cp")}, "",
				`checkpoint file .*/cp is missing`},
			{"checkpoint file not a checkpoint", []string{f.dir, "--pubkey", f.pub, "--checkpoint", garbage},
				`^FAIL: known checkpoint .*/garbage.cp: `, `failed verification`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stdout, stderr := mustFerryctl(t, 1, append([]string{"audit", "verify"}, tc.args...)...)
				if tc.stdout == "" && stdout != "" {
					t.Errorf("stdout: %q, want nothing", stdout)
				} else if tc.stdout != "" {
					matches(t, "stdout", stdout, tc.stdout)
				}
				matches(t, "stderr", stderr, `^ferryctl: error: `)
				matches(t, "stderr", stderr, tc.stderr)
			})
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"audit", "verify", f.dir},
			{"audit", "verify", "--pubkey", f.pub},
			{"audit", "verify", f.dir, f.dir, "--pubkey", f.pub},
			{"audit", "verify", f.dir, "--pubkey", f.pub, "--nonsense"},
		} {
			mustFerryctl(t, 2, args...)
		}
	})
}

// TestAuditVerify_Tampering: each kind of tampering fails verify with exit
// 1 and a FAIL line naming the entry or checkpoint.
func TestAuditVerify_Tampering(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stmts     []string
		fail      string // the FAIL line's start
		entry, cp int64  // in --json; -1 for none
	}{
		{"one byte changed", []string{`UPDATE audit_entries SET body = CAST(replace(CAST(body AS TEXT), 'violations', 'violationz') AS BLOB) WHERE idx = 7`},
			"FAIL: entry 7: altered", 7, -1},
		{"entry deleted", []string{`DELETE FROM audit_entries WHERE idx = 12`}, "FAIL: entry 12: missing", 12, -1},
		{"checkpoint replaced", []string{`UPDATE audit_checkpoints SET note = (SELECT note FROM audit_checkpoints WHERE size = 20) WHERE size = 30`},
			"FAIL: checkpoint at size 30: ", -1, 30},
		{"truncated", []string{`DELETE FROM audit_entries WHERE idx >= 25`}, "FAIL: truncated", -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAuditFixture(t)
			tamperAudit(t, f.file, tc.stmts...)
			stdout, _ := mustFerryctl(t, 1, "audit", "verify", f.dir, "--pubkey", f.pub)
			if !strings.HasPrefix(stdout, tc.fail) {
				t.Errorf("stdout %q, want it to start with %q", stdout, tc.fail)
			}
			out := verifyJSON(t, 1, f.dir, "--pubkey", f.pub)
			fj := out.Failure
			if out.OK || fj == nil || out.auditReportJSON != nil || "FAIL: "+fj.Message != strings.TrimSuffix(stdout, "\n") {
				t.Fatalf("--json: %+v, failure %+v", out, fj)
			}
			if got := ptrOr(fj.Entry, -1); got != tc.entry {
				t.Errorf("--json entry %d, want %d", got, tc.entry)
			}
			if got := ptrOr(fj.Checkpoint, -1); got != tc.cp {
				t.Errorf("--json checkpoint %d, want %d", got, tc.cp)
			}
		})
	}
}

func ptrOr(p *int64, or int64) int64 {
	if p == nil {
		return or
	}
	return *p
}

// TestAuditVerify_ForgedHistory: a log rebuilt from another history and
// signed with the zone's own key verifies alone; the checkpoint kept
// elsewhere (--checkpoint) catches it, naming its file.
func TestAuditVerify_ForgedHistory(t *testing.T) {
	f := newAuditFixture(t)
	forgedFile := filepath.Join(t.TempDir(), audit.FileName)
	forged, err := audit.OpenLog(context.Background(), forgedFile, "dmz", f.keys.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	now := time.Now()
	for i := range 30 {
		e := auditTestEntry(i, now)
		if i == 9 {
			e.Decision = "refused" // history rewritten
		}
		if _, err := forged.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := forged.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustFerryctl(t, 0, "audit", "verify", forgedFile, "--pubkey", f.pub)
	stdout, _ := mustFerryctl(t, 1, "audit", "verify", forgedFile, "--pubkey", f.pub, "--checkpoint", f.cp)
	matches(t, "stdout", stdout, `^FAIL: checkpoint at size 30: known checkpoint: .*\(`+f.cp+`\)\n$`)
	out := verifyJSON(t, 1, forgedFile, "--pubkey", f.pub, "--checkpoint", f.cp)
	if out.Failure == nil || out.Failure.File != f.cp || ptrOr(out.Failure.Checkpoint, -1) != 30 {
		t.Errorf("--json: %+v", out.Failure)
	}
}

func TestAuditShow(t *testing.T) {
	f := newAuditFixture(t)

	t.Run("text", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "show", f.dir)
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 34 {
			t.Fatalf("%d lines, want 33 entries and the checkpoints:\n%s", len(lines), stdout)
		}
		matches(t, "pruned entry", lines[0], `^0  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  \(pruned\)$`)
		matches(t, "entry 3", lines[3], `^3  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  request\.accepted zone=dmz actor=app-backend request=0{31}3 operation=violations\.query decision=accepted subject=0{29}3eb$`)
		// A value with spaces, '=' or a newline is quoted: it cannot
		// fake a field or a line.
		want := `4  ` + `.{24}` + `  request\.refused zone=dmz actor=app-backend request=0{31}4 operation=violations\.query decision=refused reason=rate_limited rows=1 subject=0{29}3ec detail="over the limit\\nfor=this client"$`
		matches(t, "entry 4", lines[4], want)
		matches(t, "entry 32", lines[32], `^32  \S+  audit\.pruned zone=dmz actor=agent count=3 detail="bodies of entries before \S+ dropped; their hashes remain"$`)
		if lines[33] != "checkpoints: 2 stored, at sizes 20, 30" {
			t.Errorf("last line %q", lines[33])
		}
		stdout, _ = mustFerryctl(t, 0, "audit", "show", f.file, "--from", "30", "--limit", "1")
		matches(t, "--from 30 --limit 1", stdout, `^30  \S+  request\.accepted .*request=0{30}1e .*\ncheckpoints: 2 stored, at sizes 20, 30\n$`)
		stdout, _ = mustFerryctl(t, 0, "audit", "show", f.file, "--from", "40")
		if stdout != "checkpoints: 2 stored, at sizes 20, 30\n" {
			t.Errorf("--from past the end: %q", stdout)
		}
	})

	t.Run("json", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "audit", "show", f.dir, "--json", "--from", "2", "--limit", "3")
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d lines, want 3 entries and the checkpoints:\n%s", len(lines), stdout)
		}
		var pruned map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &pruned); err != nil {
			t.Fatal(err)
		}
		if pruned["index"] != 2.0 || pruned["pruned"] != true || pruned["time"] == nil || len(pruned) != 3 {
			t.Errorf("pruned entry line: %s", lines[0])
		}
		for i, line := range lines[1:3] {
			var got auditEntryJSON
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			want := auditTestEntry(3+i, got.Time)
			if got.Index != int64(3+i) || got.Entry != want {
				t.Errorf("line %s\nwant entry %+v", line, want)
			}
		}
		if lines[3] != `{"checkpoints":[20,30]}` {
			t.Errorf("last line %s", lines[3])
		}
	})

	t.Run("not an entry", func(t *testing.T) {
		g := newAuditFixture(t)
		tamperAudit(t, g.file, `UPDATE audit_entries SET body = CAST('not json' || char(27) || '[31m' AS BLOB) WHERE idx = 5`)
		stdout, stderr := mustFerryctl(t, 1, "audit", "show", g.dir, "--from", "4", "--limit", "3")
		matches(t, "stdout", stdout, `^4  .*\n5  NOT AN AUDIT ENTRY \(audit: decode entry: .*\): "not json\\x1b\[31m"\n6  .*request=0{31}6 .*\ncheckpoints: `)
		matches(t, "stderr", stderr, `ferryctl: error: audit show: 1 of the stored entries in .* are not audit entries\nhint: the file was altered`)
		stdout, _ = mustFerryctl(t, 1, "audit", "show", g.dir, "--json", "--from", "5", "--limit", "1")
		var bad auditBadEntryJSON
		if err := json.Unmarshal([]byte(strings.SplitN(stdout, "\n", 2)[0]), &bad); err != nil || bad.Index != 5 || bad.Body != "not json\x1b[31m" || bad.Error == "" {
			t.Errorf("--json: %+v, %v\n%s", bad, err, stdout)
		}
	})

	t.Run("errors", func(t *testing.T) {
		mustFerryctl(t, 2, "audit", "show", f.dir, "--from", "-1")
		mustFerryctl(t, 2, "audit", "show", f.dir, "--limit", "-1")
		mustFerryctl(t, 2, "audit", "show")
		_, stderr := mustFerryctl(t, 1, "audit", "show", filepath.Join(f.dir, "nothing"))
		matches(t, "stderr", stderr, `audit log .*/nothing: no such file or directory`)
	})
}

func TestAuditProve(t *testing.T) {
	f := newAuditFixture(t)
	proofFile := filepath.Join(t.TempDir(), "entry-10.proof")

	// To standard output, and to a file: the same proof, the one the log
	// itself makes.
	stdout, _ := mustFerryctl(t, 0, "audit", "prove", f.dir, "10")
	want, err := f.log.Prove(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Fatalf("prove printed\n%s\nwant\n%s", stdout, want)
	}
	out, _ := mustFerryctl(t, 0, "audit", "prove", f.file, "10", "-o", proofFile)
	if out != "inclusion proof of entry 10 written to "+proofFile+"\n" {
		t.Errorf("prove -o printed %q", out)
	}
	if got, err := os.ReadFile(proofFile); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("proof file: %v", err)
	}

	stdout, _ = mustFerryctl(t, 0, "audit", "verify-proof", proofFile, "--pubkey", f.pub)
	matches(t, "stdout", stdout, `^proof verified: entry 10 is in the log ferry\.audit/dmz, checkpoint size 30, root \S{44}\n10  \S+  request\.accepted zone=dmz .*request=0{31}a `)

	t.Run("tampered", func(t *testing.T) {
		other, err := f.log.Prove(context.Background(), 11)
		if err != nil {
			t.Fatal(err)
		}
		otherExtra := strings.SplitN(string(other), "\n", 3)[1]
		for name, p := range map[string]string{
			"entry changed": strings.Replace(string(want), strings.SplitN(string(want), "\n", 3)[1], otherExtra, 1),
			"index changed": strings.Replace(string(want), "\nindex 10\n", "\nindex 11\n", 1),
			"size changed":  strings.Replace(string(want), "\n30\n", "\n31\n", 1),
			"truncated":     string(want[:len(want)/2]),
		} {
			t.Run(name, func(t *testing.T) {
				if p == string(want) {
					t.Fatal("the proof was not changed")
				}
				file := filepath.Join(t.TempDir(), "proof")
				writeFile(t, file, []byte(p), 0o644)
				stdout, stderr := mustFerryctl(t, 1, "audit", "verify-proof", file, "--pubkey", f.pub)
				matches(t, "stdout", stdout, `^FAIL: proof: `)
				matches(t, "stderr", stderr, `audit verify-proof: the proof .* does not hold`)
			})
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		keyDir := filepath.Join(t.TempDir(), "keys")
		if err := keys.GenerateAudit(keyDir, "dmz"); err != nil {
			t.Fatal(err)
		}
		stdout, _ := mustFerryctl(t, 1, "audit", "verify-proof", proofFile, "--pubkey", filepath.Join(keyDir, keys.AuditPubFile))
		matches(t, "stdout", stdout, `^FAIL: proof: checkpoint: `)
	})

	t.Run("cannot prove", func(t *testing.T) {
		for _, tc := range []struct {
			entry, err string
		}{
			{"31", "prove entry 31: no checkpoint covers it yet"}, // after the newest checkpoint
			{"1", "prove entry 1: its body was pruned"},
		} {
			_, stderr := mustFerryctl(t, 1, "audit", "prove", f.dir, tc.entry)
			matches(t, "stderr", stderr, tc.err)
		}
		_, stderr := mustFerryctl(t, 1, "audit", "verify-proof", filepath.Join(f.dir, "absent"), "--pubkey", f.pub)
		matches(t, "stderr", stderr, `proof file .*/absent is missing`)
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"audit", "prove", f.dir},
			{"audit", "prove", f.dir, "ten"},
			{"audit", "prove", f.dir, "-1"},
			{"audit", "verify-proof", proofFile},
			{"audit", "verify-proof", "--pubkey", f.pub},
		} {
			mustFerryctl(t, 2, args...)
		}
	})
}

func TestQuoteField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"日本", "日本"},
		{"", `""`},
		{"two words", `"two words"`},
		{"a=b", `"a=b"`},
		{`say "hi"`, `"say \"hi\""`},
		{"line\nbreak", `"line\nbreak"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"tab\there", `"tab\there"`},
	} {
		if got := quoteField(tc.in); got != tc.want {
			t.Errorf("quoteField(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestAuditVerify_Witness: a DMZ log whose checkpoints the intranet
// countersigned (through audit.Exchange, as the agents do) verifies with
// --witness against the intranet's copies and reports them; the same log
// rebuilt with the DMZ's key fails, naming the copy; a copy in the
// witness's log that is not signed by both zones fails; --witness without
// --witness-pubkey is a usage error.
func TestAuditVerify_Witness(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	type zone struct {
		name, dir, pub string
		keys           *keys.Audit
		log            *audit.Log
		x              *audit.Exchange
	}
	zones := map[string]*zone{}
	for _, name := range []string{"dmz", "intranet"} {
		z := &zone{name: name, dir: filepath.Join(root, name)}
		keyDir := filepath.Join(z.dir, "keys")
		if err := keys.GenerateAudit(keyDir, name); err != nil {
			t.Fatal(err)
		}
		ak, err := keys.LoadAudit(keyDir, name)
		if err != nil {
			t.Fatal(err)
		}
		z.keys, z.pub = ak, filepath.Join(keyDir, keys.AuditPubFile)
		if z.log, err = audit.OpenLog(ctx, filepath.Join(z.dir, "state", audit.FileName), name, ak.Signer); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { z.log.Close() })
		zones[name] = z
	}
	dmz, intra := zones["dmz"], zones["intranet"]
	var err error
	if dmz.x, err = audit.NewExchange(ctx, dmz.log, dmz.keys.Verifier, intra.keys.Verifier, nil); err != nil {
		t.Fatal(err)
	}
	if intra.x, err = audit.NewExchange(ctx, intra.log, intra.keys.Verifier, dmz.keys.Verifier, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for round := range 3 {
		for i := range 10 {
			if _, err := dmz.log.Append(ctx, auditTestEntry(10*round+i, now)); err != nil {
				t.Fatal(err)
			}
		}
		for _, z := range zones {
			if _, err := z.log.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		intra.x.Incoming(ctx, dmz.x.Outgoing(ctx))
		dmz.x.Incoming(ctx, intra.x.Outgoing(ctx))
	}
	dmzState, inState := filepath.Join(dmz.dir, "state"), filepath.Join(intra.dir, "state")

	stdout, _ := mustFerryctl(t, 0, "audit", "verify", dmzState, "--pubkey", dmz.pub, "--witness", inState, "--witness-pubkey", intra.pub)
	for _, want := range []string{
		"  checkpoints  3 stored, 3 known, all verified\n",
		"  peer copies  3 of its checkpoints countersigned and kept by the other zone (" + inState + "), all verified\n",
		"  cosigned     3 of its checkpoints countersigned by ferry.audit/intranet and kept here, all verified\n",
		"  witnessed    3 checkpoints of ferry.audit/intranet countersigned here, all verified\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	out := verifyJSON(t, 0, dmzState, "--pubkey", dmz.pub, "--witness", inState, "--witness-pubkey", intra.pub)
	if r := out.auditReportJSON; r == nil || r.Known != 3 || r.Cosigned != 3 || r.Witnessed != 3 || !r.WitnessChecked {
		t.Errorf("--json: %+v", r)
	}
	stdout, _ = mustFerryctl(t, 0, "audit", "verify", dmzState, "--pubkey", dmz.pub)
	if !strings.Contains(stdout, "  cosigned     3 of its checkpoints countersigned by the other zone and kept here, checked against this log only") {
		t.Errorf("without --witness-pubkey:\n%s", stdout)
	}
	_, stderr := mustFerryctl(t, 2, "audit", "verify", dmzState, "--pubkey", dmz.pub, "--witness", inState)
	if !strings.Contains(stderr, "--witness needs --witness-pubkey") {
		t.Errorf("--witness alone: %s", stderr)
	}
	mustFerryctl(t, 2, "audit", "verify", dmzState, "--pubkey", dmz.pub, "--witness-pubkey", dmz.pub)

	// The DMZ's log rebuilt with its own key: it verifies alone, and
	// fails against the intranet's copies.
	dmz.log.Close()
	forgedFile := filepath.Join(t.TempDir(), audit.FileName)
	forged, err := audit.OpenLog(ctx, forgedFile, "dmz", dmz.keys.Signer)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		e := auditTestEntry(i, now)
		e.Decision = "refused"
		if _, err := forged.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := forged.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	forged.Close()
	mustFerryctl(t, 0, "audit", "verify", forgedFile, "--pubkey", dmz.pub)
	stdout, _ = mustFerryctl(t, 1, "audit", "verify", forgedFile, "--pubkey", dmz.pub, "--witness", inState, "--witness-pubkey", intra.pub)
	matches(t, "stdout", stdout, `^FAIL: checkpoint at size 10: known checkpoint: its root does not match .*\(the copy the other zone countersigned and kept, in `+filepath.Join(inState, audit.FileName)+`\)\n$`)

	// A copy in the intranet's log replaced by the DMZ's own note, which
	// lacks the intranet's signature.
	intra.log.Close()
	tamperAudit(t, filepath.Join(inState, audit.FileName),
		`UPDATE audit_witnessed SET note = (SELECT note FROM audit_cosigned LIMIT 1) WHERE size = 10`)
	stdout, _ = mustFerryctl(t, 1, "audit", "verify", dmzState, "--pubkey", dmz.pub, "--witness", inState, "--witness-pubkey", intra.pub)
	if !strings.Contains(stdout, "FAIL: the copy kept by the other zone") {
		t.Errorf("a copy without both signatures:\n%s", stdout)
	}
}
