package carry

import (
	"bytes"
	"os"
	"testing"
)

// FuzzParseManifest feeds arbitrary bytes to the manifest reader, both as
// a signed manifest and as a text behind a valid signature. It must never
// panic, and whatever it accepts must encode back to the same bytes: the
// encoding is canonical. Seeds are in testdata/fuzz/FuzzParseManifest.
func FuzzParseManifest(f *testing.F) {
	signer, verifier := testSigner(f)
	example, err := os.ReadFile("testdata/example.manifest")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := ParseManifest(data, verifier, "intranet"); err == nil {
			again, err := m.Sign(signer)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("accepted manifest does not encode back: %v\n%q\n%q", err, data, again)
			}
		}
		// Most mutations break the signature; also parse the input as the
		// text a valid signature would cover.
		m, err := parseText(data)
		if err != nil {
			return
		}
		text, err := m.text()
		if err != nil || !bytes.Equal(text, data) {
			t.Fatalf("accepted text does not encode back: %v\n%q\n%q", err, data, text)
		}
	})
}
