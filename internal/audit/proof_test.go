package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestLog_Prove(t *testing.T) {
	l, _, v := newTestLog(t, 45)
	for _, idx := range []int64{0, 1, 17, 31, 44} {
		p, err := l.Prove(context.Background(), idx)
		if err != nil {
			t.Fatalf("Prove(%d): %v", idx, err)
		}
		e, got, c, err := VerifyProof(p, v)
		if err != nil {
			t.Fatalf("VerifyProof of entry %d: %v\n%s", idx, err, p)
		}
		if got != idx || c.Size != 45 || e.Request != entry(int(idx)).Request {
			t.Fatalf("VerifyProof: entry %+v at %d under size %d", e, got, c.Size)
		}
	}
	if _, err := l.Prove(context.Background(), 45); err == nil {
		t.Error("Prove of an entry no checkpoint covers succeeded")
	}
	if _, err := l.Prove(context.Background(), -1); err == nil {
		t.Error("Prove(-1) succeeded")
	}

	good, _ := l.Prove(context.Background(), 17)
	other, _ := l.Prove(context.Background(), 18)
	_, otherKey := testKeys(t, "dmz")
	// Each altered proof fails.
	for name, p := range map[string][]byte{
		"entry changed": bytes.Replace(good, []byte("extra "+b64(t, l, 17)), []byte("extra "+b64(t, l, 18)), 1),
		"index changed": bytes.Replace(good, []byte("index 17\n"), []byte("index 16\n"), 1),
		"hash line dropped": func() []byte {
			lines := strings.SplitN(string(good), "\n", 5)
			return []byte(strings.Join(append(lines[:3], lines[4]), "\n"))
		}(),
		"other entry's path": func() []byte {
			g, o := strings.SplitN(string(good), "\n", 4), strings.SplitN(string(other), "\n", 4)
			return []byte(strings.Join(append(g[:3], o[3]), "\n"))
		}(),
		"no checkpoint": good[:bytes.Index(good, []byte("\n\n"))],
		"not a proof":   []byte("hello\n\nworld"),
	} {
		if _, _, _, err := VerifyProof(p, v); err == nil {
			t.Errorf("%s: VerifyProof accepted it", name)
		}
	}
	if _, _, _, err := VerifyProof(good, otherKey); err == nil {
		t.Error("VerifyProof accepted a proof under another key of the same name")
	}
}

// b64 returns the base64 of entry idx's body.
func b64(t *testing.T, l *Log, idx int64) string {
	t.Helper()
	var body []byte
	if err := l.db.QueryRow(`SELECT body FROM audit_entries WHERE idx = ?`, idx).Scan(&body); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(body)
}

func TestEntry_Encode(t *testing.T) {
	e := Entry{Time: time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("CST", 8*3600)), Zone: "dmz", Event: EventAdmin, Detail: "<policy> & more"}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-23T02:00:00.123Z","zone":"dmz","event":"admin","detail":"<policy> & more"}`
	if string(b) != want {
		t.Fatalf("Encode:\n got %s\nwant %s", b, want)
	}
	back, err := DecodeEntry(b)
	if err != nil || back.Detail != e.Detail || !back.Time.Equal(e.Time.Truncate(time.Millisecond)) {
		t.Fatalf("DecodeEntry: %+v, %v", back, err)
	}
	if _, err := DecodeEntry([]byte(`{"time":"2026-11-23T02:00:00Z","zone":"dmz","event":"x","name":"Zhang San"}`)); err == nil {
		t.Error("DecodeEntry accepted an unknown field")
	}
	if _, err := (Entry{Event: "x"}).Encode(); err == nil {
		t.Error("Encode accepted an entry without a zone")
	}
	long := Entry{Time: e.Time, Zone: "dmz", Event: EventAdmin, Detail: strings.Repeat("日本", 2000)}
	b, err = long.Encode()
	if err != nil || len(b) > MaxEntrySize {
		t.Fatalf("Encode of a long detail: %d bytes, %v", len(b), err)
	}
	if back, err := DecodeEntry(b); err != nil || !strings.HasSuffix(back.Detail, "...") || strings.ContainsRune(back.Detail, '\uFFFD') {
		t.Fatalf("a long detail was not cut cleanly at a rune: %v", err)
	}
}

func TestHasher(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, HMACKeySize), bytes.Repeat([]byte{2}, HMACKeySize)
	h1, err := NewHasher(k1)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := NewHasher(k2)
	id := "110101199003074578"
	if h1.Subject(id) != h1.Subject(id) || len(h1.Subject(id)) != 32 {
		t.Fatal("Subject is not a stable 32-digit hash")
	}
	if h1.Subject(id) == h2.Subject(id) {
		t.Error("two keys give the same subject hash")
	}
	if h1.Subject(id) == h1.Params([]byte(id)) {
		t.Error("a subject and parameters of the same bytes hash alike")
	}
	if strings.Contains(h1.Subject(id), id) || h1.Subject("") != "" {
		t.Error("Subject leaks or hashes the empty subject")
	}
	if _, err := NewHasher(k1[:16]); err == nil {
		t.Error("NewHasher accepted a 16-byte key")
	}
}
