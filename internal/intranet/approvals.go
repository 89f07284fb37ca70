package intranet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/replica"
)

// RefusedDir is the directory, inside the approvals directory, that a
// refused approval file is moved to, with a NAME.reason file beside it.
const RefusedDir = "refused"

// Reasons an approval file is refused; each is written to its .reason
// file and logged.
const (
	ApprovalUnreadable    = "unreadable"      // not a regular file, too large, or unreadable
	ApprovalMalformed     = "malformed"       // not one signed ferry-approval/v1 note
	ApprovalBadSignature  = "bad_signature"   // the signature does not verify
	ApprovalUnknownSigner = "unknown_signer"  // signed by a key not in the admins directory
	ApprovalSameAdmin     = "same_admin"      // the approver signed the policy in force
	ApprovalNotHeld       = "not_held"        // no request with that id is held
	ApprovalDecided       = "already_decided" // the request was decided before
	ApprovalExpired       = "expired"         // the request's approval time had passed
	ApprovalBadTime       = "bad_time"        // signed before the request was held, or in the future
)

// approvalStage takes in the approval files admins put in the approvals
// directory, and expires held requests nobody decided in time, every
// approval_poll, until ctx ends. Every decision's final result is then
// handed to the seal stage through decisionsReady.
func (a *Agent) approvalStage(ctx context.Context) error {
	t := time.NewTicker(time.Duration(a.cfg.ApprovalPoll))
	defer t.Stop()
	for {
		if err := a.takeApprovals(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("approvals: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// decisionsMade wakes the seal stage to seal the results of decided held
// requests.
func (a *Agent) decisionsMade() {
	select {
	case a.decisionsReady <- struct{}{}:
	default:
	}
}

// maxApprovalsPerPoll bounds the approval files one poll takes in; the
// rest wait for the next poll.
const maxApprovalsPerPoll = 1000

// approvalFile is an approval file read and verified in one poll.
type approvalFile struct {
	name string
	data []byte
	fi   os.FileInfo // of the file read, to remove that file and no other
	ap   *admin.Approval
	by   string // the admin who signed it
}

// takeApprovals expires overdue held requests, then takes in the approval
// files in the directory: every file is read and verified first, then the
// decisions are carried out, denials before approvals (so that when two
// admins disagree within one poll the request is not run) and otherwise
// in name order. The whole poll uses one snapshot of the policy in force
// and its admins. It returns only the database's errors.
func (a *Agent) takeApprovals(ctx context.Context) error {
	expired, err := a.db.ExpireHeld(ctx)
	if err != nil {
		return err
	}
	for _, id := range expired {
		a.log.Info("held request expired unapproved", slog.String(logRequest, id))
	}
	decided := len(expired) > 0
	entries, err := os.ReadDir(a.cfg.Approvals)
	if err != nil {
		// The directory may be recreated by an admin; try again later.
		a.log.Error("cannot read the approvals directory", slog.String(logFile, a.cfg.Approvals), slog.String(logError, err.Error()))
		entries = nil
	}
	active := a.policy.Load()
	var files []*approvalFile
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, admin.ApprovalSuffix) {
			continue
		}
		if len(files) == maxApprovalsPerPoll {
			break
		}
		if f := a.verifyApproval(name, active); f != nil {
			files = append(files, f)
		}
	}
	slices.SortStableFunc(files, func(x, y *approvalFile) int {
		return cmp.Compare(rank(x), rank(y))
	})
	for _, f := range files {
		d, err := a.takeApproval(ctx, f, active)
		if err != nil {
			return err
		}
		decided = decided || d
	}
	if decided {
		a.decisionsMade()
	}
	return nil
}

// rank orders denials before approvals.
func rank(f *approvalFile) int {
	if f.ap.Decision == admin.DecisionDeny {
		return 0
	}
	return 1
}

// verifyApproval reads and verifies one approval file against the admins
// of active, and checks the separation of duties. It returns nil after
// refusing a file that fails.
func (a *Agent) verifyApproval(name string, active *activePolicy) *approvalFile {
	data, fi, err := readApproval(filepath.Join(a.cfg.Approvals, name))
	if err != nil {
		a.refuseApproval(name, ApprovalUnreadable, err)
		return nil
	}
	ap, by, err := admin.VerifyApproval(data, active.ring)
	if err != nil {
		reason := ApprovalMalformed
		switch {
		case errors.Is(err, admin.ErrBadSignature):
			reason = ApprovalBadSignature
		case errors.Is(err, admin.ErrUnknownSigner):
			reason = ApprovalUnknownSigner
		}
		a.refuseApproval(name, reason, err)
		return nil
	}
	if err := admin.CheckSeparation(by, active.signers); err != nil {
		a.refuseApproval(name, ApprovalSameAdmin, err)
		return nil
	}
	return &approvalFile{name: name, data: data, fi: fi, ap: ap, by: by}
}

// takeApproval carries out one verified decision. It reports whether a
// held request got its final result. The file is removed once its
// decision is in the ledger (which keeps the signed approval), or moved
// to RefusedDir with its reason.
func (a *Agent) takeApproval(ctx context.Context, f *approvalFile, active *activePolicy) (bool, error) {
	ap := f.ap
	res, err := a.db.Decide(ctx, replica.Decision{
		RequestID: ap.RequestID,
		Approve:   ap.Decision == admin.DecisionApprove,
		By:        f.by,
		Time:      ap.Time,
		Approval:  f.data,
	}, active.pol)
	var de *replica.DecidedError
	switch {
	case errors.As(err, &de) && de.Same:
		// Taken in before; the agent stopped before removing the file.
		a.removeApproval(f)
		return false, nil
	case errors.As(err, &de) && de.State == replica.HeldExpired && res != nil:
		a.log.Info("held request expired unapproved", slog.String(logRequest, ap.RequestID))
		a.refuseApproval(f.name, ApprovalExpired, err)
		return true, nil
	case errors.As(err, &de):
		reason := ApprovalDecided
		if de.State == replica.HeldExpired {
			reason = ApprovalExpired
		}
		a.refuseApproval(f.name, reason, err)
		return false, nil
	case errors.Is(err, replica.ErrNotHeld):
		a.refuseApproval(f.name, ApprovalNotHeld, err)
		return false, nil
	case errors.Is(err, replica.ErrApprovalTime):
		a.refuseApproval(f.name, ApprovalBadTime, err)
		return false, nil
	case err != nil:
		return false, err
	}
	a.log.Info("held request decided", slog.String(logRequest, ap.RequestID), slog.String(logDecision, ap.Decision),
		slog.String(logAdmin, f.by), slog.String(logStatus, res.Status), slog.String(logReason, res.Reason))
	a.removeApproval(f)
	return true, nil
}

// readApproval reads an approval file: a regular file, not a link, of at
// most admin.MaxApprovalSize bytes.
func readApproval(path string) ([]byte, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, admin.MaxApprovalSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > admin.MaxApprovalSize {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes", path, admin.MaxApprovalSize)
	}
	return data, fi, nil
}

// removeApproval removes a taken-in approval file, unless another file
// has replaced it under its name since it was read (an admin changing
// their decision): that one is taken in at the next poll.
func (a *Agent) removeApproval(f *approvalFile) {
	path := filepath.Join(a.cfg.Approvals, f.name)
	if now, err := os.Lstat(path); err != nil || !os.SameFile(now, f.fi) {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Error("cannot remove approval file", slog.String(logFile, f.name), slog.String(logError, err.Error()))
	}
}

// refuseApproval moves a refused approval file to RefusedDir, writes its
// reason beside it, and logs it. Nothing else changes.
func (a *Agent) refuseApproval(name, reason string, cause error) {
	a.log.Warn("approval refused", slog.String(logFile, name), slog.String(logReason, reason), slog.String(logError, cause.Error()))
	refused := filepath.Join(a.cfg.Approvals, RefusedDir)
	// Whoever can write approvals can also replace refused/: never move
	// into, or write through, a link planted there.
	if fi, err := os.Lstat(refused); err != nil || !fi.IsDir() {
		if err == nil {
			err = fmt.Errorf("%s is not a directory", refused)
		}
		a.log.Error("cannot move refused approval file", slog.String(logFile, name), slog.String(logError, err.Error()))
		return
	}
	dst := filepath.Join(refused, name)
	for i := 1; i < 1000; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(refused, fmt.Sprintf("%s.%d", name, i))
	}
	if err := os.Rename(filepath.Join(a.cfg.Approvals, name), dst); err != nil {
		a.log.Error("cannot move refused approval file", slog.String(logFile, name), slog.String(logError, err.Error()))
		return
	}
	note := fmt.Sprintf("%s\n%s\n", reason, cause.Error())
	if err := writeNew(dst+".reason", []byte(note)); err != nil {
		a.log.Error("cannot write reason of refused approval", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

// writeNew creates path, which must not exist (not even as a link), with
// data, whole: it writes a hidden temporary file beside it and links it
// into place, so that a reader never sees the file half written.
func writeNew(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".reason-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err = errors.Join(err, f.Chmod(0o644), f.Close()); err != nil {
		return err
	}
	// link(2) never follows or replaces what is at path.
	return os.Link(tmp, path)
}
