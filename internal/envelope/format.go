package envelope

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/keys"
)

// Wire constants of format v1. docs/envelope.md is normative.
const (
	framePrefix  = "ferry-envelope/" // framing line, before the version
	frameV1      = "ferry-envelope/v1 "
	maxFrameLine = 32 // bytes, newline included; a v1 framing line is at most 23

	typeLine     = "ferry.envelope/v1" // first line of the signed header text
	typePrefix   = "ferry.envelope/"
	manifestLine = "ferry.manifest/v1" // first line of the plaintext

	timeLayout = "2006-01-02T15:04:05Z" // RFC 3339, UTC, whole seconds
)

// Bounds on header times: four-digit years that RFC 3339 can carry.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// headerKeys are the keys of the header lines after the type line, in
// their fixed order.
var headerKeys = [...]string{
	"id", "kind", "from", "to", "channel", "seq", "prev", "created", "expires", "payload",
}

// encodeHeader returns the header text that is signed: the type line and
// one line per field, each ending in a newline. h must be valid.
func encodeHeader(h *Header) []byte {
	b := make([]byte, 0, 512)
	b = append(b, typeLine+"\n"...)
	b = append(b, "id "+h.ID+"\n"...)
	b = append(b, "kind "+string(h.Kind)+"\n"...)
	b = append(b, "from "+h.From+" "+h.FromKey+"\n"...)
	b = append(b, "to "+h.To+" "+h.ToKey+"\n"...)
	b = append(b, "channel "+h.Channel+"\n"...)
	b = strconv.AppendUint(append(b, "seq "...), h.Seq, 10)
	b = hex.AppendEncode(append(b, "\nprev "...), h.Prev[:])
	b = h.Created.UTC().AppendFormat(append(b, "\ncreated "...), timeLayout)
	b = h.Expires.UTC().AppendFormat(append(b, "\nexpires "...), timeLayout)
	b = hex.AppendEncode(append(b, "\npayload sha256:"...), h.PayloadSHA256[:])
	b = strconv.AppendInt(append(b, ' '), h.PayloadSize, 10)
	return append(b, '\n')
}

// encodeManifest returns the manifest that starts the plaintext: the
// manifest type line, the fields of h that identify the envelope, and the
// blank line that separates the manifest from the body.
func encodeManifest(h *Header) []byte {
	b := make([]byte, 0, 256)
	b = append(b, manifestLine+"\n"...)
	b = append(b, "id "+h.ID+"\n"...)
	b = append(b, "kind "+string(h.Kind)+"\n"...)
	b = append(b, "from "+h.From+" "+h.FromKey+"\n"...)
	b = append(b, "to "+h.To+" "+h.ToKey+"\n"...)
	b = append(b, "channel "+h.Channel+"\n"...)
	b = strconv.AppendUint(append(b, "seq "...), h.Seq, 10)
	b = h.Created.UTC().AppendFormat(append(b, "\ncreated "...), timeLayout)
	return append(b, "\n\n"...)
}

// splitFrame parses the framing line and returns the signed note and the
// payload that follows it. It looks at nothing else.
func splitFrame(data []byte) (signedNote, payload []byte, err error) {
	i := bytes.IndexByte(data[:min(len(data), maxFrameLine)], '\n')
	if i < 0 {
		if bytes.HasPrefix(data, []byte(framePrefix)) && len(data) >= maxFrameLine {
			return nil, nil, reject(ReasonMalformed, "framing line longer than %d bytes", maxFrameLine)
		}
		return nil, nil, reject(ReasonMalformed, "no framing line")
	}
	line := string(data[:i])
	if !strings.HasPrefix(line, framePrefix) {
		return nil, nil, reject(ReasonMalformed, "not a ferry envelope")
	}
	if !strings.HasPrefix(line, frameV1) {
		return nil, nil, reject(ReasonBadVersion, "framing line %q: this reader supports v1 only", line)
	}
	n, ok := parseDecimal(line[len(frameV1):])
	if !ok || n == 0 {
		return nil, nil, reject(ReasonMalformed, "framing line %q: bad note length", line)
	}
	if n > MaxNoteSize {
		return nil, nil, reject(ReasonTooLarge, "signed note of %d bytes exceeds %d", n, MaxNoteSize)
	}
	rest := data[i+1:]
	if n > uint64(len(rest)) {
		return nil, nil, reject(ReasonMalformed, "truncated: signed note of %d bytes, %d left", n, len(rest))
	}
	return rest[:n], rest[n:], nil
}

