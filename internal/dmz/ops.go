package dmz

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ferrybridge/ferry/internal/ops"
	"github.com/ferrybridge/ferry/internal/status"
)

// collect fills in the DMZ's part of a status snapshot.
func (a *Agent) collect(ctx context.Context, s *status.Snapshot) error {
	now := s.Taken
	select {
	case <-a.stopping:
		s.State = "stopping"
	default:
		switch {
		case !a.ready.Load():
			s.State = "starting"
		case a.gate.stats().Overloaded != "":
			s.State = "overloaded"
		}
	}
	s.Keys = a.ops.Keys(a.ring.Load(), now)
	if ck := a.current(); ck != nil {
		s.Policy = &status.Policy{Version: ck.source, Operations: len(ck.ops), Since: ck.received}
		if ck.seq > 0 {
			s.Policy.Version = "catalogue of results envelope " + strconv.FormatUint(ck.seq, 10)
		}
	}
	heard, silent := a.peerWatch.State()
	s.PeerHeard = status.PeerHeard{At: heard, Silent: silent}
	ops.Audit(s, a.auditLog, a.auditX)
	q := &s.Queue
	lim := a.limits.Load()
	q.MaxBacklog, q.MaxUnacked = lim.MaxBacklog, lim.MaxUnacked
	var errs []error
	// The gate counts them every 200ms.
	bp := a.gate.stats()
	q.Backlog, q.Unacked = bp.Backlog, bp.Unacked
	if h, err := a.spool.Health(ctx); err == nil {
		q.Envelopes, q.OldestUnacked, q.Dead, q.Held = h.Envelopes, h.OldestUnacked, h.Envelopes["dead"], h.Held
	} else {
		errs = append(errs, err)
	}
	if r, err := a.spool.Received(ctx, ResultsChannel); err == nil {
		q.Gaps = len(r.Missing)
	} else {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// observed records what POST /v1/requests answered, for the metrics and
// the alarms.
type observed struct {
	http.ResponseWriter
	code    int
	outcome string // "accepted", "duplicate", or the reason code of an error
	op      string // the operation, once known to be the catalogue's
}

func (o *observed) WriteHeader(code int) {
	if o.code == 0 {
		o.code = code
	}
	o.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// setOutcome records outcome on w if w is an observed writer.
func setOutcome(w http.ResponseWriter, outcome string) {
	if o, ok := w.(*observed); ok && o.outcome == "" {
		o.outcome = outcome
	}
}

// Outcomes of POST /v1/requests besides the reason codes.
const (
	outcomeAccepted  = "accepted"
	outcomeDuplicate = "duplicate"
	opUnknown        = "unknown"
)

// observeSubmit counts one answer to POST /v1/requests. Only an
// operation of the catalogue in force becomes a label value, so a client
// cannot grow the metrics with made-up names.
func (a *Agent) observeSubmit(o *observed, cl *client, subject string, start time.Time) {
	op := o.op
	if op == "" {
		op = opUnknown
	}
	outcome := o.outcome
	if outcome == "" {
		outcome = http.StatusText(o.code)
	}
	a.ops.Metrics.Request(op, outcome, time.Since(start))
	if cl == nil {
		return
	}
	switch outcome {
	case outcomeAccepted, outcomeDuplicate, ReasonOverloaded, ReasonShuttingDown, ReasonUnavailable:
		a.ops.Request(cl.name, subject, false)
	default:
		a.ops.Request(cl.name, subject, true)
	}
}
