package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pair makes two zones' key directories that trust each other, as
// ferryctl init does.
func pair(t *testing.T) (dmzDir, inDir string) {
	t.Helper()
	dmzDir, dz := writeZone(t, "dmz")
	inDir, in := writeZone(t, "intranet")
	if err := WritePeer(dmzDir, in.Public()); err != nil {
		t.Fatal(err)
	}
	if err := WritePeer(inDir, dz.Public()); err != nil {
		t.Fatal(err)
	}
	return dmzDir, inDir
}

func readStatement(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRing_RotateAcceptRevoke(t *testing.T) {
	dmzDir, inDir := pair(t)
	before, err := LoadRing(dmzDir)
	if err != nil {
		t.Fatal(err)
	}
	oldID := before.Own[0].ID()
	from := t0.Add(time.Hour)
	s, path, err := Rotate(dmzDir, from, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{SignKeyFile, AgeKeyFile} {
		fi, err := os.Stat(filepath.Join(filepath.Dir(path), f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, fi.Mode())
		}
	}
	own, err := LoadRing(dmzDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(own.Own) != 2 || own.Own[1].ID() != s.KeyID() || s.Old != oldID {
		t.Fatalf("own keys after rotate: %d, statement %+v", len(own.Own), s)
	}
	// Own windows: old key signs before from, new one from then on; the
	// old identity decrypts until from+overlap.
	for _, c := range []struct {
		at   time.Time
		sign string
		old  bool
	}{
		{t0, oldID, true},
		{from.Add(-time.Second), oldID, true},
		{from, s.KeyID(), true},
		{from.Add(2*time.Hour - time.Second), s.KeyID(), true},
		{from.Add(2 * time.Hour), s.KeyID(), false},
	} {
		if got := own.SignerAt(c.at).ID(); got != c.sign {
			t.Errorf("SignerAt(%s) = %s, want %s", c.at, got, c.sign)
		}
		if got := own.Identity(Fingerprint(own.Own[0].Recipient), c.at) != nil; got != c.old {
			t.Errorf("old identity at %s: %v, want %v", c.at, got, c.old)
		}
		if own.Identity(Fingerprint(own.Own[1].Recipient), c.at) == nil {
			t.Errorf("new identity refused at %s", c.at)
		}
	}

	// The intranet accepts it, once.
	data := readStatement(t, path)
	if _, already, err := Accept(inDir, data); err != nil || already {
		t.Fatalf("Accept: already %v, %v", already, err)
	}
	if _, already, err := Accept(inDir, data); err != nil || !already {
		t.Fatalf("Accept again: already %v, %v; want already", already, err)
	}
	ring, err := LoadAgentRing(inDir, "intranet", "dmz")
	if err != nil {
		t.Fatal(err)
	}
	old, nw := ring.PeerKey("dmz", own.Own[0].Verifier.KeyHash()), ring.PeerKey("dmz", own.Own[1].Verifier.KeyHash())
	if old == nil || nw == nil || ring.PeerKey("intranet", nw.Verifier.KeyHash()) != nil {
		t.Fatal("peer keys not found by name and hash")
	}
	for _, c := range []struct {
		at       time.Time
		old, new bool
		seal     string
	}{
		{t0, true, false, old.ID()},
		{from, true, true, nw.ID()},
		{from.Add(2 * time.Hour), false, true, nw.ID()},
	} {
		if old.ValidAt(c.at) != c.old || nw.ValidAt(c.at) != c.new {
			t.Errorf("at %s: old valid %v, new valid %v; want %v, %v", c.at, old.ValidAt(c.at), nw.ValidAt(c.at), c.old, c.new)
		}
		if got := ring.RecipientAt(c.at).ID(); got != c.seal {
			t.Errorf("RecipientAt(%s) = %s, want %s", c.at, got, c.seal)
		}
	}

	// Revocation: the new key is the only valid one after the overlap.
	late := from.Add(3 * time.Hour)
	if _, _, err := Revoke(inDir, nw.ID(), late, false); !errors.Is(err, ErrLastKey) {
		t.Fatalf("revoking the only valid key: %v, want ErrLastKey", err)
	}
	if _, _, err := Revoke(inDir, "deadbeef", late, false); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("revoking an unknown key: %v, want ErrNoSuchKey", err)
	}
	if _, already, err := Revoke(inDir, old.ID(), late, false); err != nil || already {
		t.Fatalf("Revoke old: %v %v", already, err)
	}
	if _, already, err := Revoke(inDir, old.ID(), late, false); err != nil || !already {
		t.Fatalf("Revoke old again: %v %v, want already", already, err)
	}
	ring, err = LoadAgentRing(inDir, "intranet", "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if k := ring.PeerKey("dmz", old.Verifier.KeyHash()); !k.IsRevoked() || k.ValidAt(t0) {
		t.Fatal("revoked key still valid after reload")
	}
	if got := ring.RecipientAt(t0).ID(); got != nw.ID() {
		t.Errorf("RecipientAt before from with the old key revoked = %s, want the new key %s", got, nw.ID())
	}
	// Every key revoked: the agent refuses the ring.
	if _, _, err := Revoke(inDir, nw.ID(), late, true); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAgentRing(inDir, "intranet", "dmz"); !errors.Is(err, ErrAllRevoked) {
		t.Fatalf("LoadAgentRing with every peer key revoked: %v", err)
	}
}

func TestAccept_Refusals(t *testing.T) {
	dmzDir, inDir := pair(t)
	_, path, err := Rotate(dmzDir, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := readStatement(t, path)

	// Another zone's statement, given to the DMZ (whose peer is the intranet).
	_, dmzPath, err := Rotate(inDir, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Accept(inDir, readStatement(t, dmzPath)); !errors.Is(err, ErrWrongZone) {
		t.Errorf("own statement given back: %v, want ErrWrongZone", err)
	}

	// Signed by the new key only: untrusted.
	own, err := LoadOwnKeys(dmzDir)
	if err != nil {
		t.Fatal(err)
	}
	newKey := own[1]
	text := good[:strings.Index(string(good), "\n\n")+1]
	onlyNew, err := note.Sign(&note.Note{Text: string(text)}, newKey.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Accept(inDir, onlyNew); !errors.Is(err, ErrUntrusted) {
		t.Errorf("signed by the new key only: %v, want ErrUntrusted", err)
	}
	// Signed by the old key only: not both.
	onlyOld, err := note.Sign(&note.Note{Text: string(text)}, own[0].Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Accept(inDir, onlyOld); !errors.Is(err, ErrBadStatementSignature) {
		t.Errorf("signed by the old key only: %v, want ErrBadStatementSignature", err)
	}
	// A changed line: the signatures break.
	bad := []byte(strings.Replace(string(good), "from ", "from 2", 1))
	if _, _, err := Accept(inDir, bad); err == nil {
		t.Error("changed statement accepted")
	}
	// A malformed line, correctly signed: named by its line.
	mangled := strings.Replace(string(text), "old ", "old  ", 1)
	signed, err := note.Sign(&note.Note{Text: mangled}, own[0].Signer, newKey.Signer)
	if err != nil {
		t.Fatal(err)
	}
	var se *StatementError
	if _, _, err := Accept(inDir, signed); !errors.As(err, &se) || se.Line != 6 {
		t.Errorf("malformed old line: %v, want a StatementError on line 6", err)
	}
	// Nothing was recorded by the refusals.
	if _, err := os.Stat(filepath.Join(inDir, PeerKeysFile)); err == nil {
		t.Error("a refused statement wrote peer-keys")
	}
	if _, _, err := Accept(inDir, good); err != nil {
		t.Fatal(err)
	}
}

func TestRotate_Chain(t *testing.T) {
	dmzDir, inDir := pair(t)
	_, p1, err := Rotate(dmzDir, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(dmzDir, t0, time.Hour); err == nil {
		t.Fatal("a second rotation with the same from was accepted")
	}
	_, p2, err := Rotate(dmzDir, t0.Add(24*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Out of order: the second statement follows a key the intranet does
	// not know yet.
	if _, _, err := Accept(inDir, readStatement(t, p2)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("second statement first: %v, want ErrUntrusted", err)
	}
	for _, p := range []string{p1, p2} {
		if _, _, err := Accept(inDir, readStatement(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	own, err := LoadOwnKeys(dmzDir)
	if err != nil || len(own) != 3 {
		t.Fatalf("LoadOwnKeys: %d keys, %v", len(own), err)
	}
	if own[0].To != t0 || own[1].To != t0.Add(24*time.Hour) || !own[2].To.IsZero() {
		t.Errorf("windows: %v %v %v", own[0].To, own[1].To, own[2].To)
	}
	// The first key can no longer introduce keys: a replayed statement by
	// it is not the newest.
	if _, _, err := Accept(inDir, readStatement(t, p1)); err != nil {
		t.Fatalf("re-accepting the first statement: %v, want already accepted", err)
	}
}

func TestLoadRing_RotatedKeyPermissions(t *testing.T) {
	dmzDir, _ := pair(t)
	_, path, err := Rotate(dmzDir, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(filepath.Dir(path), AgeKeyFile)
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRing(dmzDir); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), key) {
		t.Fatalf("LoadRing with a loose rotated key: %v, want ErrPermissions naming %s", err, key)
	}
}

func TestLoadRing_TamperedStatement(t *testing.T) {
	dmzDir, _ := pair(t)
	_, path, err := Rotate(dmzDir, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data := readStatement(t, path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "until 2026-03-01T13", "until 2026-03-09T13", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRing(dmzDir); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadRing with a tampered statement: %v", err)
	}
}

func TestLoadPeerKeys_Malformed(t *testing.T) {
	for name, content := range map[string]string{
		"no type":    "key x\n",
		"bad fields": PeerKeysType + "\nkey a b\n",
		"no newline": PeerKeysType,
		"bad time":   PeerKeysType + "\nkey %s age %s from yesterday until - revoked -\n",
		"other age":  PeerKeysType + "\nkey %s age age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq from - until - revoked -\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, inDir := pair(t)
			base, err := LoadPeer(inDir)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(content, "%s") == 2 {
				content = strings.Replace(strings.Replace(content, "%s", base.VerifierKey, 1), "%s", base.Recipient.String(), 1)
			} else if strings.Contains(content, "%s") {
				content = strings.Replace(content, "%s", base.VerifierKey, 1)
			}
			path := filepath.Join(inDir, PeerKeysFile)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadRing(inDir); err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadRing: %v, want an error naming %s", err, path)
			}
		})
	}
}

// FuzzParseStatement checks that ParseStatement never panics and that
// whatever it accepts is signed by the trusted key and re-encodes to the
// same text.
func FuzzParseStatement(f *testing.F) {
	old, err := Generate("dmz")
	if err != nil {
		f.Fatal(err)
	}
	nw, err := Generate("dmz")
	if err != nil {
		f.Fatal(err)
	}
	s := &Statement{From: t0, Until: t0.Add(time.Hour)}
	good, err := SignStatement(s, old, nw)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(s.text()))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatement(data, []note.Verifier{old.Verifier})
		if err != nil {
			var se *StatementError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a StatementError", err)
			}
			return
		}
		if st.Old != KeyID(old.Verifier.KeyHash()) || !strings.HasPrefix(string(data), st.text()) {
			t.Fatalf("accepted a statement that does not re-encode: %q", data)
		}
	})
}
