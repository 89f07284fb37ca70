package queue

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/batch"
)

// TestSpool_Audit: with auditing on, every decision the spool takes is in
// the zone's audit log once drained, in order, with subjects and
// parameters only as keyed hashes; and the audit log verifies.
func TestSpool_Audit(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, filepath.Join(dir, "spool.db"))
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, audit.HMACKeySize))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := s.EnableAudit(ctx, "dmz", h); err != nil {
		t.Fatal(err)
	}
	in := runIntake(t, s, IntakeConfig{})
	const subject, secret = "110101199003074578", "沪A12345"
	var ids []string
	for range 2 {
		acc, err := in.Submit(ctx, Request{Client: "app", Operation: "violations.query", Subject: subject,
			Params: json.RawMessage(`{"id_number":"` + subject + `","plate":"` + secret + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.ID)
	}
	env := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{env.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	res := &batch.Results{Results: []batch.Result{
		{RequestID: ids[0], Status: batch.StatusDone, Rows: []map[string]any{{"plate": secret}}},
		{RequestID: ids[1], Status: batch.StatusRejected, Reason: "rate_limited"},
	}, Acks: []string{env.ID}}
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Channel: "results", Seq: 1}, res, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, audit.Entry{Event: audit.EventRequestRefused, Actor: "app", Reason: "forbidden_subject"}); err != nil {
		t.Fatal(err)
	}
	// An operator drops an envelope; the message stays out of the log.
	if _, err := in.Submit(ctx, Request{Client: "app", Operation: "violations.query", Params: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	env2 := sealNext(t, s, 10)
	if _, err := s.Drop(ctx, env2.ID, "admin1", "citizen "+subject+" asked", time.Now()); err != nil {
		t.Fatal(err)
	}

	file, entries := audittest.Drain(t, "dmz", s.AuditSource())
	events := audittest.Events(entries)
	var accepted []audit.Entry
	for _, e := range entries {
		if e.Event == audit.EventRequestAccepted {
			accepted = append(accepted, e)
		}
	}
	want := []string{audit.EventRequestAccepted, audit.EventRequestAccepted, audit.EventEnvelopeSealed, audit.EventEnvelopePublished,
		audit.EventResultReceived, audit.EventResultReceived, audit.EventAck, audit.EventEnvelopeOpened, audit.EventRequestRefused,
		audit.EventRequestAccepted, audit.EventEnvelopeSealed, audit.EventAdmin}
	if !slices.Equal(events, want) {
		t.Fatalf("events %v,\nwant %v", events, want)
	}
	if accepted[0].Subject != h.Subject(subject) || accepted[0].Actor != "app" || accepted[0].Zone != "dmz" {
		t.Errorf("accepted entry %+v", accepted[0])
	}
	// No personal data anywhere in the audit database (its WAL included).
	audittest.NoneInClear(t, file, subject, secret)
}

// TestSpool_Audit_noResult: requests failed because the intranet
// acknowledged their envelope without their results are recorded as
// results received, failed with no_result.
func TestSpool_Audit_noResult(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, filepath.Join(dir, "spool.db"))
	ctx := ctxT(t)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, audit.HMACKeySize))
	if err := s.EnableAudit(ctx, "dmz", h); err != nil {
		t.Fatal(err)
	}
	in := runIntake(t, s, IntakeConfig{})
	acc, err := in.Submit(ctx, Request{Client: "app", Operation: "op", Params: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	env := sealNext(t, s, 10)
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Channel: "results", Seq: 1},
		&batch.Results{Acks: []string{env.ID}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, entries := audittest.Drain(t, "dmz", s.AuditSource())
	n := 0
	for _, e := range entries {
		if e.Event == audit.EventResultReceived {
			n++
			if e.Request != acc.ID || e.Decision != batch.StatusFailed || e.Reason != ReasonNoResult {
				t.Errorf("result entry %+v", e)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d result.received entries, want 1", n)
	}
}
