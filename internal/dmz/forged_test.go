package dmz

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/envelope/envelopetest"
	"github.com/ferrybridge/ferry/internal/keys"
)

// forgery is what a forged-envelope case builds its file from: the
// deployment, keys that are not the intranet's, and the results body the
// forged envelope carries. That body would change everything a results
// envelope can change: it answers the outstanding request, acknowledges
// its envelope, and carries a catalogue without one operation.
type forgery struct {
	e *env
	// evil is another key named "intranet"; partner a key of another
	// zone; otherDMZ another age key of a zone named "dmz".
	evil, partner, otherDMZ *keys.Zone
	res                     batch.Results
	// last is the legitimate envelope applied last.
	last struct {
		h    envelope.Header
		data []byte
	}
}

// next is the header of the intranet's next results envelope, without
// taking its sequence number: a forger races for the seq the intranet
// uses next.
func (f *forgery) next() envelope.Header { return f.e.headerSeq(f.e.seq + 1) }

// body is the encoded results body of the forgery.
func (f *forgery) body(t *testing.T) []byte {
	t.Helper()
	data, err := batch.Encode(f.res)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seal seals body under h.
func (f *forgery) seal(t *testing.T, h envelope.Header, body []byte, signer note.Signer, to *age.X25519Recipient) *envelope.Sealed {
	t.Helper()
	s, err := envelope.Seal(h, body, signer, to)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// good seals the forgery's body as the intranet would, for the next seq.
func (f *forgery) good(t *testing.T) *envelope.Sealed {
	t.Helper()
	return f.seal(t, f.next(), f.body(t), f.e.intra.Signer, f.e.dmz.Recipient)
}

// spoolSnapshot is every row of every table of the spool, by table, in a
// stable order.
type spoolSnapshot map[string][]string

// snapshot waits until no request envelope is between sealed and
// published, then reads every table of the spool.
func (e *env) snapshot(t *testing.T) spoolSnapshot {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Spool+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM envelopes WHERE state = 'sealed'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request envelopes sealed and not published after 10s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var tables []string
	// The audit outbox is the record of what happened, drained in the
	// background: not the spool's state.
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
		AND name != 'audit_outbox' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	snap := spoolSnapshot{}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%q", vals))
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		snap[table] = out
	}
	return snap
}

// diff names the tables that differ between two snapshots.
func (s spoolSnapshot) diff(other spoolSnapshot) []string {
	var out []string
	for table, rows := range s {
		if !reflect.DeepEqual(rows, other[table]) {
			out = append(out, fmt.Sprintf("%s (%d rows, then %d)", table, len(rows), len(other[table])))
		}
	}
	for table := range other {
		if _, ok := s[table]; !ok {
			out = append(out, table+" (new)")
		}
	}
	slices.Sort(out)
	return out
}

// waitReason waits until name is in the quarantine directory with a
// reason file whose reason is exactly want, and returns the reason file.
func (e *env) waitReason(t *testing.T, name, want string) string {
	t.Helper()
	qdir := filepath.Join(e.dir, "state", "quarantine")
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(qdir, name+".reason"))
		if err == nil && len(data) > 0 {
			if _, err := os.Stat(filepath.Join(qdir, name)); err != nil {
				t.Fatalf("%s: reason file without the quarantined file: %v", name, err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			if got := strings.TrimPrefix(first, "reason: "); got != want {
				t.Fatalf("%s quarantined with reason %q, want %q:\n%s", name, got, want, data)
			}
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not quarantined within 10s", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// quarantined counts the files in the quarantine directory.
func (e *env) quarantined(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dir, "state", "quarantine"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

// TestAgent_IngestForged drops forged, tampered, misdirected and replayed
// results envelopes one at a time into a running agent's result medium,
// each answering an outstanding request, acknowledging its envelope and
// carrying a catalogue. Each must be quarantined with its reason (a
// byte-identical copy of an applied envelope is instead dropped), leave
// every table of the spool as it was (no request status, acknowledgement,
// received envelope or catalogue stored), and make the agent publish
// nothing; a legitimate results envelope dropped after it must still be
// applied.
//
// Revoked keys are not covered: key revocation does not exist yet.
func TestAgent_IngestForged(t *testing.T) {
	// No re-send during the test, so that the spool changes
	// only with what the test does.
	e := startEnvWith(t, envOptions{extra: "resend_after: 1h\nresend_max: 1h\n"})
	f := &forgery{e: e}
	for _, k := range []struct {
		z    **keys.Zone
		name string
	}{{&f.evil, "intranet"}, {&f.partner, "partner"}, {&f.otherDMZ, "dmz"}} {
		z, err := keys.Generate(k.name)
		if err != nil {
			t.Fatal(err)
		}
		*k.z = z
	}

	// A catalogue first, which a forged one would replace, and the last
	// legitimate envelope for the replay and copy cases.
	h := e.resultsHeader()
	name, data := e.sealResults(t, h, batch.Results{Acks: []string{}, Results: []batch.Result{}, Catalogue: mustJSON(t, sampleCatalogue(t))})
	e.drop(t, name, data)
	e.waitCatalogue(t, h.Seq)
	e.waitConsumed(t, name)
	f.last.h, f.last.data = h, data

	tests := []struct {
		name string
		// reason is the expected quarantine reason; "" means the file is
		// a copy of an applied envelope, dropped and not quarantined.
		reason string
		forge  func(t *testing.T, f *forgery) []byte
	}{
		{"signed by another key named intranet", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) []byte {
			return f.seal(t, f.next(), f.body(t), f.evil.Signer, f.e.dmz.Recipient).Data
		}},
		{"signed by another zone's key", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.From = "partner"
			return f.seal(t, h, f.body(t), f.partner.Signer, f.e.dmz.Recipient).Data
		}},
		{"signed by the DMZ's own key", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.From = "dmz"
			return f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.dmz.Recipient).Data
		}},
		{"sealed to another age key of zone dmz", envelope.ReasonWrongRecipient, func(t *testing.T, f *forgery) []byte {
			return f.seal(t, f.next(), f.body(t), f.e.intra.Signer, f.otherDMZ.Recipient).Data
		}},
		{"addressed to another zone", envelope.ReasonWrongRecipient, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.To = "elsewhere"
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"header of one envelope, payload of another", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) []byte {
			a, b := f.good(t), f.good(t)
			_, _, pa := envelopetest.Parts(t, a.Data)
			_, _, pb := envelopetest.Parts(t, b.Data)
			return append(bytes.Clone(a.Data[:pa]), b.Data[pb:]...)
		}},
		{"kind requests", ReasonWrongKind, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.Kind = envelope.KindRequests
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"kind heartbeat", ReasonWrongKind, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.Kind = envelope.KindHeartbeat
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"channel requests", ReasonBadHeader, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.Channel = RequestsChannel
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"expired", envelope.ReasonExpired, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.Created, h.Expires = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Second)
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"created too far in the future", envelope.ReasonNotYetValid, func(t *testing.T, f *forgery) []byte {
			h := f.next()
			h.Created, h.Expires = time.Now().Add(10*time.Minute), time.Now().Add(time.Hour)
			return f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"body not JSON", ReasonBadBody, func(t *testing.T, f *forgery) []byte {
			body := f.body(t)
			return f.seal(t, f.next(), body[:len(body)-2], f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"body with an unknown field", ReasonBadBody, func(t *testing.T, f *forgery) []byte {
			body := f.body(t)
			body = append(body[:len(body)-1], `,"priority":1}`...)
			return f.seal(t, f.next(), body, f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"body with too many results", ReasonBadBody, func(t *testing.T, f *forgery) []byte {
			res := f.res
			res.Results = slices.Clone(res.Results)
			for len(res.Results) <= batch.MaxResults {
				res.Results = append(res.Results, batch.Result{RequestID: fmt.Sprintf("%032x", len(res.Results)), Status: batch.StatusDone})
			}
			data, err := batch.Encode(res)
			if err != nil {
				t.Fatal(err)
			}
			return f.seal(t, f.next(), data, f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"body with an oversized catalogue", ReasonBadBody, func(t *testing.T, f *forgery) []byte {
			res := f.res
			res.Catalogue = json.RawMessage(`{"pad":"` + strings.Repeat("a", batch.MaxCatalogue) + `"}`)
			data, err := batch.Encode(res)
			if err != nil {
				t.Fatal(err)
			}
			return f.seal(t, f.next(), data, f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"truncated in the signed note", envelope.ReasonMalformed, func(t *testing.T, f *forgery) []byte {
			s := f.good(t)
			_, sig, _ := envelopetest.Parts(t, s.Data)
			return s.Data[:sig]
		}},
		{"truncated in the payload", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) []byte {
			s := f.good(t)
			return s.Data[:len(s.Data)-1]
		}},
		{"bit flipped in the signature", envelope.ReasonBadSignature, func(t *testing.T, f *forgery) []byte {
			return envelopetest.FlipSignatureBit(t, f.good(t).Data)
		}},
		{"bit flipped in the header", envelope.ReasonBadSignature, func(t *testing.T, f *forgery) []byte {
			s := f.good(t)
			n, _, _ := envelopetest.Parts(t, s.Data)
			i := n + bytes.Index(s.Data[n:], []byte("\nid ")) + len("\nid ")
			return envelopetest.FlipBit(s.Data, i)
		}},
		{"bit flipped in the payload", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) []byte {
			s := f.good(t)
			_, _, p := envelopetest.Parts(t, s.Data)
			return envelopetest.FlipBit(s.Data, p+(len(s.Data)-p)/2)
		}},
		{"sequence number of an applied envelope, new id", ReasonReplay, func(t *testing.T, f *forgery) []byte {
			return f.seal(t, f.e.headerSeq(f.last.h.Seq), f.body(t), f.e.intra.Signer, f.e.dmz.Recipient).Data
		}},
		{"byte-identical copy of an applied envelope", "", func(t *testing.T, f *forgery) []byte {
			return f.last.data
		}},
	}
	for i, tt := range tests {
		// A forged envelope that got through leaves the spool in a state
		// the next cases do not expect: stop at the first failure.
		if !t.Run(tt.name, func(t *testing.T) {
			id := e.submit(t)
			sent := e.takeRequests(t, 1)[0]
			e.waitStatus(t, id, batch.StatusSent)
			f.res = batch.Results{
				Acks:      []string{sent.Header.ID},
				Results:   []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{{"forged": true}}}},
				Catalogue: mustJSON(t, sampleCatalogue(t, "violations.query")),
			}
			before := e.snapshot(t)
			qBefore := e.quarantined(t)

			name := fmt.Sprintf("forged-%02d.fxe", i)
			e.drop(t, name, tt.forge(t, f))
			if tt.reason != "" {
				reason := e.waitReason(t, name, tt.reason)
				t.Logf("quarantined: %s", strings.ReplaceAll(strings.TrimSpace(reason), "\n", "; "))
			} else {
				e.waitConsumed(t, name)
			}
			if changed := before.diff(e.snapshot(t)); len(changed) > 0 {
				t.Fatalf("the forged envelope changed the spool: %v", changed)
			}
			if r := e.status(t, id); r.str("status") != batch.StatusSent {
				t.Fatalf("request after the forged envelope: %s, want sent", r.raw)
			}
			if te := e.nextEnvelope(t, 0); te != nil {
				t.Fatalf("the agent published request envelope %s after the forged one", te.opened.Header.ID)
			}

			// The agent goes on: a legitimate envelope is applied.
			h := e.resultsHeader()
			gname, gdata := e.sealResults(t, h, batch.Results{
				Acks:    []string{sent.Header.ID},
				Results: []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{{"fine": 200}}}},
			})
			e.drop(t, gname, gdata)
			if r := e.waitStatus(t, id, batch.StatusDone); !strings.Contains(r.raw, `"result":[{"fine":200}]`) {
				t.Fatalf("request after the legitimate envelope: %s", r.raw)
			}
			e.waitConsumed(t, gname)
			if o := e.operations(t, tokenPortal); o.Catalogue == nil || o.Catalogue.Seq != 1 {
				t.Fatalf("catalogue in force %+v, want the one of seq 1", o.Catalogue)
			}
			want := qBefore
			if tt.reason != "" {
				want += 2 // the file and its reason
			}
			if n := e.quarantined(t); n != want {
				t.Fatalf("%d files in quarantine, want %d", n, want)
			}
			f.last.h, f.last.data = h, gdata
		}) {
			break
		}
	}
}

// mustJSON returns v as JSON.
func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
