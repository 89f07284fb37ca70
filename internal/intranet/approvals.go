package intranet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

// takeApprovals expires overdue held requests, then takes each approval
// file in the directory, in name order. It returns only the database's
// errors.
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
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, admin.ApprovalSuffix) {
			continue
		}
		d, err := a.takeApproval(ctx, name)
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

// takeApproval verifies one approval file and carries out its decision.
// It reports whether a held request got its final result. The file is
// removed once its decision is in the ledger (which keeps the signed
// approval), or moved to RefusedDir with its reason.
func (a *Agent) takeApproval(ctx context.Context, name string) (bool, error) {
	path := filepath.Join(a.cfg.Approvals, name)
	data, err := readApproval(path)
	if err != nil {
		a.refuseApproval(name, ApprovalUnreadable, err)
		return false, nil
	}
	ap, by, err := admin.VerifyApproval(data, a.ring)
	if err != nil {
		reason := ApprovalMalformed
		switch {
		case errors.Is(err, admin.ErrBadSignature):
			reason = ApprovalBadSignature
		case errors.Is(err, admin.ErrUnknownSigner):
			reason = ApprovalUnknownSigner
		}
		a.refuseApproval(name, reason, err)
		return false, nil
	}
	active := a.policy.Load()
	if err := admin.CheckSeparation(by, active.signers); err != nil {
		a.refuseApproval(name, ApprovalSameAdmin, err)
		return false, nil
	}
	res, err := a.db.Decide(ctx, replica.Decision{
		RequestID: ap.RequestID,
		Approve:   ap.Decision == admin.DecisionApprove,
		By:        by,
		Time:      ap.Time,
		Approval:  data,
	}, active.pol)
	var de *replica.DecidedError
	switch {
	case errors.As(err, &de) && de.Same:
		// Taken in before; the agent stopped before removing the file.
		a.removeApproval(name)
		return false, nil
	case errors.As(err, &de) && de.State == replica.HeldExpired && res != nil:
		a.log.Info("held request expired unapproved", slog.String(logRequest, ap.RequestID))
		a.refuseApproval(name, ApprovalExpired, err)
		return true, nil
	case errors.As(err, &de):
		reason := ApprovalDecided
		if de.State == replica.HeldExpired {
			reason = ApprovalExpired
		}
		a.refuseApproval(name, reason, err)
		return false, nil
	case errors.Is(err, replica.ErrNotHeld):
		a.refuseApproval(name, ApprovalNotHeld, err)
		return false, nil
	case errors.Is(err, replica.ErrApprovalTime):
		a.refuseApproval(name, ApprovalBadTime, err)
		return false, nil
	case err != nil:
		return false, err
	}
	a.log.Info("held request decided", slog.String(logRequest, ap.RequestID), slog.String(logDecision, ap.Decision),
		slog.String(logAdmin, by), slog.String(logStatus, res.Status), slog.String(logReason, res.Reason))
	a.removeApproval(name)
	return true, nil
}

// readApproval reads an approval file: a regular file, not a link, of at
// most admin.MaxApprovalSize bytes.
func readApproval(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, admin.MaxApprovalSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > admin.MaxApprovalSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, admin.MaxApprovalSize)
	}
	return data, nil
}

func (a *Agent) removeApproval(name string) {
	if err := os.Remove(filepath.Join(a.cfg.Approvals, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Error("cannot remove approval file", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

// refuseApproval moves a refused approval file to RefusedDir, writes its
// reason beside it, and logs it. Nothing else changes.
func (a *Agent) refuseApproval(name, reason string, cause error) {
	a.log.Warn("approval refused", slog.String(logFile, name), slog.String(logReason, reason), slog.String(logError, cause.Error()))
	refused := filepath.Join(a.cfg.Approvals, RefusedDir)
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
	if err := os.WriteFile(dst+".reason", []byte(note), 0o644); err != nil {
		a.log.Error("cannot write reason of refused approval", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}
