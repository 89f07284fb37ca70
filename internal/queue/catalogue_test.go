package queue

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

func TestSpool_Catalogue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	ctx := ctxT(t)
	if _, err := s.Catalogue(ctx); !errors.Is(err, ErrNoCatalogue) {
		t.Fatalf("empty spool: %v, want ErrNoCatalogue", err)
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	store := func(seq uint64, data string, want bool) {
		t.Helper()
		got, err := s.StoreCatalogue(ctx, &Catalogue{Data: json.RawMessage(data), Seq: seq, Received: at.Add(time.Duration(seq) * time.Second)})
		if err != nil || got != want {
			t.Fatalf("store seq %d: %v %v, want stored %v", seq, got, err, want)
		}
	}
	check := func(s *Spool, seq uint64, data string) {
		t.Helper()
		c, err := s.Catalogue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Seq != seq || string(c.Data) != data || !c.Received.Equal(at.Add(time.Duration(seq)*time.Second)) {
			t.Fatalf("stored catalogue seq %d %s at %s, want seq %d %s", c.Seq, c.Data, c.Received, seq, data)
		}
	}
	store(5, `{"v":5}`, true)
	check(s, 5, `{"v":5}`)
	store(3, `{"v":3}`, false) // older: the newer one stays
	store(5, `{"v":"again"}`, false)
	check(s, 5, `{"v":5}`)
	store(7, `{"v":7}`, true)
	check(s, 7, `{"v":7}`)
	for _, bad := range []*Catalogue{{Data: json.RawMessage(`{}`), Seq: 0}, {Data: nil, Seq: 9}} {
		if _, err := s.StoreCatalogue(ctx, bad); err == nil {
			t.Fatalf("stored %+v", bad)
		}
	}
	check(s, 7, `{"v":7}`)

	// It survives closing and opening the file again, still one row.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openSpool(t, path)
	check(s2, 7, `{"v":7}`)
	if n := countRows(t, path, `SELECT count(*) FROM catalogue`); n != 1 {
		t.Fatalf("%d catalogue rows, want 1", n)
	}
}

// TestSpool_ApplyResultsCatalogue stores the catalogue a results envelope
// carries in the envelope's transaction, by the envelope's seq.
func TestSpool_ApplyResultsCatalogue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	acc, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	env := sealNext(t, s, 10)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	// Seq 4: a catalogue with a result and an ack.
	r4 := ReceivedEnvelope{ID: "44444444444444444444444444444444", Channel: "results", Seq: 4, Catalogue: json.RawMessage(`{"v":4}`)}
	got, err := s.ApplyResults(ctx, r4, &batch.Results{Acks: []string{env.ID},
		Results: []batch.Result{{RequestID: acc.ID, Status: batch.StatusDone}}}, now)
	if err != nil || !got.CatalogueStored || len(got.Final) != 1 {
		t.Fatalf("apply seq 4: %+v %v", got, err)
	}
	// Seq 2 arrives late: its results count, its catalogue does not.
	r2 := ReceivedEnvelope{ID: "22222222222222222222222222222222", Channel: "results", Seq: 2, Catalogue: json.RawMessage(`{"v":2}`)}
	if got, err := s.ApplyResults(ctx, r2, &batch.Results{}, now.Add(time.Second)); err != nil || got.CatalogueStored {
		t.Fatalf("apply seq 2: %+v %v", got, err)
	}
	// A copy of seq 4 with another catalogue changes nothing.
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: r4.ID, Channel: "results", Seq: 4, Catalogue: json.RawMessage(`{"v":"copy"}`)},
		&batch.Results{}, now); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("copy: %v, want ErrDuplicate", err)
	}
	// Seq 6 with only a catalogue: no results, no acks.
	r6 := ReceivedEnvelope{ID: "66666666666666666666666666666666", Channel: "results", Seq: 6, Catalogue: json.RawMessage(`{"v":6}`)}
	if got, err := s.ApplyResults(ctx, r6, &batch.Results{}, now.Add(2*time.Second)); err != nil || !got.CatalogueStored || len(got.Final) != 0 {
		t.Fatalf("apply seq 6: %+v %v", got, err)
	}
	// Seq 7 without a catalogue keeps seq 6's.
	if got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: "77777777777777777777777777777777", Channel: "results", Seq: 7},
		&batch.Results{}, now.Add(3*time.Second)); err != nil || got.CatalogueStored {
		t.Fatalf("apply seq 7: %+v %v", got, err)
	}
	c, err := s.Catalogue(ctx)
	if err != nil || c.Seq != 6 || string(c.Data) != `{"v":6}` || !c.Received.Equal(now.Add(2*time.Second)) {
		t.Fatalf("stored %+v %v, want seq 6", c, err)
	}
	if n := countRows(t, path, `SELECT count(*) FROM received`); n != 4 {
		t.Fatalf("%d envelopes recorded, want 4", n)
	}
}