// noteText returns the text of a signed note, without checking its
// signatures: everything up to and including the newline before the last
// blank line, as in C2SP signed-note.
func noteText(signedNote []byte) ([]byte, error) {
	i := bytes.LastIndex(signedNote, []byte("\n\n"))
	if i < 0 {
		return nil, reject(ReasonMalformed, "signed note has no signature block")
	}
	return signedNote[:i+1], nil
}

// parseHeader parses header text strictly: fixed line order, no unknown or
// repeated lines, canonical encodings only.
func parseHeader(text []byte) (*Header, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, reject(ReasonMalformed, "header text does not end in a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if lines[0] != typeLine {
		if strings.HasPrefix(lines[0], typePrefix) {
			return nil, reject(ReasonBadVersion, "header type %q: this reader supports %q only", short(lines[0]), typeLine)
		}
		return nil, reject(ReasonMalformed, "header does not start with %q", typeLine)
	}
	h := new(Header)
	for i, key := range headerKeys {
		if i+1 >= len(lines) {
			return nil, reject(ReasonMalformed, "header: missing %q line", key)
		}
		k, v, ok := strings.Cut(lines[i+1], " ")
		if !ok || k != key {
			return nil, reject(ReasonMalformed, "header line %d: want a %q line", i+2, key)
		}
		if !parseField(h, key, v) {
			return nil, reject(ReasonMalformed, "header: invalid %q line", key)
		}
	}
	if len(lines) > 1+len(headerKeys) {
		return nil, reject(ReasonMalformed, "header: unexpected line %d after %q", len(headerKeys)+2, "payload")
	}
	if !h.Expires.After(h.Created) {
		return nil, reject(ReasonMalformed, "header: expires is not after created")
	}
	// Every field parser above is strict, but comparing with the canonical
	// encoding makes it certain that one header has exactly one text, so
	// that the header hash names the header.
	if !bytes.Equal(encodeHeader(h), text) {
		return nil, reject(ReasonMalformed, "header is not in canonical form")
	}
	return h, nil
}

// parseField sets the field of h that key names from its value v and
// reports whether v was valid.
func parseField(h *Header, key, v string) bool {
	var ok bool
	switch key {
	case "id":
		h.ID, ok = v, ValidID(v)
	case "kind":
		h.Kind = Kind(v)
		ok = h.Kind.valid()
	case "from":
		h.From, h.FromKey, ok = strings.Cut(v, " ")
		ok = ok && keys.ValidZoneName(h.From) && isLowerHex(h.FromKey, 8)
	case "to":
		h.To, h.ToKey, ok = strings.Cut(v, " ")
		ok = ok && keys.ValidZoneName(h.To) && isLowerHex(h.ToKey, 16)
	case "channel":
		h.Channel, ok = v, ValidChannelName(v)
	case "seq":
		h.Seq, ok = parseDecimal(v)
	case "prev":
		ok = parseHash(&h.Prev, v)
	case "created":
		h.Created, ok = parseTime(v)
	case "expires":
		h.Expires, ok = parseTime(v)
	case "payload":
		sum, size, cut := strings.Cut(v, " ")
		hexSum, isSHA := strings.CutPrefix(sum, "sha256:")
		n, isNum := parseDecimal(size)
		ok = cut && isSHA && isNum && n <= 1<<62 && parseHash(&h.PayloadSHA256, hexSum)
		h.PayloadSize = int64(n)
	}
	return ok
}

// parseDecimal parses a canonical unsigned decimal: digits only, no sign,
// no leading zeros, at most 20 digits and within uint64.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || s[0] == '0' && len(s) > 1 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// parseHash decodes 64 lowercase hex digits into dst.
func parseHash(dst *[32]byte, s string) bool {
	if !isLowerHex(s, 64) {
		return false
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err == nil
}

// parseTime parses a header time: RFC 3339 in UTC with whole seconds,
// written exactly as timeLayout writes it.
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s || t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, false
	}
	return t, true
}
