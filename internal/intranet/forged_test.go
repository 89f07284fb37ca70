package intranet

import (
	"bytes"
	"database/sql"
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
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/envelope/envelopetest"
	"github.com/ferrybridge/ferry/internal/keys"
)

// forgery is what a forged-envelope case builds its file from: the
// deployment, keys that are not the DMZ's, and the requests the forged
// envelope carries (a read and a booking, so that any effect on the
// replica or a rate-limit bucket shows).
type forgery struct {
	e *testEnv
	// evil is another key named "dmz"; partner a key of another zone;
	// otherIntra another age key of a zone named "intranet".
	evil, partner, otherIntra *keys.Zone
	reqs                      []batch.Request
	// last is the legitimate envelope applied and answered last.
	last *envelope.Sealed
}

// next is the header of the DMZ's next request envelope, without taking
// its sequence number: a forger races for the seq the DMZ uses next.
func (f *forgery) next() envelope.Header {
	f.e.mu.Lock()
	defer f.e.mu.Unlock()
	now := time.Now()
	return envelope.Header{
		ID: envelope.NewID(), Kind: envelope.KindRequests, From: "dmz", To: "intranet",
		Channel: "requests", Seq: f.e.seq + 1, Prev: f.e.prev, Created: now, Expires: now.Add(time.Hour),
	}
}

