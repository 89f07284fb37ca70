package admin

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// sigLine is one signature line of a signed note, as it appears in the
// file: every line is kept, including lines that repeat a key.
type sigLine struct {
	name string
	hash uint32
	sig  []byte // the Ed25519 signature, without the key hash
	raw  string // the whole line without its newline
}

// openNote parses and verifies a signed note of at most max bytes against
// k (which may be nil). Unlike note.Open, it returns the note also when no
// known key signed it, returns every signature line, and verifies every
// line by a known key, including repeated ones: note.Open skips a second
// signature by a key it has seen without looking at it, and a file with a
// bad signature by a known admin must never pass.
//
// Errors match [ErrMalformed] or [ErrBadSignature].
func openNote(msg []byte, max int, k *Keyring) (*note.Note, []sigLine, error) {
	if len(msg) > max {
		return nil, nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, max)
	}
	n, err := note.Open(msg, k)
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case err == nil:
	case errors.As(err, &unverified):
		n = unverified.Note
	case errors.As(err, &invalid):
		return nil, nil, fmt.Errorf("%w by admin %s (key %08x)", ErrBadSignature, invalid.Name, invalid.Hash)
	default:
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// note.Open split msg at its last blank line: the text (with its final
	// newline), a newline, then the signature lines.
	block := msg[len(n.Text)+1:]
	var lines []sigLine
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		if i < 0 {
			return nil, nil, fmt.Errorf("%w: unterminated signature line", ErrMalformed)
		}
		l, err := parseSigLine(string(block[:i]))
		if err != nil {
			return nil, nil, err
		}
		block = block[i+1:]
		if v, ok := k.known(l.name, l.hash); ok && !v.Verify([]byte(n.Text), l.sig) {
			return nil, nil, fmt.Errorf("%w by admin %s (key %08x)", ErrBadSignature, l.name, l.hash)
		}
		lines = append(lines, l)
	}
	return n, lines, nil
}

func parseSigLine(line string) (sigLine, error) {
	rest, ok := strings.CutPrefix(line, "— ")
	name, b64, ok2 := strings.Cut(rest, " ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok || !ok2 || err != nil || len(raw) < 5 {
		return sigLine{}, fmt.Errorf("%w: bad signature line", ErrMalformed)
	}
	return sigLine{name: name, hash: binary.BigEndian.Uint32(raw), sig: raw[4:], raw: line}, nil
}
