package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/batch"
)

// Exchange is an agent's side of the cross-zone witnessing: [Exchange.Outgoing]
// is the audit part of every envelope the agent seals, and
// [Exchange.Incoming] takes the part of every envelope it receives.
//
// Outgoing carries this log's newest checkpoint with a proof that it
// contains the largest checkpoint the other zone has countersigned, and
// the newest checkpoint of the other zone's log countersigned here.
// Incoming witnesses the other zone's checkpoint ([Log.Witness]) and keeps
// the countersigned copies of this log's checkpoints that come back (in
// the audit_cosigned table), after checking both signatures and that
// this log holds the same checkpoint.
//
// Every envelope carries the whole part, so a lost envelope loses
// nothing: the next one carries the same or newer. Repeats are
// recognized in memory and cost no database work.
type Exchange struct {
	log    *Log
	own    note.Verifier // this log's key
	peer   note.Verifier // the other zone's audit key
	logger *slog.Logger

	mu        sync.Mutex
	from      int64  // the largest size of this log the other zone countersigned, as known here
	witnessed []byte // the newest checkpoint of the other zone's log countersigned here
	// The last checkpoint and cosigned note received, to skip repeats.
	lastIn, lastCosigned []byte
	// The checkpoint part of the last Outgoing, while this log's newest
	// checkpoint and from stay the same.
	outMsg   []byte
	outFrom  int64
	outProof string
	// state is what Health reports.
	state ExchangeHealth
}

// ExchangeHealth is how the witnessing goes, since the agent started.
type ExchangeHealth struct {
	// Witnessed is when a new checkpoint of the other zone's log was
	// last countersigned here; Cosigned when a countersigned checkpoint
	// of this log last came back. Zero: not since start.
	Witnessed, Cosigned time.Time
	// Inconsistent is the last inconsistency found (in either log), ""
	// for none.
	Inconsistent string
}

// Health returns how the witnessing goes.
func (x *Exchange) Health() ExchangeHealth {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.state
}

// NewExchange returns the exchange of log l, whose key is own, with the
// other zone, whose audit key is peer. It loads what earlier runs kept.
func NewExchange(ctx context.Context, l *Log, own, peer note.Verifier, logger *slog.Logger) (*Exchange, error) {
	if own == nil || own.Name() != l.origin {
		return nil, fmt.Errorf("audit exchange: the log's key must be named %q", l.origin)
	}
	if peer == nil || peer.Name() == l.origin {
		return nil, errors.New("audit exchange: the other zone's audit key must be of another log")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	x := &Exchange{log: l, own: own, peer: peer, logger: logger}
	var from sql.NullInt64
	if err := l.db.QueryRowContext(ctx, `SELECT MAX(size) FROM audit_cosigned`).Scan(&from); err != nil {
		return nil, fmt.Errorf("audit exchange: %w", err)
	}
	x.from = from.Int64
	err := l.db.QueryRowContext(ctx, `SELECT note FROM audit_witnessed WHERE origin = ? ORDER BY size DESC LIMIT 1`, peer.Name()).Scan(&x.witnessed)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("audit exchange: %w", err)
	}
	return x, nil
}

// Outgoing returns the audit part of the next envelope, or nil when there
// is nothing yet to send (no checkpoint signed, none witnessed). It never
// fails the envelope: if the part cannot be made, it logs why and
// returns nil, and a later envelope carries it.
func (x *Exchange) Outgoing(ctx context.Context) *batch.Audit {
	a, err := x.outgoing(ctx)
	if err != nil {
		x.logger.Warn("audit part of an envelope left out", slog.String("error", err.Error()))
		return nil
	}
	return a
}

// outgoing is Outgoing, returning what went wrong.
func (x *Exchange) outgoing(ctx context.Context) (*batch.Audit, error) {
	msg := x.log.LatestCheckpoint()
	x.mu.Lock()
	defer x.mu.Unlock()
	out := &batch.Audit{Cosigned: string(x.witnessed)}
	if msg != nil {
		if !bytes.Equal(msg, x.outMsg) || x.from != x.outFrom {
			if err := x.prove(ctx, msg); err != nil {
				return nil, err
			}
		}
		out.Checkpoint, out.From, out.Proof = string(x.outMsg), x.outFrom, x.outProof
	}
	if out.Checkpoint == "" && out.Cosigned == "" {
		return nil, nil
	}
	return out, nil
}

// prove sets the checkpoint part of Outgoing from this log's newest
// checkpoint msg (or a newer one, signed meanwhile). x.mu is held.
func (x *Exchange) prove(ctx context.Context, msg []byte) error {
	c, err := OpenCheckpoint(msg, x.own, x.log.origin)
	if err != nil {
		return fmt.Errorf("audit exchange: this log's newest checkpoint: %w", err)
	}
	x.outMsg, x.outFrom, x.outProof = msg, x.from, ""
	if x.from > c.Size {
		// The other zone countersigned more of this log than it holds:
		// this log was replaced or truncated. Say so to the other zone,
		// which records it, rather than prove anything.
		x.logger.Error("the other zone countersigned more of this audit log than it holds: the log was replaced or truncated",
			slog.Int64("countersigned_size", x.from), slog.Int64("checkpoint_size", c.Size))
		return nil
	}
	newest, p, err := x.log.ProveConsistency(ctx, x.from)
	if err != nil {
		return fmt.Errorf("audit exchange: %w", err)
	}
	x.outMsg, x.outProof = newest, FormatProof(p)
	return nil
}

