package replica

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
)

// messageNotReceived is the message of the result that settles a request
// the intranet is asked about but never received.
const messageNotReceived = "the intranet never received this request; it will not be applied"

// Answer answers the DMZ's query about requests it sent and has no final
// result for (batch.Requests.Query; see the "Held results" section of
// package batch): requests held for approval, and the requests of
// envelopes that expired at the DMZ, or that an admin dropped, before
// their results came back. envID is the asking envelope, which
// [DB.Apply] must already have recorded: settlements are recorded in its
// name.
//
// Answer works through ids in order, in one write transaction, and
// returns one result per id it answers, in that order:
//
//   - a request held and still waiting for a decision gets no answer;
//   - a request in the ledger otherwise (applied, a held one decided, or
//     one settled before) is answered with its stored result, exactly as
//     stored, so that every answer to a request is the same;
//   - a request the ledger has never seen is settled: it is recorded in
//     ferry_requests with the result "expired", reason
//     batch.ReasonNotReceived, operation "" (the intranet never learnt
//     it), and that result is its answer.
//
// A settled request is never applied: should its own envelope arrive
// later, Apply finds the id in the ledger and answers the stored
// "expired" result, like any request seen before. Answer applies
// nothing. A settlement is durable once Answer returns, before any answer
// is sealed: if the answer is lost, asking again returns the same result.
//
// Answer returns ErrInvalid (wrapped) for a malformed envelope or request
// id, or a request id given twice, and changes nothing; any other error is
// the database's, and nothing was settled.
func (db *DB) Answer(ctx context.Context, envID string, ids []string) ([]batch.Result, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if !batch.ValidID(envID) {
		return nil, fmt.Errorf("answer: %w: malformed envelope id", ErrInvalid)
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if !batch.ValidID(id) || seen[id] {
			return nil, fmt.Errorf("answer for envelope %s: %w: query %d: malformed or repeated request id", envID, ErrInvalid, i)
		}
		seen[id] = true
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("answer for envelope %s: %w", envID, err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("answer for envelope %s: %w", envID, err)
	}
	defer tx.Rollback()

	// One statement finds every id the ledger knows; there may be
	// batch.MaxQuery of them.
	rows, err := tx.QueryContext(ctx, `SELECT r.id, r.status, r.result FROM json_each(?) q
		JOIN ferry_requests r ON r.id = q.value`, string(list))
	if err != nil {
		return nil, fmt.Errorf("answer for envelope %s: look up: %w", envID, err)
	}
	type known struct {
		held   bool
		result []byte
	}
	stored := make(map[string]known, len(ids))
	for rows.Next() {
		var (
			id, status string
			data       []byte
		)
		if err := rows.Scan(&id, &status, &data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("answer for envelope %s: look up: %w", envID, err)
		}
		// ferry_requests says "held" exactly while ferry_held does: the
		// decision replaces both in one transaction (settle in held.go).
		stored[id] = known{held: status == batch.StatusHeld, result: data}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("answer for envelope %s: look up: %w", envID, err)
	}
	// Close before the next statement: the writer has one connection.
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("answer for envelope %s: look up: %w", envID, err)
	}

	var insert *sql.Stmt
	if len(stored) < len(ids) {
		if insert, err = tx.PrepareContext(ctx, `INSERT INTO ferry_requests
			(id, envelope_id, operation, status, reason, message, result, applied_at)
			VALUES (?, ?, '', ?, ?, ?, ?, ?)`); err != nil {
			return nil, fmt.Errorf("answer for envelope %s: %w", envID, err)
		}
		defer insert.Close()
	}
	out := make([]batch.Result, 0, len(ids))
	now := db.now().UnixMilli()
	settled := 0
	for _, id := range ids {
		k, ok := stored[id]
		switch {
		case ok && k.held:
			continue
		case ok:
			var r batch.Result
			if err := json.Unmarshal(k.result, &r); err != nil {
				return nil, fmt.Errorf("answer for envelope %s: stored result of request %s: %w", envID, id, err)
			}
			out = append(out, r)
			continue
		}
		res := batch.Result{RequestID: id, Status: batch.StatusExpired, Reason: batch.ReasonNotReceived, Message: messageNotReceived}
		data, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("answer for envelope %s: request %s: %w", envID, id, err)
		}
		if _, err := insert.ExecContext(ctx, id, envID, res.Status, res.Reason, res.Message, data, now); err != nil {
			return nil, fmt.Errorf("answer for envelope %s: settle request %s: %w", envID, id, err)
		}
		// The intranet's decision about this request: it will never run.
		if err := db.audit.Stage(ctx, tx, audit.Entry{Time: time.UnixMilli(now), Event: audit.EventPolicyDecision, Request: id,
			Envelope: envID, Decision: res.Status, Reason: res.Reason}); err != nil {
			return nil, fmt.Errorf("answer for envelope %s: settle request %s: %w", envID, id, err)
		}
		settled++
		out = append(out, res)
	}
	if settled > 0 {
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("answer for envelope %s: commit: %w", envID, err)
		}
	}
	return out, nil
}
