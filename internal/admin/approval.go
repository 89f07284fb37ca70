package admin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/batch"
)

// Approval decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// MaxApprovalSize caps an approval file. A valid one is under 300 bytes.
const MaxApprovalSize = 4 << 10

// ApprovalSuffix ends the name of an approval file in the intranet
// agent's approvals directory.
const ApprovalSuffix = ".approval"

// ApprovalFileName is the name `ferryctl approve` gives the approval of
// requestID by admin: REQUEST.ADMIN.approval. Two admins' approvals of
// one request, or an approval and a denial, never overwrite each other.
func ApprovalFileName(requestID, admin string) string {
	return requestID + "." + admin + ApprovalSuffix
}

// approvalHeader is the first line of an approval's text.
const approvalHeader = "ferry-approval/v1"

// timeLayout is RFC 3339 in UTC with whole seconds, the only form an
// approval's time may take.
const timeLayout = "2006-01-02T15:04:05Z"

// Approval is an admin's decision on one held write request.
type Approval struct {
	RequestID string    // the request's id: 32 lowercase hex digits
	Decision  string    // DecisionApprove or DecisionDeny
	Time      time.Time // when the admin decided, whole seconds, UTC
}

// Text returns the text an admin signs for a:
//
//	ferry-approval/v1
//	request <request id>
//	decision approve|deny
//	time <YYYY-MM-DDTHH:MM:SSZ>
//
// Every line ends in a newline. a.Time is converted to UTC and truncated to
// whole seconds. It fails if a field is invalid.
func (a Approval) Text() (string, error) {
	if !batch.ValidID(a.RequestID) {
		return "", fmt.Errorf("approval: invalid request id %q: want 32 lowercase hex digits", a.RequestID)
	}
	if a.Decision != DecisionApprove && a.Decision != DecisionDeny {
		return "", fmt.Errorf("approval: invalid decision %q: want %q or %q", a.Decision, DecisionApprove, DecisionDeny)
	}
	t := a.Time.UTC().Truncate(time.Second)
	if t.Year() < 2000 || t.Year() > 9999 {
		return "", fmt.Errorf("approval: time %s out of range", a.Time)
	}
	return fmt.Sprintf("%s\nrequest %s\ndecision %s\ntime %s\n", approvalHeader, a.RequestID, a.Decision, t.Format(timeLayout)), nil
}

// parseApprovalText strictly parses an approval's text: exactly the four
// lines of [Approval.Text], in order, with nothing else.
func parseApprovalText(text string) (*Approval, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" || lines[0] != approvalHeader {
		return nil, errors.New("not a ferry-approval/v1 text")
	}
	var a Approval
	var ok bool
	if a.RequestID, ok = strings.CutPrefix(lines[1], "request "); !ok || !batch.ValidID(a.RequestID) {
		return nil, errors.New("bad request line")
	}
	if a.Decision, ok = strings.CutPrefix(lines[2], "decision "); !ok || (a.Decision != DecisionApprove && a.Decision != DecisionDeny) {
		return nil, errors.New("bad decision line")
	}
	ts, ok := strings.CutPrefix(lines[3], "time ")
	t, err := time.Parse(timeLayout, ts)
	if !ok || err != nil || t.Format(timeLayout) != ts || t.Year() < 2000 {
		return nil, errors.New("bad time line")
	}
	a.Time = t
	return &a, nil
}

// SignApproval returns a signed by s: one signed note with one signature.
func SignApproval(a Approval, s note.Signer) ([]byte, error) {
	if s == nil {
		return nil, errors.New("sign approval: no signer")
	}
	if err := checkName(s.Name()); err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	text, err := a.Text()
	if err != nil {
		return nil, err
	}
	out, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return nil, fmt.Errorf("sign approval: %w", err)
	}
	return out, nil
}

// VerifyApproval checks an approval file against the known admins and
// returns the approval and the name of the admin who signed it. The file
// must be at most [MaxApprovalSize] bytes, carry exactly one signature
// line, by a known admin, which verifies, over a text that parses strictly.
// Errors match ErrMalformed, ErrBadSignature or ErrUnknownSigner. It does
// not check the approval's age or the separation of duties
// ([CheckSeparation]); the caller does.
func VerifyApproval(data []byte, k *Keyring) (*Approval, string, error) {
	n, lines, err := openNote(data, MaxApprovalSize, k)
	if err != nil {
		return nil, "", fmt.Errorf("approval: %w", err)
	}
	if len(lines) != 1 {
		return nil, "", fmt.Errorf("approval: %w: want exactly one signature, found %d", ErrMalformed, len(lines))
	}
	l := lines[0]
	if _, ok := k.known(l.name, l.hash); !ok {
		return nil, "", fmt.Errorf("approval: %w: signed by %s (key %08x)", ErrUnknownSigner, l.name, l.hash)
	}
	a, err := parseApprovalText(n.Text)
	if err != nil {
		return nil, "", fmt.Errorf("approval: %w: %v", ErrMalformed, err)
	}
	return a, l.name, nil
}

// CheckSeparation enforces separation of duties: it returns an error
// matching ErrSameAdmin if approver is one of the admins who signed the
// policy in force (policySigners, as [VerifyPolicy] returns them).
func CheckSeparation(approver string, policySigners []string) error {
	if approver == "" {
		return errors.New("check separation of duties: no approver")
	}
	if slices.Contains(policySigners, approver) {
		return fmt.Errorf("%w: %s may not approve requests under a policy they signed", ErrSameAdmin, approver)
	}
	return nil
}