// Incoming takes the audit part of an envelope from the other zone,
// which the caller has verified came from it. It never fails the
// envelope: what is wrong is logged (an inconsistent history at error
// level, and recorded in this log as audit.inconsistent).
func (x *Exchange) Incoming(ctx context.Context, in *batch.Audit) {
	err := x.incoming(ctx, in)
	switch {
	case err == nil:
	case errors.Is(err, ErrInconsistent):
		x.logger.Error("audit log inconsistent with the one witnessed before", slog.String("error", err.Error()))
	default:
		x.logger.Warn("audit witnessing failed", slog.String("error", err.Error()))
	}
}

// incoming is Incoming, returning what went wrong.
func (x *Exchange) incoming(ctx context.Context, in *batch.Audit) error {
	if in == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	if in.Cosigned != "" && in.Cosigned != string(x.lastCosigned) {
		x.lastCosigned = []byte(in.Cosigned)
		if err := x.keepCosigned(ctx, x.lastCosigned); err != nil {
			errs = append(errs, err)
		}
	}
	key := []byte(strconv.FormatInt(in.From, 10) + " " + in.Proof + "\n" + in.Checkpoint)
	if in.Checkpoint != "" && !bytes.Equal(key, x.lastIn) {
		x.lastIn = key
		if err := x.witness(ctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// witness witnesses the other zone's checkpoint in in. x.mu is held.
func (x *Exchange) witness(ctx context.Context, in *batch.Audit) error {
	proof, err := ParseProof(in.Proof)
	if err != nil {
		return fmt.Errorf("witness %s: %w", x.peer.Name(), err)
	}
	cosigned, isNew, err := x.log.Witness(ctx, x.peer, []byte(in.Checkpoint), in.From, proof)
	switch {
	case errors.Is(err, ErrStale):
		x.logger.Debug("audit checkpoint not witnessed yet", slog.String("reason", err.Error()))
		return nil
	case errors.Is(err, ErrInconsistent):
		x.record(ctx, x.peer.Name(), err)
		return err
	case err != nil:
		return err
	}
	if isNew {
		x.witnessed = cosigned
		x.state.Witnessed = time.Now()
	}
	return nil
}

// keepCosigned checks a checkpoint of this log countersigned by the other
// zone and keeps it. x.mu is held.
func (x *Exchange) keepCosigned(ctx context.Context, msg []byte) error {
	c, err := OpenCosigned(msg, x.own, x.peer)
	if err != nil {
		return fmt.Errorf("a countersigned checkpoint of this log: %w", err)
	}
	var stored []byte
	err = x.log.db.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints WHERE size = ?`, c.Size).Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("a countersigned checkpoint of this log: %w", err)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("the other zone countersigned a checkpoint of size %d that this log does not hold (replaced or truncated): %w", c.Size, ErrInconsistent)
	} else if own, oerr := OpenCheckpoint(stored, x.own, x.log.origin); oerr != nil || own.Root != c.Root {
		err = fmt.Errorf("the other zone countersigned a checkpoint of size %d with another root than this log's (rewritten): %w", c.Size, ErrInconsistent)
	}
	// Either way the other zone holds this size countersigned: the next
	// proof starts from it. For a log that was replaced, that proof
	// cannot hold, and the other zone records it.
	x.from = max(x.from, c.Size)
	if err != nil {
		x.record(ctx, x.log.origin, err)
		return err
	}
	if _, err := x.log.db.ExecContext(ctx, `INSERT OR IGNORE INTO audit_cosigned (size, time, note) VALUES (?, ?, ?)`,
		c.Size, time.Now().UnixMilli(), msg); err != nil {
		return fmt.Errorf("keep a countersigned checkpoint: %w", err)
	}
	x.state.Cosigned = time.Now()
	return nil
}

// record appends an audit.inconsistent entry about the log named origin.
func (x *Exchange) record(ctx context.Context, origin string, why error) {
	x.state.Inconsistent = why.Error()
	e := Entry{Time: time.Now(), Zone: x.log.zone, Event: EventInconsistent, Actor: origin, Decision: "refused", Detail: why.Error()}
	if _, err := x.log.Append(ctx, e); err != nil {
		x.logger.Error("audit of an inconsistent checkpoint failed", slog.String("error", err.Error()))
	}
}

// Cosigned returns the countersigned checkpoints of this log the other
// zone sent back, smallest first.
func (l *Log) Cosigned(ctx context.Context) ([][]byte, error) {
	return readNotes(ctx, l.db, `SELECT note FROM audit_cosigned ORDER BY size`)
}
