// Package admin holds the security administrators' keys and what they sign:
// detached signatures over policy files (the two-person rule for policy
// changes) and approvals of held write requests.
//
// Everything an admin signs is a C2SP signed note
// ([golang.org/x/mod/sumdb/note]) made with the admin's Ed25519 key. The
// note's key name is the admin's name, so a signature says who made it.
//
// # Keys
//
// An admin key pair is two files named after the admin:
//
//	NAME.key  PRIVATE+KEY+NAME+<hash>+<base64>  (0600, kept by the admin)
//	NAME.pub  NAME+<hash>+<base64>              (0644, installed on the intranet)
//
// An admin name is 1 to 64 characters of lowercase letters, digits, '_'
// and '-', starting with a letter ([ValidName]). [LoadSigner] refuses a
// private key file that is a symlink, not a regular file, or has any
// permission bits for group or others. The intranet agent trusts the admins
// whose NAME.pub files are in its admins directory ([LoadKeyring]).
//
// # Policy signatures
//
// A policy file FILE is signed by a detached file FILE.sig next to it: one
// signed note whose text binds the exact bytes of FILE ([PolicyText]), with
// one signature line per admin who signed ([SignPolicy]). A policy takes
// effect only with valid signatures by at least N distinct known admin keys
// ([VerifyPolicy], N defaults to [DefaultRequired]).
//
// # Approvals
//
// An approval is a signed note that approves or denies one held write
// request ([SignApproval], [VerifyApproval]). Accept and review are never the
// same person: the agent refuses an approval by an admin who signed the
// policy in force ([CheckSeparation]).
//
// The exact formats are in docs/policy.md ("Signed policies and approvals").
package admin

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"regexp"

	"golang.org/x/mod/sumdb/note"
)

// Errors that callers branch on. They are returned wrapped, with context.
var (
	// ErrUnderSigned means a policy carries valid signatures by fewer
	// distinct known admin keys than required.
	ErrUnderSigned = errors.New("policy under-signed")
	// ErrMismatch means a signature file is for other bytes than the
	// policy it was checked against.
	ErrMismatch = errors.New("signature is for different policy bytes")
	// ErrBadSignature means a known admin key's signature does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrMalformed means a signature file or an approval does not parse.
	ErrMalformed = errors.New("malformed")
	// ErrUnknownSigner means an approval is not signed by a known admin.
	ErrUnknownSigner = errors.New("not signed by a known admin")
	// ErrSameAdmin means an approval's signer also signed the policy in
	// force, which separation of duties forbids.
	ErrSameAdmin = errors.New("approver signed the policy in force")
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// ValidName reports whether name may name an admin: 1 to 64 characters of
// lowercase letters, digits, '_' and '-', starting with a letter. Admin
// names are note key names and file names, so they must be safe in both.
func ValidName(name string) bool { return nameRE.MatchString(name) }

func checkName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid admin name %q: want 1 to 64 lowercase letters, digits, '_' or '-', starting with a letter", name)
	}
	return nil
}

// GenerateKey generates an admin key pair for name, reading randomness from
// rand (crypto/rand if nil). It returns the note signer key (secret) and
// verifier key (public).
func GenerateKey(name string, rand io.Reader) (skey, vkey string, err error) {
	if err := checkName(name); err != nil {
		return "", "", err
	}
	if rand == nil {
		rand = cryptoRand
	}
	skey, vkey, err = note.GenerateKey(rand, name)
	if err != nil {
		return "", "", fmt.Errorf("generate admin key: %w", err)
	}
	return skey, vkey, nil
}

var cryptoRand = rand.Reader
