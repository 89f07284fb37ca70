package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// DefaultRequired is the default number of distinct admin keys whose
// signatures a policy needs before it takes effect.
const DefaultRequired = 2

// SigSuffix is appended to a policy file's name to name its signature file.
const SigSuffix = ".sig"

// MaxSignatureSize caps a policy signature file. note caps a note at 100
// signature lines, which fit in well under a quarter of it.
const MaxSignatureSize = 64 << 10

// policyHeader is the first line of a policy signature's text.
const policyHeader = "ferry-policy-signature/v1"

// PolicyText returns the text that admins sign for a policy file's exact
// bytes:
//
//	ferry-policy-signature/v1
//	sha256 <64 lowercase hex digits of SHA-256 over the file's bytes>
//	size <the file's length in bytes, decimal>
//
// Every line ends in a newline. A signature binds these bytes and nothing
// else: not the file's name, not its place, not its meaning.
func PolicyText(policy []byte) string {
	sum := sha256.Sum256(policy)
	return fmt.Sprintf("%s\nsha256 %s\nsize %d\n", policyHeader, hex.EncodeToString(sum[:]), len(policy))
}

// parsePolicyText strictly parses the text of a policy signature.
func parsePolicyText(text string) (sum []byte, size int64, err error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" || lines[0] != policyHeader {
		return nil, 0, errors.New("not a ferry-policy-signature/v1 text")
	}
	h, ok := strings.CutPrefix(lines[1], "sha256 ")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return nil, 0, errors.New("bad sha256 line")
	}
	if sum, err = hex.DecodeString(h); err != nil {
		return nil, 0, errors.New("bad sha256 line")
	}
	s, ok := strings.CutPrefix(lines[2], "size ")
	size, err = strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || size < 0 || strconv.FormatInt(size, 10) != s {
		return nil, 0, errors.New("bad size line")
	}
	return sum, size, nil
}

// checkPolicyText returns nil if text is the signature text of policy, an
// error matching ErrMismatch if it is the text of other bytes, and one
// matching ErrMalformed if it is no policy signature text at all.
func checkPolicyText(text string, policy []byte) error {
	if text == PolicyText(policy) {
		return nil
	}
	sum, size, err := parsePolicyText(text)
	if err != nil {
		return fmt.Errorf("%w: policy signature: %v", ErrMalformed, err)
	}
	have := sha256.Sum256(policy)
	return fmt.Errorf("%w: signed sha256 %x (%d bytes), file has sha256 %x (%d bytes)",
		ErrMismatch, sum, size, have, len(policy))
}

// SignPolicy signs policy with s and returns the new contents of its
// signature file. sig is the current signature file, or nil if there is
// none. Existing signatures are kept as they are, including signatures by
// keys unknown here (no keyring is consulted), and s's signature is added
// after them. If s has already signed, sig is returned unchanged; if sig
// holds a different signature line for s's key (which then cannot be
// valid, Ed25519 being deterministic), that line is replaced. It refuses a
// sig for other bytes (ErrMismatch) and a malformed one (ErrMalformed).
func SignPolicy(policy, sig []byte, s note.Signer) ([]byte, error) {
	if s == nil {
		return nil, errors.New("sign policy: no signer")
	}
	if err := checkName(s.Name()); err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	text := PolicyText(policy)
	fresh, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	if len(sig) == 0 {
		return fresh, nil
	}
	n, lines, err := openNote(sig, MaxSignatureSize, nil)
	if err != nil {
		return nil, fmt.Errorf("existing policy signature: %w", err)
	}
	if err := checkPolicyText(n.Text, policy); err != nil {
		return nil, fmt.Errorf("existing policy signature: %w", err)
	}
	own := strings.TrimSuffix(string(fresh[len(text)+1:]), "\n")
	for _, l := range lines {
		if l.raw == own {
			return bytes.Clone(sig), nil
		}
	}
	// n holds every existing signature as unverified (no keyring), and
	// note.Sign drops any of them made with s's key.
	out, err := note.Sign(n, s)
	if err != nil {
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	if _, _, err := openNote(out, MaxSignatureSize, nil); err != nil {
		return nil, fmt.Errorf("sign policy: the signature file would be unreadable (too many signatures?): %w", err)
	}
	return out, nil
}

// PolicySignature is one signature line of a policy signature file.
type PolicySignature struct {
	Name    string // the key name the line claims: the admin's name if Known
	KeyHash uint32
	// Known is true when the keyring holds this name with this key hash.
	// Known signatures have been verified; unknown ones are not checked.
	Known bool
	// Duplicate is true when an earlier line has the same name and key
	// hash. A key counts once, however many lines it has.
	Duplicate bool
}

// PolicySigners lists every signature line of sig, in file order, after
// checking that sig is for exactly these policy bytes and that every
// signature by a known key is valid. Errors match ErrMalformed (sig does
// not parse), ErrMismatch (sig is for other bytes) or ErrBadSignature (a
// known key's signature does not verify).
func PolicySigners(policy, sig []byte, k *Keyring) ([]PolicySignature, error) {
	n, lines, err := openNote(sig, MaxSignatureSize, k)
	if err != nil {
		return nil, fmt.Errorf("policy signature: %w", err)
	}
	if err := checkPolicyText(n.Text, policy); err != nil {
		return nil, err
	}
	type nameHash struct {
		name string
		hash uint32
	}
	seen := make(map[nameHash]bool)
	out := make([]PolicySignature, 0, len(lines))
	for _, l := range lines {
		_, known := k.known(l.name, l.hash)
		key := nameHash{l.name, l.hash}
		out = append(out, PolicySignature{Name: l.name, KeyHash: l.hash, Known: known, Duplicate: seen[key]})
		seen[key] = true
	}
	return out, nil
}

// VerifyPolicy checks that sig holds valid signatures over exactly these
// policy bytes by at least required distinct admin keys in k, and returns
// the names of the admins who signed, in file order. Signatures by unknown
// keys are ignored; several by one key count once. When too few admins
// signed it returns those who did together with an error matching
// ErrUnderSigned that says "n of m"; other errors are those of
// [PolicySigners].
func VerifyPolicy(policy, sig []byte, k *Keyring, required int) (signers []string, err error) {
	if required < 1 {
		return nil, fmt.Errorf("verify policy: required signatures must be at least 1, not %d", required)
	}
	sigs, err := PolicySigners(policy, sig, k)
	if err != nil {
		return nil, err
	}
	// The keyring gives every known name exactly one key, so distinct known
	// names are distinct keys.
	for _, s := range sigs {
		if s.Known && !s.Duplicate {
			signers = append(signers, s.Name)
		}
	}
	if len(signers) < required {
		return signers, fmt.Errorf("%w: %d of %d required signatures by known admins", ErrUnderSigned, len(signers), required)
	}
	return signers, nil
}
