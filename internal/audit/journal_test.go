package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLog_IngestJournal: admin actions appended to the journal are taken
// in once each, in order, as admin entries of the zone; a half-written
// last line waits for its end; lines that are not admin actions and a
// replaced journal are recorded, never their contents.
func TestLog_IngestJournal(t *testing.T) {
	ctx := context.Background()
	l, file, v := newTestLog(t, 0)
	keyDir := t.TempDir()
	jfile := filepath.Join(keyDir, JournalFile)
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 0 {
		t.Fatalf("no journal yet: %d, %v", n, err)
	}
	for i, action := range []string{"keys.rotate", "carry.export"} {
		if err := AppendJournal(keyDir, Entry{Event: EventAdmin, Actor: "alice", Decision: action, Count: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := AppendJournal(keyDir, Entry{Event: EventPolicyDecision, Decision: "x"}); err == nil {
		t.Fatal("AppendJournal wrote an entry that is not an admin action")
	}
	if fi, err := os.Stat(jfile); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("journal: %v, %v; want mode 0640", fi, err)
	}
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 2 {
		t.Fatalf("IngestJournal: %d, %v; want 2", n, err)
	}
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 0 {
		t.Fatalf("IngestJournal again: %d, %v; want nothing new", n, err)
	}
	es := entriesOf(t, file)
	if len(es) != 2 || es[0].Zone != "dmz" || es[0].Decision != "keys.rotate" || es[0].Actor != "alice" || es[1].Decision != "carry.export" {
		t.Fatalf("entries %+v", es)
	}

	// A line someone wrote by hand that is not an admin entry, a line
	// with a secret-looking value, and half a line.
	f, err := os.OpenFile(jfile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("hello 110101199003070012\n" + `{"time":"2026-11-23T00:00:00Z","zone":"x","event":"policy.decision"}` + "\n" + `{"time":"2026-11-23T00:00:00Z","zone":"x","event":"admin","decis`); err != nil {
		t.Fatal(err)
	}
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 0 {
		t.Fatalf("IngestJournal of bad lines: %d, %v", n, err)
	}
	es = entriesOf(t, file)
	if len(es) != 4 || es[2].Event != EventJournal || es[3].Event != EventJournal || !strings.Contains(es[2].Detail, "not an audit entry") ||
		!strings.Contains(es[3].Detail, "not an admin action") {
		t.Fatalf("bad lines recorded as %+v", es[2:])
	}
	for _, e := range es {
		if strings.Contains(e.Detail, "110101199003070012") {
			t.Fatal("a journal line's contents reached the log")
		}
	}
	if _, err := f.WriteString(`ion":"keys.revoke"}` + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 1 {
		t.Fatalf("IngestJournal of the completed line: %d, %v; want 1", n, err)
	}

	// The journal replaced by a shorter one: recorded, and read from its
	// start.
	if err := os.Remove(jfile); err != nil {
		t.Fatal(err)
	}
	if err := AppendJournal(keyDir, Entry{Event: EventAdmin, Actor: "bob", Decision: "keys.accept"}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.IngestJournal(ctx, jfile); err != nil || n != 1 {
		t.Fatalf("IngestJournal of a replaced journal: %d, %v; want 1", n, err)
	}
	es = entriesOf(t, file)
	last := es[len(es)-2:]
	if last[0].Event != EventJournal || !strings.Contains(last[0].Detail, "replaced or truncated") || last[1].Decision != "keys.accept" {
		t.Fatalf("after the replacement: %+v", last)
	}
	if _, err := Verify(ctx, file, v, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestLog_RunJournalAndRetention: Run takes the journal in at start and
// as it grows, and prunes at start what is older than the retention; a
// retention below the minimum is refused.
func TestLog_RunJournalAndRetention(t *testing.T) {
	l, file, _ := newTestLog(t, 0)
	old := entry(0)
	old.Time = time.Now().Add(-400 * 24 * time.Hour)
	if _, err := l.Append(context.Background(), old, entry(1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Run(context.Background(), RunConfig{Retention: 30 * 24 * time.Hour}); err == nil {
		t.Fatal("Run accepted a retention of 30 days")
	}
	keyDir := t.TempDir()
	if err := AppendJournal(keyDir, Entry{Event: EventAdmin, Actor: "alice", Decision: "carry.import"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, RunConfig{Drain: 5 * time.Millisecond, Journal: filepath.Join(keyDir, JournalFile), Retention: 365 * 24 * time.Hour})
	}()
	waitSize := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for l.Size() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the log holds %d entries, want %d", l.Size(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSize(4) // at start: the journal, a checkpoint, the pruning
	if err := AppendJournal(keyDir, Entry{Event: EventAdmin, Actor: "bob", Decision: "keys.revoke"}); err != nil {
		t.Fatal(err)
	}
	waitSize(5) // at a drain
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	var events []string
	for _, e := range entriesOf(t, file) {
		events = append(events, e.Event+"/"+e.Decision)
	}
	if got := strings.Join(events, " "); got != "/ request.accepted/accepted admin/carry.import audit.pruned/ admin/keys.revoke" {
		t.Fatalf("entries %s", got)
	}
}
