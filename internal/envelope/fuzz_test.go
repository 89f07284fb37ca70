package envelope

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// addVectorSeeds adds every file under testdata/envelope to f's corpus.
func addVectorSeeds(f *testing.F) {
	f.Helper()
	err := filepath.WalkDir(vectorDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
}

// FuzzOpen opens arbitrary files with the vector keys at the vectors'
// time. Open must never panic, and whatever it accepts must also pass
// Verify and Inspect with the same header, and carry a body that is
// shorter than its ciphertext and opens the same way twice.
func FuzzOpen(f *testing.F) {
	addVectorSeeds(f)
	dmz, intranet := vectorKeys(f)
	o := vectorOpener(dmz, intranet, vectorNow, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := o.Open(data)
		if err != nil {
			if Reason(err) == "" {
				t.Fatalf("Open rejected without a reason: %v", err)
			}
			if got != nil {
				t.Fatal("Open returned an envelope with an error")
			}
			return
		}
		h, hh, err := Verify(data, dmz.verifier)
		if err != nil {
			t.Fatalf("Open accepted but Verify: %v", err)
		}
		if !sameHeader(h, &got.Header) || hh != got.HeaderHash {
			t.Fatalf("Verify header %+v, Open header %+v", h, got.Header)
		}
		ih, err := Inspect(data)
		if err != nil || !sameHeader(ih, &got.Header) {
			t.Fatalf("Inspect = %+v, %v", ih, err)
		}
		if int64(len(got.Body)+len(encodeManifest(&got.Header))) >= got.Header.PayloadSize {
			t.Fatalf("body of %d bytes from a payload of %d", len(got.Body), got.Header.PayloadSize)
		}
		again, err := o.Open(data)
		if err != nil || !bytes.Equal(again.Body, got.Body) {
			t.Fatalf("second Open differs: %v", err)
		}
		if !ValidFileName(FileName(&got.Header)) {
			t.Fatalf("FileName %q is not valid", FileName(&got.Header))
		}
	})
}

// FuzzInspect parses arbitrary files. Inspect must never panic, must give
// a reason for every rejection, and a header it returns must be valid and
// be the one canonical text found in the file.
func FuzzInspect(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Inspect(data)
		if err != nil {
			if Reason(err) == "" {
				t.Fatalf("Inspect rejected without a reason: %v", err)
			}
			return
		}
		if !bytes.Contains(data, encodeHeader(h)) {
			t.Fatal("the re-encoded header is not in the file")
		}
		if !ValidFileName(FileName(h)) {
			t.Fatalf("FileName %q is not valid", FileName(h))
		}
		if !ValidID(h.ID) || !h.Kind.valid() || !h.Expires.After(h.Created) || h.PayloadSize < 0 {
			t.Fatalf("invalid header %+v", h)
		}
	})
}

// FuzzOpenSigned reaches the parsing behind the signature check, which a
// holder of the sender's key (a stolen DMZ key) can feed anything: it signs
// arbitrary header text with the vector sender key, appends the payload of
// good_requests.fxe, and opens the result. Open must never panic, and may
// accept only the canonical header that describes that payload, written
// the one way the format allows. Its expiry and its prev alone may
// differ: the sender decides them and the manifest does not repeat them;
// Open checks only that the expiry is ahead, and the receiver checks prev
// against the envelopes it has (see "Channel order" in docs/envelope.md).
func FuzzOpenSigned(f *testing.F) {
	dmz, intranet := vectorKeys(f)
	good, err := os.ReadFile(filepath.Join(vectorDir, "good_requests.fxe"))
	if err != nil {
		f.Fatal(err)
	}
	signed, payload := splitFile(f, good)
	wantText, err := noteText(signed)
	if err != nil {
		f.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(vectorDir, "*"+FileExt))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if s, _, err := splitFrame(data); err == nil {
			if text, err := noteText(s); err == nil {
				f.Add(text)
			}
		}
	}
	want, err := parseHeader(wantText)
	if err != nil {
		f.Fatal(err)
	}
	o := vectorOpener(dmz, intranet, vectorNow, 0)
	f.Fuzz(func(t *testing.T, text []byte) {
		s, err := note.Sign(&note.Note{Text: string(text)}, dmz.signer)
		if err != nil {
			return // not a text note.Sign accepts
		}
		data := append(append(frame(s), s...), payload...)
		got, err := o.Open(data)
		if err != nil {
			if Reason(err) == "" {
				t.Fatalf("Open rejected without a reason: %v", err)
			}
			return
		}
		h := got.Header
		if !h.Expires.After(vectorNow) {
			t.Fatalf("Open accepted an envelope that expired at %v", h.Expires)
		}
		h.Expires, h.Prev = want.Expires, want.Prev
		if h != *want || !bytes.Equal(text, encodeHeader(&got.Header)) {
			t.Fatalf("Open accepted a header other than the canonical one:\n%s", text)
		}
		if !bytes.HasPrefix(got.Body, []byte(`{"requests"`)) {
			t.Fatalf("unexpected body %q", got.Body)
		}
	})
}
