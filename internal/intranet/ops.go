package intranet

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/ops"
	"github.com/ferrybridge/ferry/internal/status"
)

// collect fills in the intranet's part of a status snapshot.
func (a *Agent) collect(ctx context.Context, s *status.Snapshot) error {
	now := s.Taken
	select {
	case <-a.ready:
		if a.stopping.Load() {
			s.State = "stopping"
		}
	default:
		s.State = "starting"
	}
	s.Keys = a.ops.Keys(a.ring.Load(), now)
	if p := a.policy.Load(); p != nil {
		s.Policy = &status.Policy{Version: p.sha256[:12], SHA256: p.sha256, Signers: p.signers, Operations: len(p.pol.Operations)}
		// When the signatures were written: the policy's age is its
		// signing's, whatever the restarts since.
		if fi, err := os.Stat(a.cfg.Policy + admin.SigSuffix); err == nil {
			s.Policy.Since = fi.ModTime()
			s.Policy.Expires = s.Policy.Since.Add(time.Duration(a.cfg.Alarms.PolicyMaxAge))
		}
	}
	heard, silent := a.peerWatch.State()
	s.PeerHeard = status.PeerHeard{At: heard, Silent: silent}
	ops.Audit(s, a.auditLog, a.auditX)
	var errs []error
	if h, err := a.db.Health(ctx); err == nil {
		s.Queue.Envelopes = map[string]int{"applied": h.Unsealed, status.WaitingToSend: h.Unpublished}
		s.Queue.Held = h.Held
	} else {
		errs = append(errs, err)
	}
	if r, err := a.db.Received(ctx, a.cfg.Peer, RequestsChannel); err == nil {
		s.Queue.Gaps = len(r.Missing)
	} else {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Policy decisions, as metrics.PolicyDecisions counts them.
const (
	decisionAllow  = "allow"
	decisionRefuse = "refuse"
	decisionHold   = "hold"
)

// countDecisions counts the policy's decisions on an envelope's results:
// done and failed requests were allowed (a failure is the database's,
// after the policy allowed it), rejected ones refused with their reason,
// held ones held for approval.
func (a *Agent) countDecisions(results []batch.Result) {
	for _, r := range results {
		switch r.Status {
		case batch.StatusDone, batch.StatusFailed:
			a.ops.Metrics.Decision(decisionAllow, "")
		case batch.StatusRejected:
			a.ops.Metrics.Decision(decisionRefuse, r.Reason)
		case batch.StatusHeld:
			a.ops.Metrics.Decision(decisionHold, r.Reason)
		}
	}
}
