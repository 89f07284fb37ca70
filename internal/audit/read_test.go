package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// openTestReader opens a Reader on file, closed at the end of the test.
func openTestReader(t *testing.T, file string) *Reader {
	t.Helper()
	r, err := OpenReader(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// readEntries collects what Entries passes to fn.
func readEntries(t *testing.T, r *Reader, from, limit int64) (idxs []int64, es []Entry, pruned []bool, err error) {
	t.Helper()
	err = r.Entries(context.Background(), from, limit, func(idx int64, e Entry, p bool) error {
		idxs, es, pruned = append(idxs, idx), append(es, e), append(pruned, p)
		return nil
	})
	return idxs, es, pruned, err
}

func TestReader_Entries(t *testing.T) {
	_, file, _ := newTestLog(t, 30)
	r := openTestReader(t, file)
	for _, tc := range []struct {
		name             string
		from, limit      int64
		wantFirst, wantN int64
	}{
		{"all", 0, 0, 0, 30},
		{"from", 25, 0, 25, 5},
		{"limit", 0, 4, 0, 4},
		{"from and limit", 10, 7, 10, 7},
		{"limit past the end", 28, 10, 28, 2},
		{"from past the end", 30, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idxs, es, pruned, err := readEntries(t, r, tc.from, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(idxs)) != tc.wantN {
				t.Fatalf("%d entries, want %d", len(idxs), tc.wantN)
			}
			for i, idx := range idxs {
				want := entry(int(tc.wantFirst) + i)
				if idx != tc.wantFirst+int64(i) || es[i].Request != want.Request || !es[i].Time.Equal(want.Time) || pruned[i] {
					t.Fatalf("entry %d: index %d, %+v, pruned %v; want %+v", i, idx, es[i], pruned[i], want)
				}
			}
		})
	}
	if err := r.Entries(context.Background(), -1, 0, func(int64, Entry, bool) error { return nil }); err == nil {
		t.Error("Entries from -1 succeeded")
	}
	// fn's error stops the walk and comes back as it is.
	stop := errors.New("stop")
	n := 0
	err := r.Entries(context.Background(), 0, 0, func(int64, Entry, bool) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("Entries with fn failing: %v after %d calls", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Entries(ctx, 0, 0, func(int64, Entry, bool) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Entries with a done context: %v", err)
	}
}

func TestReader_EntriesPruned(t *testing.T) {
	s, _ := testKeys(t, "dmz")
	file := filepath.Join(t.TempDir(), FileName)
	l, err := OpenLog(context.Background(), file, "dmz", s)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old := time.Now().Add(-200 * 24 * time.Hour).Truncate(time.Millisecond).UTC()
	for i := range 4 {
		e := entry(i)
		if i < 2 {
			e.Time = old
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Prune(context.Background(), time.Now().Add(-190*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, es, pruned, err := readEntries(t, openTestReader(t, file), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 5 || !pruned[0] || !pruned[1] || pruned[2] || pruned[3] || pruned[4] || es[4].Event != EventPruned {
		t.Fatalf("pruned flags %v", pruned)
	}
	if !es[0].Time.Equal(old) || es[0].Event != "" || es[2].Event != EventRequestAccepted {
		t.Errorf("entries %+v", es)
	}
}

func TestReader_EntriesBadBody(t *testing.T) {
	_, file, _ := newTestLog(t, 10)
	tamper(t, file, `UPDATE audit_entries SET body = CAST('not json' AS BLOB) WHERE idx = 4`)
	r := openTestReader(t, file)
	idxs, _, _, err := readEntries(t, r, 0, 0)
	var be *BodyError
	if !errors.As(err, &be) || be.Index != 4 || string(be.Body) != "not json" || !strings.Contains(err.Error(), "entry 4") {
		t.Fatalf("Entries over a bad body: %v", err)
	}
	if len(idxs) != 4 {
		t.Errorf("%d entries before the bad one, want 4", len(idxs))
	}
	// The caller may go on after it.
	idxs, _, _, err = readEntries(t, r, be.Index+1, 0)
	if err != nil || len(idxs) != 5 || idxs[0] != 5 {
		t.Errorf("Entries after the bad body: %v, %v", idxs, err)
	}
}

func TestReader_Checkpoints(t *testing.T) {
	l, file, v := newTestLog(t, 45) // checkpoints at 21, 42 and 45
	r := openTestReader(t, file)
	cps, err := r.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, msg := range cps {
		c, err := OpenCheckpoint(msg, v, l.Origin())
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, c.Size)
	}
	if len(sizes) != 3 || sizes[0] != 21 || sizes[1] != 42 || sizes[2] != 45 {
		t.Errorf("checkpoint sizes %v, want [21 42 45]", sizes)
	}
}

func TestReader_Prove(t *testing.T) {
	l, file, v := newTestLog(t, 45)
	r := openTestReader(t, file)
	for _, idx := range []int64{0, 22, 44} {
		got, err := r.Prove(context.Background(), idx)
		if err != nil {
			t.Fatalf("Prove(%d): %v", idx, err)
		}
		want, err := l.Prove(context.Background(), idx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Reader.Prove(%d) differs from Log.Prove", idx)
		}
		if _, gotIdx, _, err := VerifyProof(got, v); err != nil || gotIdx != idx {
			t.Fatalf("VerifyProof: %d, %v", gotIdx, err)
		}
	}
	// The log grows while the reader is open: entries after the newest
	// checkpoint cannot be proved until the next one.
	appendN(t, l, 45, 2)
	if _, err := r.Prove(context.Background(), 45); err == nil {
		t.Error("Prove of an entry no checkpoint covers succeeded")
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prove(context.Background(), 46); err != nil {
		t.Errorf("Prove after a new checkpoint: %v", err)
	}
	tamper(t, file, `DELETE FROM audit_entries WHERE idx = 3`)
	if _, err := r.Prove(context.Background(), 3); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Prove of a deleted entry: %v", err)
	}
}

// TestOpenReader: a Reader opens only audit databases, and reading
// changes nothing in the file.
func TestOpenReader(t *testing.T) {
	l, file, _ := newTestLog(t, 12)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := openTestReader(t, file)
	if _, _, _, err := readEntries(t, r, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prove(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	r.Close()
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("reading changed the database file")
	}

	dir := t.TempDir()
	other := filepath.Join(dir, "other.db")
	db, err := sqlitedb.Open(context.Background(), other, sqlitedb.Options{ApplicationID: 0x46595858})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	bare := filepath.Join(dir, "bare.db")
	db, err = sqlitedb.Open(context.Background(), bare, sqlitedb.Options{ApplicationID: applicationID})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for name, f := range map[string]string{
		"another kind of database": other,
		"no log tables":            bare,
		"no such file":             filepath.Join(dir, "absent.db"),
	} {
		if r, err := OpenReader(context.Background(), f); err == nil {
			r.Close()
			t.Errorf("%s: OpenReader succeeded", name)
		}
	}
}
