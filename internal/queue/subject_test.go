package queue

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

const (
	subjectA = "11010119900307001X"
	subjectB = "110101198401043831"
)

func TestIntake_SubjectIdempotency(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	params := json.RawMessage(`{"a":1}`)
	withA, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: "with", Operation: "op", Params: params, Subject: subjectA})
	if err != nil {
		t.Fatal(err)
	}
	without, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: "without", Operation: "op", Params: params})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		subject string
		wantErr error
		wantID  string
	}{
		{"same subject", "with", subjectA, nil, withA.ID},
		{"other subject", "with", subjectB, ErrIdempotencyConflict, ""},
		{"subject dropped", "with", "", ErrIdempotencyConflict, ""},
		{"no subject again", "without", "", nil, without.ID},
		{"subject added", "without", subjectA, ErrIdempotencyConflict, ""},
	}
	check := func(t *testing.T, phase string) {
		for _, tt := range tests {
			t.Run(phase+"/"+tt.name, func(t *testing.T) {
				acc, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: tt.key, Operation: "op", Params: params, Subject: tt.subject})
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				if err == nil && (acc.ID != tt.wantID || !acc.Existing) {
					t.Fatalf("accepted %+v, want existing %s", acc, tt.wantID)
				}
			})
		}
	}
	check(t, "queued")
	// A third request, which the intranet will acknowledge without a
	// result.
	if _, err := in.Submit(ctx, Request{Client: "portal", Operation: "op", Params: params, Subject: subjectB}); err != nil {
		t.Fatal(err)
	}
	// Once final, the spool has dropped params and subject; the key still
	// compares against the stored hash.
	env := sealNext(t, s, 10)
	applied, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("a", 32), Channel: "results", Seq: 1}, &batch.Results{
		Acks:    []string{env.ID},
		Results: []batch.Result{{RequestID: withA.ID, Status: batch.StatusDone}, {RequestID: without.ID, Status: batch.StatusRejected}},
	}, time.Now())
	if err != nil || len(applied.Final) != 3 || len(applied.NoResult) != 1 {
		t.Fatalf("applied %+v, %v", applied, err)
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM requests WHERE subject != '' OR params IS NOT NULL`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d final requests still hold a subject or params (%v)", n, err)
	}
	check(t, "final")
}

func TestIntake_BadSubject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	in := runIntake(t, s, IntakeConfig{})
	for _, subj := range []string{"a b", strings.Repeat("1", batch.MaxSubject+1), "1\x00", "１"} {
		if _, err := in.Submit(ctxT(t), Request{Client: "c", Operation: "op", Subject: subj}); !errors.Is(err, ErrBadSubject) {
			t.Fatalf("subject %q: %v, want ErrBadSubject", subj, err)
		}
	}
	if n := countRows(t, path, `SELECT count(*) FROM requests`); n != 0 {
		t.Fatalf("%d requests stored, want 0", n)
	}
}

func TestSpool_SubjectIntoBatch(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	a, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{}`), Subject: subjectA})
	if err != nil {
		t.Fatal(err)
	}
	none, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := s.Unsealed(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range reqs {
		got[r.ID] = r.Subject
	}
	if len(got) != 2 || got[a.ID] != subjectA || got[none.ID] != "" {
		t.Fatalf("unsealed subjects %v, want %s for %s and none for %s", got, subjectA, a.ID, none.ID)
	}
	// The batch the batcher seals from them carries the subject and
	// decodes on the intranet side.
	body, err := batch.Encode(batch.Requests{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := batch.DecodeRequests(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dec.Requests {
		if r.Subject != got[r.ID] {
			t.Fatalf("request %s: subject %q after encoding, want %q", r.ID, r.Subject, got[r.ID])
		}
	}
	// Expiry drops the subject with the params.
	env := sealNext(t, s, 10)
	if _, err := s.Expire(ctx, env.Expires.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM requests WHERE subject != ''`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d expired requests still hold a subject (%v)", n, err)
	}
}

// TestSpool_MigrateFrom0001 opens a spool written by the 0001 schema alone
// (as the previous release left it) with the current code.
func TestSpool_MigrateFrom0001(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	ctx := ctxT(t)
	db := openOldSpool(t, path, 1)
	// The hash as the 0001 code computed it, spelled out rather than
	// through BodyHash, so a change to BodyHash's subject-less form fails
	// here.
	oldHash := func(op, params string) []byte {
		h := sha256.Sum256([]byte(op + "\x00" + params))
		return h[:]
	}
	const (
		queuedID = "0123456789abcdef0123456789abcdef"
		finalID  = "fedcba9876543210fedcba9876543210"
	)
	const envID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	now := time.Now().UnixMilli()
	if _, err := db.ExecContext(ctx, `INSERT INTO envelopes
		(id, channel, seq, header_hash, name, data, requests, state, created, expires)
		VALUES (?, 'requests', 1, zeroblob(32), 'x.fxe', X'', 1, 'acked', ?, ?)`, envID, now, now+1000); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO requests
		(id, client, idem_key, body_hash, operation, params, received, status, updated, envelope_id) VALUES
		(?, 'portal', 'k-queued', ?, 'op', CAST('{"a":1}' AS BLOB), ?, 'queued', ?, NULL),
		(?, 'portal', 'k-final', ?, 'op', NULL, ?, 'done', ?, ?)`,
		queuedID, oldHash("op", `{"a":1}`), now, now,
		finalID, oldHash("op", `{"b":2}`), now, now, envID); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSpool(t, path)
	if v, want := schemaVersion(t, s), latestVersion(t); v != want {
		t.Fatalf("schema version %d, want %d", v, want)
	}
	if _, err := s.Catalogue(ctx); !errors.Is(err, ErrNoCatalogue) {
		t.Fatalf("catalogue after migration: %v, want ErrNoCatalogue", err)
	}
	reqs, err := s.Unsealed(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].ID != queuedID || reqs[0].Subject != "" || string(reqs[0].Params) != `{"a":1}` {
		t.Fatalf("unsealed after migration %+v, want %s without a subject", reqs, queuedID)
	}
	if st, err := s.Get(ctx, finalID); err != nil || st.Status != batch.StatusDone {
		t.Fatalf("old final request: %+v %v", st, err)
	}
	in := runIntake(t, s, IntakeConfig{})
	for _, tt := range []struct {
		name, key, params, subject string
		wantErr                    error
		wantID                     string
	}{
		{"queued retry", "k-queued", `{"a":1}`, "", nil, queuedID},
		{"final retry", "k-final", `{"b":2}`, "", nil, finalID},
		{"queued retry with a subject", "k-queued", `{"a":1}`, subjectA, ErrIdempotencyConflict, ""},
		{"final retry with a subject", "k-final", `{"b":2}`, subjectA, ErrIdempotencyConflict, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			acc, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: tt.key, Operation: "op",
				Params: json.RawMessage(tt.params), Subject: tt.subject})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err == nil && (acc.ID != tt.wantID || !acc.Existing) {
				t.Fatalf("accepted %+v, want existing %s", acc, tt.wantID)
			}
		})
	}
	// A new request with a subject goes into the migrated table.
	acc, err := in.Submit(ctx, Request{Client: "portal", Operation: "op", Params: json.RawMessage(`{}`), Subject: subjectB})
	if err != nil {
		t.Fatal(err)
	}
	reqs, err = s.Unsealed(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[1].ID != acc.ID || reqs[1].Subject != subjectB {
		t.Fatalf("after migration: %+v", reqs)
	}
}
