package envelope

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// ErrInvalidHeader is returned (wrapped) by [Seal] when the header or keys
// it is given cannot make a valid envelope. It is the caller's mistake, not
// the data's, so it is not a [*ParseError].
var ErrInvalidHeader = errors.New("invalid envelope header")

// headerReserve is the room Seal leaves in front of the ciphertext for the
// framing line and the signed note, so that the ciphertext is written once
// and never copied. A v1 framing line and note take about 700 bytes; a
// longer one still works, at the cost of one copy.
const headerReserve = 1024

// Seal signs and encrypts body as the envelope described by h. Seal fills
// FromKey, ToKey, PayloadSHA256 and PayloadSize; the caller fills the rest.
// Created and Expires are stored in UTC, truncated to whole seconds, and the
// returned Sealed.Header holds them as written.
//
// Seal returns an error wrapping [ErrInvalidHeader] if h.ID is not a
// [ValidID], h.Kind is unknown, h.From or h.To is not a valid zone name,
// h.From is not signer's name, h.Channel is not a [ValidChannelName],
// Expires is not after Created (after truncation) or a time is outside the
// years 1970 to 9999; and [ErrTooLarge] if the envelope would exceed
// [DefaultMaxSize].
func Seal(h Header, body []byte, signer note.Signer, to *age.X25519Recipient) (*Sealed, error) {
	if signer == nil || to == nil {
		return nil, fmt.Errorf("seal envelope: %w: no signer or no recipient", ErrInvalidHeader)
	}
	h.FromKey = keys.KeyID(signer.KeyHash())
	h.ToKey = keys.Fingerprint(to)
	h.Created = h.Created.UTC().Truncate(time.Second)
	h.Expires = h.Expires.UTC().Truncate(time.Second)
	if err := checkSealHeader(&h, signer); err != nil {
		return nil, fmt.Errorf("seal envelope: %w: %w", ErrInvalidHeader, err)
	}
	if len(body) > DefaultMaxSize {
		return nil, fmt.Errorf("seal envelope %s: %w: body of %d bytes", h.ID, ErrTooLarge, len(body))
	}
	s, err := build(&h, encodeManifest(&h), body, []age.Recipient{to}, []note.Signer{signer}, nil)
	if err != nil {
		return nil, fmt.Errorf("seal envelope %s: %w", h.ID, err)
	}
	if len(s.Data) > DefaultMaxSize {
		return nil, fmt.Errorf("seal envelope %s: %w: %d bytes, limit %d", h.ID, ErrTooLarge, len(s.Data), DefaultMaxSize)
	}
	return s, nil
}

// checkSealHeader checks every field of h that the caller fills.
func checkSealHeader(h *Header, signer note.Signer) error {
	switch {
	case !ValidID(h.ID):
		return fmt.Errorf("id %q is not 32 lowercase hex digits", h.ID)
	case !h.Kind.valid():
		return fmt.Errorf("unknown kind %q", h.Kind)
	case !keys.ValidZoneName(h.From):
		return fmt.Errorf("invalid sender zone %q", h.From)
	case h.From != signer.Name():
		return fmt.Errorf("sender zone %q is not the signing key's name %q", h.From, signer.Name())
	case !keys.ValidZoneName(h.To):
		return fmt.Errorf("invalid recipient zone %q", h.To)
	case !ValidChannelName(h.Channel):
		return fmt.Errorf("invalid channel name %q", h.Channel)
	case h.Created.Before(minTime) || h.Created.After(maxTime) || h.Expires.After(maxTime):
		return errors.New("created or expires outside the years 1970 to 9999")
	case !h.Expires.After(h.Created):
		return fmt.Errorf("expires %s is not after created %s", h.Expires.Format(timeLayout), h.Created.Format(timeLayout))
	}
	return nil
}

// build encrypts manifest‖body to recipients, completes h with the payload
// hash and size, signs the header text with signers and assembles the file.
// Seal calls it with one recipient, one signer and the manifest of h; the
// tests call it with other arguments to build hostile vectors. If editText
// is not nil, it may change the header text before it is signed.
func build(h *Header, manifest, body []byte, recipients []age.Recipient, signers []note.Signer, editText func([]byte) []byte) (*Sealed, error) {
	// The age ciphertext is the plaintext plus a header of about 200 bytes
	// per stanza, a 16-byte nonce and a 16-byte tag per 64 KiB chunk.
	ptLen := len(manifest) + len(body)
	capacity := headerReserve + 256*len(recipients) + 16 + ptLen + 16*(ptLen/(64<<10)+1)
	buf := &appendBuffer{b: make([]byte, headerReserve, capacity)}
	w, err := age.Encrypt(buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(manifest); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	payload := buf.b[headerReserve:]
	h.PayloadSHA256 = sha256.Sum256(payload)
	h.PayloadSize = int64(len(payload))

	text := encodeHeader(h)
	if editText != nil {
		text = editText(text)
	}
	signed, err := note.Sign(&note.Note{Text: string(text)}, signers...)
	if err != nil {
		return nil, fmt.Errorf("sign header: %w", err)
	}
	frame := strconv.AppendInt([]byte(frameV1), int64(len(signed)), 10)
	frame = append(frame, '\n')

	var data []byte
	if n := len(frame) + len(signed); n <= headerReserve {
		data = buf.b[headerReserve-n:]
		copy(data, frame)
		copy(data[len(frame):], signed)
	} else {
		data = make([]byte, 0, n+len(payload))
		data = append(append(append(data, frame...), signed...), payload...)
	}
	return &Sealed{Header: *h, HeaderHash: sha256.Sum256(signed), Data: data}, nil
}

// appendBuffer is an io.Writer that appends to a slice, like bytes.Buffer
// without its read side, so that the room reserved at the front stays put.
type appendBuffer struct{ b []byte }

func (a *appendBuffer) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
