// Package envelope implements the ferry envelope format v1: a clear header,
// signed as a C2SP signed note with Ed25519, followed by an age (X25519)
// ciphertext of the payload. The normative specification is
// docs/envelope.md; this comment only summarises it.
//
// # Layout
//
// An envelope is one file:
//
//	ferry-envelope/v1 <N>\n      framing line; N is the length of the note
//	<signed note, N bytes>       header text lines, blank line, one signature
//	<age v1 binary ciphertext>   to the end of the file
//
// The header names the sender zone and signing key, the recipient zone and
// age key fingerprint, the channel, sequence number, previous header hash,
// validity window and the SHA-256 and size of the ciphertext. The plaintext
// starts with a manifest that repeats the identifying fields of the header,
// then a blank line, then the body.
//
// # Reading
//
// [Opener.Open] checks, in this order: the size cap; the framing line; the
// signature (exactly one, by the expected sender key); the header syntax and
// that the header names the signing key; with a [keys.Ring], that the
// signing key is not revoked and its window holds the header's created
// time; the recipient; expiry and clock skew; the payload hash and size;
// only then does it decrypt, with an identity that refuses more than two
// stanzas or any non-X25519 stanza, and reads the plaintext to its
// authenticated end; finally it compares the manifest with the header.
// Nothing but the framing line and the signature line is parsed before the
// signature holds.
//
// [Verify] does the same without the recipient, expiry and decryption steps,
// for auditors holding only the sender's public key. [Inspect] parses the
// header without verifying anything.
//
// # Errors
//
// Every failure caused by the envelope itself is a [*ParseError] carrying a
// stable reason code (see [Reason]; [Reasons] lists them all) and matching
// one sentinel with [errors.Is], such as [ErrBadSignature] or [ErrExpired].
// Two of them, [ReasonRevokedKey] and [ReasonKeyNotValid], only an [Opener]
// with a [keys.Ring] gives. Errors caused by the caller (an [Opener] without
// keys, an invalid [Header] given to [Seal]) are plain errors, and [Reason]
// returns "" for them.
//
// # Test vectors
//
// The committed vectors in testdata/envelope, listed in its vectors.json,
// are part of the specification: at least one for every reason code,
// those of the two key reasons opened with a key ring described there.
package envelope

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"github.com/ferrybridge/ferry/internal/keys"
)

// Kind says what an envelope carries.
type Kind string

// Envelope kinds.
const (
	KindRequests  Kind = "requests"
	KindResults   Kind = "results"
	KindHeartbeat Kind = "heartbeat"
)

// valid reports whether k is one of the kinds of format v1.
func (k Kind) valid() bool {
	return k == KindRequests || k == KindResults || k == KindHeartbeat
}

// Defaults for an [Opener].
const (
	DefaultMaxSize = 64 << 20        // whole envelope file, bytes
	DefaultMaxSkew = 5 * time.Minute // how far Created may be in the future
)

// MaxNoteSize is the largest signed note (the N of the framing line) a
// reader accepts. A valid v1 note is well under 1 KiB.
const MaxNoteSize = 4096

// FileExt is the extension of envelope files on a medium.
const FileExt = ".fxe"

// Header is the clear, signed part of an envelope. It carries no citizen data.
type Header struct {
	ID            string // 32 lowercase hex digits: 128 random bits
	Kind          Kind
	From          string // sender zone; equals the signing key's name
	FromKey       string // sender signing key id, keys.KeyID
	To            string // recipient zone
	ToKey         string // recipient age key fingerprint, keys.Fingerprint
	Channel       string
	Seq           uint64
	Prev          [32]byte // SHA-256 of the previous envelope's signed note on this channel; zero for the first
	Created       time.Time
	Expires       time.Time
	PayloadSHA256 [32]byte // of the age ciphertext
	PayloadSize   int64    // of the age ciphertext
}

// Sealed is an envelope ready to publish.
type Sealed struct {
	Header     Header
	HeaderHash [32]byte // SHA-256 of the signed note, the next envelope's Prev
	Data       []byte   // the whole file
}

// Opened is an envelope whose signature, header, payload and manifest held.
type Opened struct {
	Header     Header
	HeaderHash [32]byte
	Body       []byte
}

// NewID returns a fresh random envelope id: 128 bits from crypto/rand as
// 32 lowercase hex digits.
func NewID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (it aborts the program if the
	// system generator fails), so there is nothing to handle.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether id is a well-formed envelope id: 32 lowercase hex
// digits.
func ValidID(id string) bool { return isLowerHex(id, 32) }

// ValidChannelName reports whether name may name a channel. Channel names
// follow the zone name rules of [keys.ValidZoneName]: 1 to 32 characters of
// lowercase letters, digits and '-', starting with a letter.
func ValidChannelName(name string) bool { return keys.ValidZoneName(name) }

var fileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}\.fxe$`)

// ValidFileName reports whether name has the shape of an envelope file name.
// Every name [FileName] returns for a valid header satisfies it.
func ValidFileName(name string) bool { return fileNameRE.MatchString(name) }

// FileName returns the file name an envelope is published under:
// "<channel>-<seq, 20 digits>-<id>.fxe", so that names sort by sequence
// within a channel. h must be valid, as every header returned by [Seal],
// [Opener.Open], [Verify] and [Inspect] is; the result then satisfies
// [ValidFileName].
func FileName(h *Header) string {
	return fmt.Sprintf("%s-%020d-%s%s", h.Channel, h.Seq, h.ID, FileExt)
}

// isLowerHex reports whether s is exactly n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
