package audit

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// componentDB returns a component's database with the outbox added.
func componentDB(t testing.TB, name string) *sql.DB {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), name+".db"), sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := MigrateOutbox(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	// Twice: a second migration is a no-op.
	if err := MigrateOutbox(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func outboxCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM audit_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDrain: what a committed transaction staged reaches the log once, in
// staging order; what a rolled-back one staged never does.
func TestDrain(t *testing.T) {
	l, file, v := newTestLog(t, 0)
	src := componentDB(t, "spool")
	ctx := context.Background()

	tx, _ := src.BeginTx(ctx, nil)
	if err := Stage(ctx, tx, entry(1), entry(2)); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	tx, _ = src.BeginTx(ctx, nil)
	if err := Stage(ctx, tx, entry(3), entry(4)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := Stage(ctx, src, entry(5)); err != nil {
		t.Fatal(err)
	}
	n, err := l.Drain(ctx, "spool", src)
	if err != nil || n != 3 {
		t.Fatalf("Drain: %d, %v; want 3", n, err)
	}
	if outboxCount(t, src) != 0 {
		t.Fatal("the outbox still holds drained entries")
	}
	if n, err := l.Drain(ctx, "spool", src); err != nil || n != 0 {
		t.Fatalf("Drain of an empty outbox: %d, %v", n, err)
	}
	var got []string
	rd := func() {
		got = nil
		rows, err := l.db.Query(`SELECT body FROM audit_entries ORDER BY idx`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			rows.Scan(&b)
			e, _ := DecodeEntry(b)
			got = append(got, e.Request)
		}
	}
	rd()
	if len(got) != 3 || got[0] != entry(3).Request || got[2] != entry(5).Request {
		t.Fatalf("log holds requests %v, want entries 3, 4, 5 in order", got)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, file, v, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDrain_interrupted: a drain that appended but died before deleting
// from the outbox (the rows put back here as it left them) takes nothing
// twice.
func TestDrain_interrupted(t *testing.T) {
	l, _, _ := newTestLog(t, 0)
	src := componentDB(t, "spool")
	ctx := context.Background()
	for i := range 5 {
		if err := Stage(ctx, src, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	var kept [][]any
	rows, _ := src.Query(`SELECT id, time, body FROM audit_outbox`)
	for rows.Next() {
		var id, tm int64
		var b []byte
		rows.Scan(&id, &tm, &b)
		kept = append(kept, []any{id, tm, b})
	}
	rows.Close()
	if n, err := l.Drain(ctx, "spool", src); err != nil || n != 5 {
		t.Fatalf("Drain: %d, %v", n, err)
	}
	for _, r := range kept {
		if _, err := src.Exec(`INSERT INTO audit_outbox (id, time, body) VALUES (?, ?, ?)`, r...); err != nil {
			t.Fatal(err)
		}
	}
	if err := Stage(ctx, src, entry(9)); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Drain(ctx, "spool", src); err != nil || n != 1 {
		t.Fatalf("Drain after an interrupted one: %d, %v; want only the new entry", n, err)
	}
	if l.Size() != 6 || outboxCount(t, src) != 0 {
		t.Fatalf("log holds %d entries, outbox %d; want 6 and 0", l.Size(), outboxCount(t, src))
	}
	// A second source keeps its own watermark.
	other := componentDB(t, "ledger")
	if err := Stage(ctx, other, entry(20)); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Drain(ctx, "ledger", other); err != nil || n != 1 {
		t.Fatalf("Drain of a second source: %d, %v", n, err)
	}
}

// TestLog_Run drains two sources while they stage, signs checkpoints, and
// on cancel drains and signs what is left.
func TestLog_Run(t *testing.T) {
	l, file, v := newTestLog(t, 0)
	a, b := componentDB(t, "a"), componentDB(t, "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, RunConfig{Sources: []Source{{Name: "a", DB: a, Read: a}, {Name: "b", DB: b}}, Drain: 5 * time.Millisecond, Checkpoint: 20 * time.Millisecond})
	}()
	for i := range 200 {
		db := a
		if i%3 == 0 {
			db = b
		}
		if err := Stage(context.Background(), db, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Size() < 150 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := Stage(context.Background(), a, entry(999)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	rep, err := Verify(context.Background(), file, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 201 || rep.Latest.Size != 201 || rep.Checkpoints < 2 {
		t.Fatalf("after Run: %+v; want 201 entries, all under a checkpoint", rep)
	}
}
