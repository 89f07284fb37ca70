package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"
)

// PeerKeysType is the first line of a peer-keys file that is not a comment.
const PeerKeysType = "ferry.peer-keys/v1"

// maxPeerKeysSize bounds a peer-keys file.
const maxPeerKeysSize = 1 << 20

// PeerKeysError is a problem in a peer-keys file, with its path and line.
type PeerKeysError struct {
	Path string
	Line int
	Err  error
}

// Error returns "PATH:LINE: detail".
func (e *PeerKeysError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err) }

// Unwrap returns the detail.
func (e *PeerKeysError) Unwrap() error { return e.Err }

// LoadPeerKeys returns the peer's keys: base (peer-sign.pub and
// peer-age.pub, as [LoadPeer] reads them) and those listed in dir's
// peer-keys file, with the windows and revocations the file records. The
// file may list base again, with the same age recipient, to record its
// window or revocation. Without a peer-keys file the result is base alone,
// valid without bounds. The keys are returned base first, then by From.
//
// A peer-keys file has a type line and one line per key, in this form
// (times in [TimeLayout], "-" for none); lines starting with '#' are
// comments:
//
//	ferry.peer-keys/v1
//	key <verifier key> age <age recipient> from <time|-> until <time|-> revoked <time|->
func LoadPeerKeys(dir string, base *Peer) ([]*PeerKey, error) {
	first := &PeerKey{Verifier: base.Verifier, VerifierKey: base.VerifierKey, Recipient: base.Recipient}
	path := filepath.Join(dir, PeerKeysFile)
	data, err := readSmall(path, maxPeerKeysSize)
	if err != nil {
		if _, statErr := os.Lstat(path); errors.Is(statErr, fs.ErrNotExist) {
			return []*PeerKey{first}, nil
		}
		return nil, err
	}
	listed, err := parsePeerKeys(path, data)
	if err != nil {
		return nil, err
	}
	out := []*PeerKey{first}
	for i, k := range listed {
		perr := func(format string, args ...any) error {
			return &PeerKeysError{Path: path, Line: k.line, Err: fmt.Errorf(format, args...)}
		}
		if k.Verifier.Name() != base.Name {
			return nil, perr("key of zone %q, the peer is %q", k.Verifier.Name(), base.Name)
		}
		if k.Verifier.KeyHash() == base.Verifier.KeyHash() {
			if k.VerifierKey != base.VerifierKey || k.Recipient.String() != base.Recipient.String() {
				return nil, perr("key %s differs from the one in %s or %s", k.ID(), PeerSignPubFile, PeerAgePubFile)
			}
			*first = k.PeerKey
			continue
		}
		for _, o := range listed[:i] {
			if o.Verifier.KeyHash() == k.Verifier.KeyHash() {
				return nil, perr("key %s is listed twice", k.ID())
			}
		}
		out = append(out, &k.PeerKey)
	}
	slices.SortStableFunc(out[1:], func(a, b *PeerKey) int { return a.From.Compare(b.From) })
	return out, nil
}

type listedKey struct {
	PeerKey
	line int
}

// parsePeerKeys parses the lines of a peer-keys file strictly.
func parsePeerKeys(path string, data []byte) ([]*listedKey, error) {
	if !bytes.HasSuffix(data, []byte("\n")) {
		return nil, &PeerKeysError{Path: path, Line: bytes.Count(data, []byte("\n")) + 1, Err: errors.New("file does not end with a newline")}
	}
	var out []*listedKey
	typed := false
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		perr := func(format string, args ...any) error {
			return &PeerKeysError{Path: path, Line: i + 1, Err: fmt.Errorf(format, args...)}
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !typed {
			if line != PeerKeysType {
				return nil, perr("want %q", PeerKeysType)
			}
			typed = true
			continue
		}
		f := strings.Split(line, " ")
		if len(f) != 10 || f[0] != "key" || f[2] != "age" || f[4] != "from" || f[6] != "until" || f[8] != "revoked" {
			return nil, perr("want \"key VKEY age RECIPIENT from TIME until TIME revoked TIME\"")
		}
		v, err := note.NewVerifier(f[1])
		if err != nil {
			return nil, perr("invalid verifier key: %v", err)
		}
		r, err := age.ParseX25519Recipient(f[3])
		if err != nil || r.String() != f[3] {
			return nil, perr("invalid age recipient")
		}
		k := &listedKey{PeerKey: PeerKey{Verifier: v, VerifierKey: f[1], Recipient: r}, line: i + 1}
		for j, dst := range []*time.Time{&k.From, &k.Until, &k.Revoked} {
			if f[5+2*j] == "-" {
				continue
			}
			if *dst, err = parseTime(f[5+2*j]); err != nil {
				return nil, perr("%s: %v", f[4+2*j], err)
			}
		}
		if !k.Until.IsZero() && k.Until.Before(k.From) {
			return nil, perr("until is before from")
		}
		out = append(out, k)
	}
	if !typed {
		return nil, &PeerKeysError{Path: path, Line: 1, Err: fmt.Errorf("want %q", PeerKeysType)}
	}
	return out, nil
}

// WritePeerKeys replaces dir's peer-keys file with one listing ks,
// atomically: a new file is written and synced, then renamed over the old
// one, and the directory is synced.
func WritePeerKeys(dir string, ks []*PeerKey) error {
	var b strings.Builder
	b.WriteString("# The peer zone's accepted keys, with their windows and revocations.\n")
	b.WriteString("# Written by 'ferryctl keys accept' and 'ferryctl keys revoke'; see docs/keys.md.\n")
	b.WriteString(PeerKeysType + "\n")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(TimeLayout)
	}
	for _, k := range ks {
		fmt.Fprintf(&b, "key %s age %s from %s until %s revoked %s\n",
			k.VerifierKey, k.Recipient, ts(k.From), ts(k.Until), ts(k.Revoked))
	}
	return writeAtomic(filepath.Join(dir, PeerKeysFile), []byte(b.String()), 0o644)
}

// writeAtomic replaces path with data: it writes a new temporary file
// beside it (O_EXCL), syncs and closes it, renames it over path and syncs
// the directory, so that a crash leaves the old file or the new one. The
// temporary file is removed on error.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := writeNew(tmp, data, mode); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory, so that renames and creations in it last.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
