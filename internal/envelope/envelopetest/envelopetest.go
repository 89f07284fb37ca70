// Package envelopetest takes envelope files apart for tests that forge or
// damage them: where the signed note, its signature line and the payload
// start, and copies with one bit flipped. Only tests import it.
package envelopetest

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

// Parts returns the offsets in an envelope file of the signed note's
// start, its signature line's start, and the payload's start.
func Parts(t testing.TB, data []byte) (note, sig, payload int) {
	t.Helper()
	nl := bytes.IndexByte(data, '\n')
	n, err := strconv.Atoi(strings.TrimPrefix(string(data[:max(nl, 0)]), "ferry-envelope/v1 "))
	if nl < 0 || err != nil {
		t.Fatalf("not an envelope: %.40q", data)
	}
	note, payload = nl+1, nl+1+n
	sig = note + bytes.LastIndex(data[note:payload], []byte("\n\n")) + 2
	return note, sig, payload
}

// FlipSignatureBit returns a copy of an envelope file with one bit of its
// Ed25519 signature flipped, the base64 re-encoded canonically, so that
// the file fails the signature's verification rather than its syntax.
func FlipSignatureBit(t testing.TB, data []byte) []byte {
	t.Helper()
	_, sig, payload := Parts(t, data)
	line := string(data[sig : payload-1])
	i := strings.LastIndexByte(line, ' ')
	raw, err := base64.StdEncoding.DecodeString(line[i+1:])
	if err != nil || len(raw) != 68 {
		t.Fatalf("signature line %q: %v", line, err)
	}
	raw[40] ^= 0x01 // past the 4-byte key hash
	out := append(bytes.Clone(data[:sig]), line[:i+1]+base64.StdEncoding.EncodeToString(raw)+"\n"...)
	return append(out, data[payload:]...)
}

// FlipBit returns a copy of data with bit 0 of data[i] flipped.
func FlipBit(data []byte, i int) []byte {
	out := bytes.Clone(data)
	out[i] ^= 0x01
	return out
}
