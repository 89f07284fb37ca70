package audit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a log's commitment to its first Size entries: the root
// hash of the tree over them, named by the log's origin.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Text returns c as the body of a C2SP tlog-checkpoint note: the origin,
// the size in decimal and the root in base64, one per line.
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint parses the body of a checkpoint note. Extension lines
// after the root are refused: this log writes none.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, errors.New("checkpoint: want three lines: origin, size, root hash")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if origin == "" {
		return Checkpoint{}, errors.New("checkpoint: empty origin")
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad size %q", sizeText)
	}
	root, ok := decodeHash(strings.TrimSuffix(lines[2], "\n"))
	if !ok {
		return Checkpoint{}, errors.New("checkpoint: bad root hash")
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// OpenCheckpoint checks a signed checkpoint note against the log's
// verifier and returns the checkpoint, whose origin must be want. A note
// may carry other signatures too (a cosignature of the other zone): they
// are ignored here.
func OpenCheckpoint(msg []byte, v note.Verifier, want string) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != want {
		return Checkpoint{}, fmt.Errorf("checkpoint: origin %q, want %q", c.Origin, want)
	}
	return c, nil
}

// decodeHash decodes the base64 of a hash, accepting only its one
// encoding: the standard decoder skips '\r' and '\n' even when strict.
func decodeHash(s string) (tlog.Hash, bool) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != tlog.HashSize || base64.StdEncoding.EncodeToString(b) != s {
		return tlog.Hash{}, false
	}
	return tlog.Hash(b), true
}

// Origin returns the origin line of a zone's audit log.
func Origin(zone string) string { return "ferry.audit/" + zone }

// signCheckpoint signs c with s.
func signCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}
