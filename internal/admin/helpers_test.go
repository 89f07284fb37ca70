package admin

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// testKey returns a deterministic key pair for name, so that test vectors
// and fuzz seeds are the same on every run. Ed25519 signing is
// deterministic too.
func testKey(t testing.TB, name string) (note.Signer, string) {
	t.Helper()
	seed := sha256.Sum256([]byte("ferry admin test key " + name))
	skey, vkey, err := note.GenerateKey(bytes.NewReader(seed[:]), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func testSigner(t testing.TB, name string) note.Signer {
	t.Helper()
	s, _ := testKey(t, name)
	return s
}

// testKeyring returns a keyring of the test keys of names.
func testKeyring(t testing.TB, names ...string) *Keyring {
	t.Helper()
	var vkeys []string
	for _, n := range names {
		_, v := testKey(t, n)
		vkeys = append(vkeys, v)
	}
	k, err := NewKeyring(vkeys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signPolicy signs policy with each of names in turn, extending sig.
func signPolicy(t testing.TB, policy, sig []byte, names ...string) []byte {
	t.Helper()
	for _, n := range names {
		var err error
		sig, err = SignPolicy(policy, sig, testSigner(t, n))
		if err != nil {
			t.Fatalf("sign as %s: %v", n, err)
		}
	}
	return sig
}

// signText signs an arbitrary text with the named test keys, bypassing
// every check of this package.
func signText(t testing.TB, text string, names ...string) []byte {
	t.Helper()
	var signers []note.Signer
	for _, n := range names {
		signers = append(signers, testSigner(t, n))
	}
	msg, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// sigLines returns the signature lines of a signed note, with newlines.
func sigLinesOf(t testing.TB, msg []byte) []string {
	t.Helper()
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("no signature block in %q", msg)
	}
	return strings.SplitAfter(strings.TrimSuffix(string(msg[i+2:]), "\n"), "\n")
}

// withLines returns msg's text followed by the given signature lines.
func withLines(t testing.TB, msg []byte, lines ...string) []byte {
	t.Helper()
	i := bytes.LastIndex(msg, []byte("\n\n"))
	out := append([]byte(nil), msg[:i+2]...)
	for _, l := range lines {
		out = append(out, strings.TrimSuffix(l, "\n")+"\n"...)
	}
	return out
}

// flipSig corrupts the signature of a signature line, keeping its key
// hash, so that it still names its key but no longer verifies.
func flipSig(line string) string {
	b := []byte(strings.TrimSuffix(line, "\n"))
	// 4+64 bytes are 92 base64 characters ending in one '='; a character
	// ten from the end lies well inside the Ed25519 signature.
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b) + "\n"
}

var testPolicy = []byte("version: 1\noperations: []\n")

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testRequestID = "4b2e12fbaa95c14e1482f4203bfcd474"