// body is the encoded requests batch of the forgery.
func (f *forgery) body(t *testing.T) []byte {
	t.Helper()
	data, err := batch.Encode(batch.Requests{Requests: f.reqs})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seal seals body under h without touching the harness's channel state.
func (f *forgery) seal(t *testing.T, h envelope.Header, body []byte, signer note.Signer, to *age.X25519Recipient) *envelope.Sealed {
	t.Helper()
	s, err := envelope.Seal(h, body, signer, to)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// good seals the forgery's requests as the DMZ would, for the next seq.
func (f *forgery) good(t *testing.T) *envelope.Sealed {
	t.Helper()
	return f.seal(t, f.next(), f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
}

// replicaSnapshot is every row of every table of the replica file (the
// replica's own tables and the ledger's), by table, in a stable order.
type replicaSnapshot map[string][]string

func (e *testEnv) snapshot(t *testing.T) replicaSnapshot {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Replica+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	// The audit outbox is the record of what happened, drained in the
	// background: not the ledger's state.
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
	snap := replicaSnapshot{}
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

// ledgerState are the tables whose rows change when a copy of an applied
// envelope is answered again: its record's state and the outbox.
var ledgerState = []string{"ferry_envelopes", "ferry_outbox", "ferry_channels"}

// diff names the tables that differ between two snapshots, leaving out
// the tables in skip.
func (s replicaSnapshot) diff(other replicaSnapshot, skip ...string) []string {
	var out []string
	for table, rows := range s {
		if !slices.Contains(skip, table) && !reflect.DeepEqual(rows, other[table]) {
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
func (e *testEnv) waitReason(t *testing.T, name, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(e.cfg.Quarantine, name+".reason"))
		if err == nil && len(data) > 0 {
			if _, err := os.Stat(filepath.Join(e.cfg.Quarantine, name)); err != nil {
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

// TestAgent_Run_forged drops forged, tampered, misdirected and replayed
// envelopes one at a time into a running agent's request medium. Each must
// be quarantined with its reason (a byte-identical copy of an applied
// envelope is instead dropped as a duplicate), leave every table
// of the replica file as it was (no request applied or recorded, no
// rate-limit bucket taken), and get no answer; a legitimate envelope sent
// after it must still be applied and answered.
//
// Revoked keys are not covered: key revocation does not exist yet.
func TestAgent_Run_forged(t *testing.T) {
	e := newTestEnv(t)
	// No heartbeat during the test, so that the ledger changes only with
	// what the test sends.
	e.cfg.Heartbeat = config.Duration(time.Hour)
	f := &forgery{e: e}
	for _, k := range []struct {
		z    **keys.Zone
		name string
	}{{&f.evil, "dmz"}, {&f.partner, "partner"}, {&f.otherIntra, "intranet"}} {
		z, err := keys.Generate(k.name)
		if err != nil {
			t.Fatal(err)
		}
		*k.z = z
	}
	e.start(t)

	// One legitimate envelope first, for the replay and copy cases.
	first := e.send(t, []batch.Request{e.bookings(t, 1)[0], readRequest()})
	e.waitAcked(t, first.Header.ID)
	e.waitEmpty(t)
	f.last = first

	tests := []struct {
		name string
		// reason is the expected quarantine reason; "" means the file is
		// a copy of an applied envelope, answered again and not
		// quarantined.
		reason string
		// forge returns the file, and the envelope ids that must get no
		// answer.
		forge func(t *testing.T, f *forgery) ([]byte, []string)
	}{
		{"signed by another key named dmz", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.seal(t, f.next(), f.body(t), f.evil.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"signed by another zone's key", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.From = "partner"
			s := f.seal(t, h, f.body(t), f.partner.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"signed by the intranet's own key", envelope.ReasonUnknownSender, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.From = "intranet"
			s := f.seal(t, h, f.body(t), f.e.intra.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"sealed to another age key of zone intranet", envelope.ReasonWrongRecipient, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.seal(t, f.next(), f.body(t), f.e.dmz.Signer, f.otherIntra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"addressed to another zone", envelope.ReasonWrongRecipient, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.To = "elsewhere"
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"header of one envelope, payload of another", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) ([]byte, []string) {
			a, b := f.good(t), f.good(t)
			_, _, pa := envelopetest.Parts(t, a.Data)
			_, _, pb := envelopetest.Parts(t, b.Data)
			return append(bytes.Clone(a.Data[:pa]), b.Data[pb:]...), []string{a.Header.ID, b.Header.ID}
		}},
		{"kind heartbeat", ReasonWrongKind, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Kind = envelope.KindHeartbeat
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"kind results", ReasonWrongKind, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Kind = envelope.KindResults
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"channel results", ReasonBadHeader, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Channel = "results"
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"expired", envelope.ReasonExpired, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Created, h.Expires = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Second)
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"created too far in the future", envelope.ReasonNotYetValid, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Created, h.Expires = time.Now().Add(10*time.Minute), time.Now().Add(time.Hour)
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"body not JSON", ReasonBadBody, func(t *testing.T, f *forgery) ([]byte, []string) {
			body := f.body(t)
			s := f.seal(t, f.next(), body[:len(body)-2], f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"body with an unknown field", ReasonBadBody, func(t *testing.T, f *forgery) ([]byte, []string) {
			body := f.body(t)
			body = append(body[:len(body)-1], `,"priority":1}`...)
			s := f.seal(t, f.next(), body, f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"body with too many requests", ReasonBadBody, func(t *testing.T, f *forgery) ([]byte, []string) {
			reqs := slices.Clone(f.reqs)
			for len(reqs) <= batch.MaxRequests {
				reqs = append(reqs, readRequest())
			}
			data, err := batch.Encode(batch.Requests{Requests: reqs})
			if err != nil {
				t.Fatal(err)
			}
			s := f.seal(t, f.next(), data, f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"body with oversized params", ReasonBadBody, func(t *testing.T, f *forgery) ([]byte, []string) {
			reqs := slices.Clone(f.reqs)
			reqs[0].Params = []byte(`{"plate":"` + strings.Repeat("A", batch.MaxParamsBytes) + `"}`)
			data, err := batch.Encode(batch.Requests{Requests: reqs})
			if err != nil {
				t.Fatal(err)
			}
			s := f.seal(t, f.next(), data, f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"truncated in the signed note", envelope.ReasonMalformed, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.good(t)
			_, sig, _ := envelopetest.Parts(t, s.Data)
			return s.Data[:sig], []string{s.Header.ID}
		}},
		{"truncated in the payload", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.good(t)
			return s.Data[:len(s.Data)-1], []string{s.Header.ID}
		}},
		{"bit flipped in the signature", envelope.ReasonBadSignature, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.good(t)
			return envelopetest.FlipSignatureBit(t, s.Data), []string{s.Header.ID}
		}},
		{"bit flipped in the header", envelope.ReasonBadSignature, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.good(t)
			n, _, _ := envelopetest.Parts(t, s.Data)
			i := n + bytes.Index(s.Data[n:], []byte("\nid ")) + len("\nid ")
			return envelopetest.FlipBit(s.Data, i), []string{s.Header.ID}
		}},
		{"bit flipped in the payload", envelope.ReasonPayloadMismatch, func(t *testing.T, f *forgery) ([]byte, []string) {
			s := f.good(t)
			_, _, p := envelopetest.Parts(t, s.Data)
			return envelopetest.FlipBit(s.Data, p+(len(s.Data)-p)/2), []string{s.Header.ID}
		}},
		{"sequence number of an applied envelope, new id", ReasonReplay, func(t *testing.T, f *forgery) ([]byte, []string) {
			h := f.next()
			h.Seq, h.Prev = f.last.Header.Seq, f.last.Header.Prev
			s := f.seal(t, h, f.body(t), f.e.dmz.Signer, f.e.intra.Recipient)
			return s.Data, []string{s.Header.ID}
		}},
		{"byte-identical copy of an applied envelope", "", func(t *testing.T, f *forgery) ([]byte, []string) {
			return f.last.Data, nil
		}},
	}
	for i, tt := range tests {
		// A forged envelope that got through leaves the channel in a state
		// the next cases do not expect: stop at the first failure.
		if !t.Run(tt.name, func(t *testing.T) {
			// The booking the legitimate envelope makes after the forged
			// one; the forged envelope asks for the same slot under
			// another request id, so that it would take the place if it
			// got through.
			book := e.bookings(t, 1)[0]
			forgedBook := book
			forgedBook.ID = newRequest("exam.book", nil).ID
			f.reqs = []batch.Request{readRequest(), forgedBook}
			before := e.snapshot(t)
			beforeAnswers := e.collect(t)
			qBefore := countFiles(t, e.cfg.Quarantine)

			data, forgedIDs := tt.forge(t, f)
			name := fmt.Sprintf("forged-%02d.fxe", i)
			e.drop(t, name, data)
			if tt.reason != "" {
				reason := e.waitReason(t, name, tt.reason)
				t.Logf("quarantined: %s", strings.ReplaceAll(strings.TrimSpace(reason), "\n", "; "))
				if changed := before.diff(e.snapshot(t)); len(changed) > 0 {
					t.Fatalf("the forged envelope changed the replica file: %v", changed)
				}
			} else {
				// Dropped as a copy of an envelope answered before.
				e.waitEmpty(t)
				if changed := before.diff(e.snapshot(t), ledgerState...); len(changed) > 0 {
					t.Fatalf("the copy changed the replica file: %v", changed)
				}
				if n, was := e.collect(t).acks[f.last.Header.ID], beforeAnswers.acks[f.last.Header.ID]; n != was {
					t.Fatalf("the copy was answered: %d answers, %d before", n, was)
				}
			}

			// The agent goes on: a legitimate envelope is applied and
			// answered, and the forged one got no answer.
			read := readRequest()
			legit := e.send(t, []batch.Request{book, read})
			a := e.waitAcked(t, legit.Header.ID)
			e.waitEmpty(t)
			checkOnce(t, a, book, read)
			if res := a.results[book.ID][0]; res.Status != batch.StatusDone || res.RowsAffected != 1 {
				t.Fatalf("booking after the forged envelope: %+v, want done with 1 row", res)
			}
			for _, id := range forgedIDs {
				if n := a.acks[id]; n != 0 {
					t.Fatalf("forged envelope %s answered %d times", id, n)
				}
			}
			for _, r := range f.reqs {
				if got := a.results[r.ID]; len(got) != 0 {
					t.Fatalf("forged request %s (%s) answered: %+v", r.ID, r.Operation, got)
				}
			}
			want := qBefore
			if tt.reason != "" {
				want += 2 // the file and its reason
			}
			if n := countFiles(t, e.cfg.Quarantine); n != want {
				t.Fatalf("%d files in quarantine, want %d", n, want)
			}
			f.last = legit
		}) {
			break
		}
	}
}
