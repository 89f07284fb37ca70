package carry

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite testdata/example.manifest")

// testSigner returns the fixed test key of zone "dmz" in testdata (never
// use it for anything else) and its verifier.
func testSigner(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, err := os.ReadFile("testdata/test-dmz.key")
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := os.ReadFile("testdata/test-dmz.pub")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// exampleManifest is the worked example of docs/carry.md.
func exampleManifest() *Manifest {
	m := &Manifest{
		ID:      "9c1f0e5a7b3d4c2e8f6a1b0c9d8e7f60",
		From:    "dmz",
		FromKey: "ae3c2fe0",
		To:      "intranet",
		Created: time.Date(2026, 3, 1, 18, 30, 0, 0, time.UTC),
		Files: []File{
			{Name: "requests-00000000000000000041-4b2e12fbaa95c14e1482f4203bfcd474.fxe", Size: 1834},
			{Name: "requests-00000000000000000042-0d9a3c7e51f24b8a9e6c1d2f3a4b5c6d.fxe", Size: 912},
			{Name: "results-00000000000000000007-7f3a9b1c2d4e5f60718293a4b5c6d7e8.fxe", Size: 655},
		},
	}
	for i := range m.Files {
		m.Files[i].SHA256[0] = byte(0x10 * (i + 1))
		m.Files[i].SHA256[31] = byte(i + 1)
		m.Bytes += m.Files[i].Size
	}
	return m
}

// TestManifest_Example checks the worked example of docs/carry.md, kept in
// testdata/example.manifest (go test -run Example -update rewrites it).
func TestManifest_Example(t *testing.T) {
	signer, verifier := testSigner(t)
	signed, err := exampleManifest().Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "example.manifest")
	if *update {
		if err := os.WriteFile(path, signed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed, want) {
		t.Errorf("signed example =\n%s\nwant\n%s", signed, want)
	}
	m, err := ParseManifest(want, verifier, "intranet")
	if err != nil {
		t.Fatal(err)
	}
	resigned, err := m.Sign(signer)
	if err != nil || !bytes.Equal(resigned, want) {
		t.Errorf("parse and sign again: %v\n%s", err, resigned)
	}
}

// TestParseManifest_Rejects signs each mutation of a valid text with the
// right key, so that the parser itself must reject it.
func TestParseManifest_Rejects(t *testing.T) {
	signer, verifier := testSigner(t)
	valid, err := exampleManifest().text()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(valid), "\n"), "\n")
	f1, f2, f3 := lines[7], lines[8], lines[9]
	set := func(i int, v string) string {
		l := append([]string(nil), lines...)
		l[i] = v
		return strings.Join(l, "\n") + "\n"
	}
	files := func(fl ...string) string {
		return strings.Join(append(append([]string(nil), lines[:7]...), fl...), "\n") + "\n"
	}
	for _, tc := range []struct {
		name, text string
		want       error
	}{
		{"valid", string(valid), nil},
		{"other version", set(0, "ferry.carry/v2"), ErrBadVersion},
		{"other type", set(0, "ferry.envelope/v1"), ErrMalformed},
		{"uppercase id", set(1, "id 9C1F0E5A7B3D4C2E8F6A1B0C9D8E7F60"), ErrMalformed},
		{"short id", set(1, "id 9c1f"), ErrMalformed},
		{"from without key id", set(2, "from dmz"), ErrMalformed},
		{"from another key id", set(2, "from dmz 00000000"), ErrUnknownSender},
		{"from another zone", set(2, "from edge ae3c2fe0"), ErrUnknownSender},
		{"to another zone", set(3, "to archive"), ErrWrongRecipient},
		{"to invalid zone", set(3, "to Intranet"), ErrMalformed},
		{"time with offset", set(4, "created 2026-03-01T18:30:00+00:00"), ErrMalformed},
		{"fractional time", set(4, "created 2026-03-01T18:30:00.5Z"), ErrMalformed},
		{"files leading zero", set(5, "files 03"), ErrMalformed},
		{"files count short", set(5, "files 2"), ErrMalformed},
		{"files count zero", files() + "", ErrMalformed},
		{"bytes mismatch", set(6, "bytes 3402"), ErrMalformed},
		{"trailing space", set(6, lines[6]+" "), ErrMalformed},
		{"lines swapped", set(1, lines[2]), ErrMalformed},
		{"out of order", files(f2, f1, f3), ErrMalformed},
		{"repeated file", files(f1, f1, f3), ErrMalformed},
		{"channels out of order", files(f3, f1, f2), ErrMalformed},
		{"uppercase hash", set(7, strings.Replace(f1, "sha256:10", "sha256:1A", 1)), ErrMalformed},
		{"size leading zero", set(7, strings.Replace(f1, " 1834", " 01834", 1)), ErrMalformed},
		{"size too large", set(7, strings.Replace(f1, " 1834", " 67108865", 1)), ErrMalformed},
		{"path in name", set(7, strings.Replace(f1, "requests-", "../requests-", 1)), ErrMalformed},
		{"name not envelope shape", set(7, strings.Replace(f1, "requests-00000000000000000041-", "requests-41-", 1)), ErrMalformed},
		{"extra line", string(valid) + "note hello\n", ErrMalformed},
		{"blank line", strings.Replace(string(valid), "\nfiles", "\n\nfiles", 1), ErrMalformed},
		{"carriage return", strings.Replace(string(valid), "\n", "\r\n", 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed, err := note.Sign(&note.Note{Text: tc.text}, signer)
			if err != nil {
				// note.Sign refuses some texts itself (a blank line); a
				// reader must refuse them signed anyway.
				signed = append([]byte(tc.text+"\n"), sigLine(t, signer, tc.text)...)
			}
			_, err = ParseManifest(signed, verifier, "intranet")
			if !errors.Is(err, tc.want) || (tc.want != nil) != (err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// sigLine returns the signature line of text by signer, for texts that
// note.Sign refuses to sign.
func sigLine(t *testing.T, signer note.Signer, text string) []byte {
	t.Helper()
	sig, err := signer.Sign([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	raw := binary.BigEndian.AppendUint32(nil, signer.KeyHash())
	return []byte("\u2014 " + signer.Name() + " " + base64.StdEncoding.EncodeToString(append(raw, sig...)) + "\n")
}

func TestParseManifest_Signature(t *testing.T) {
	signer, verifier := testSigner(t)
	signed, err := exampleManifest().Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(signed, []byte("\n\n"))
	text, sig := signed[:i+2], signed[i+2:]
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"two signatures", append(bytes.Clone(signed), sig...), ErrBadSignature},
		{"no signature", text, ErrBadSignature},
		{"no blank line", bytes.Replace(signed, []byte("\n\n"), []byte("\n"), 1), ErrMalformed},
		{"non-canonical base64", bytes.Replace(signed, []byte("=\n"), []byte("\n"), 1), ErrBadSignature},
		{"wrong prefix", bytes.Replace(signed, []byte("\u2014 "), []byte("- "), 1), ErrBadSignature},
		{"bit flip in text", bytes.Replace(signed, []byte("to intranet"), []byte("to intranes"), 1), ErrBadSignature},
		{"too large", append(bytes.Clone(signed), make([]byte, MaxManifestSize)...), ErrTooLarge},
		{"empty", nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseManifest(tc.data, verifier, "intranet"); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestManifest_Sign(t *testing.T) {
	signer, _ := testSigner(t)
	m := exampleManifest()
	m.From = "edge"
	if _, err := m.Sign(signer); err == nil {
		t.Error("signed a manifest of another zone")
	}
	m = exampleManifest()
	m.Files[0], m.Files[1] = m.Files[1], m.Files[0]
	if _, err := m.Sign(signer); err == nil {
		t.Error("signed a manifest with files out of order")
	}
}
