package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
)

// Envelope states. Sealed, published and dead envelopes are open: the
// intranet may still acknowledge them and they expire; only sealed and
// published ones are published (again).
const (
	EnvSealed    = "sealed"    // stored, not yet known to be published
	EnvPublished = "published" // on the medium, awaiting the intranet's ack
	// EnvDead: published as often as allowed and still unacknowledged
	// when its next re-send fell due. It is not published again unless
	// an admin retries it; a late acknowledgement or late results still
	// apply, and it expires like a published envelope.
	EnvDead = "dead"
	// EnvDropped: an admin took it out of the re-send cycle and failed
	// its unanswered requests. Final.
	EnvDropped = "dropped"
	EnvAcked   = "acked"   // the intranet acknowledged it
	EnvExpired = "expired" // it expired unacknowledged
)

// openStates lists the open envelope states in SQL, exactly as the
// partial index envelopes_open (migration 0007) does: a query must repeat
// it word for word for SQLite to use that index.
const openStates = `('sealed', 'published', 'dead')`

// askable selects the requests the DMZ asks the intranet about: held ones,
// and orphaned ones (their envelope expired or was dropped before their
// result came). It is the WHERE clause of the partial index requests_ask
// (migration 0010), word for word, so that SQLite uses the index.
const askable = `(status = 'held' OR (status IN ('queued', 'sent') AND orphaned > 0))`

// What a request envelope carries, as [Envelope.Kind] says.
const (
	KindRequests  = "requests"  // requests the API accepted
	KindQuery     = "query"     // no requests: held and orphaned requests asked about
	KindHeartbeat = "heartbeat" // nothing: the channel was quiet
)

// Envelope is a sealed request envelope as the spool keeps it.
type Envelope struct {
	ID         string
	Kind       string // KindRequests, KindQuery or KindHeartbeat
	Channel    string
	Seq        uint64
	HeaderHash [32]byte
	Name       string // file name on the medium
	Data       []byte // the whole file
	Requests   int
	Created    time.Time
	Expires    time.Time
	State      string
	// Attempts counts the publications recorded by MarkPublished since
	// the envelope was stored or last retried.
	Attempts int
	// Published is the last recorded publication, zero if none.
	Published time.Time
	// ResendAt is when a published envelope falls due to be published
	// again; zero in every other state.
	ResendAt time.Time
}

// Channel returns the next sequence number of an outgoing channel and the
// header hash of the last envelope sealed on it. A channel never used
// starts at sequence 1 with a zero hash.
func (s *Spool) Channel(ctx context.Context, name string) (uint64, [32]byte, error) {
	var (
		next int64
		prev []byte
		hash [32]byte
	)
	err := s.w.QueryRowContext(ctx, `SELECT next_seq, prev FROM channels WHERE channel = ?`, name).Scan(&next, &prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 1, hash, nil
	case err != nil:
		return 0, hash, fmt.Errorf("channel %s: %w", name, err)
	case next < 1 || len(prev) != len(hash):
		return 0, hash, fmt.Errorf("channel %s: corrupt state (next %d, prev %d bytes)", name, next, len(prev))
	}
	copy(hash[:], prev)
	return uint64(next), hash, nil
}

// StoreSealed stores env (state sealed) and, in the same transaction,
// advances its channel to env.Seq+1 with env.HeaderHash as the previous
// hash and assigns the requests named by requestIDs to it. It fails with
// ErrSeqConflict, storing nothing, unless env.Seq is the channel's next
// sequence number, and fails unless every request is stored and not yet
// assigned to an envelope.
func (s *Spool) StoreSealed(ctx context.Context, env *Envelope, requestIDs []string) error {
	return s.store(ctx, env, storeOpts{requestIDs: requestIDs})
}

// StoreQuery stores env, a request envelope that carries no requests and
// asks about the held and orphaned requests named by query (see "Asking
// the intranet" in the package documentation), like StoreSealed: it fails
// with ErrSeqConflict, storing nothing, unless env.Seq is the channel's
// next sequence number. In the same transaction it records at as the time
// each of them was asked about and env as the envelope that asked, so that
// [Spool.AskDue] leaves them out until env is acknowledged or expired and
// the age given to AskDue has passed since at. (env.Created will not do:
// an envelope header keeps whole seconds.) A request named in query that
// is no longer to be asked about (its final result came meanwhile) is left
// as it is.
func (s *Spool) StoreQuery(ctx context.Context, env *Envelope, query []string, at time.Time) error {
	return s.store(ctx, env, storeOpts{query: query, at: at})
}

// storeOpts says what else store does with the envelope it stores.
type storeOpts struct {
	requestIDs []string  // the requests to assign to it
	query      []string  // the held and orphaned requests it asks about, at at
	at         time.Time //
	replaces   string    // the published envelope it re-sends (StoreResend)
}

// store stores env and does what o says, in one transaction.
func (s *Spool) store(ctx context.Context, env *Envelope, o storeOpts) error {
	requestIDs, query, at := o.requestIDs, o.query, o.at
	if env.Seq < 1 || env.Seq >= math.MaxInt64 {
		return fmt.Errorf("store envelope %s: sequence number %d out of range", env.ID, env.Seq)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store envelope %s: %w", env.ID, err)
	}
	defer tx.Rollback()
	var next int64
	err = tx.QueryRowContext(ctx, `SELECT next_seq FROM channels WHERE channel = ?`, env.Channel).Scan(&next)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		next = 1
	case err != nil:
		return fmt.Errorf("store envelope %s: %w", env.ID, err)
	}
	if uint64(next) != env.Seq {
		return fmt.Errorf("store envelope %s: sealed as %d, channel %s is at %d: %w", env.ID, env.Seq, env.Channel, next, ErrSeqConflict)
	}
	kind := KindRequests
	switch {
	case len(query) > 0:
		kind = KindQuery
	case len(requestIDs) == 0 && o.replaces == "":
		kind = KindHeartbeat
	}
	env.Kind = kind // a re-send takes the kind of the one it replaces (replace)
	if _, err := tx.ExecContext(ctx, `INSERT INTO envelopes
		(id, kind, channel, seq, header_hash, name, data, requests, state, created, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sealed', ?, ?)`,
		env.ID, kind, env.Channel, int64(env.Seq), env.HeaderHash[:], env.Name, env.Data, len(requestIDs),
		ms(env.Created), ms(env.Expires)); err != nil {
		return fmt.Errorf("store envelope %s: %w", env.ID, err)
	}
	if o.replaces != "" {
		if err := replace(ctx, tx, env, o.replaces); err != nil {
			return fmt.Errorf("store envelope %s: %w", env.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO channels (channel, next_seq, prev) VALUES (?, ?, ?)
		ON CONFLICT (channel) DO UPDATE SET next_seq = excluded.next_seq, prev = excluded.prev`,
		env.Channel, int64(env.Seq)+1, env.HeaderHash[:]); err != nil {
		return fmt.Errorf("store envelope %s: advance channel: %w", env.ID, err)
	}
	if len(requestIDs) > 0 {
		ids, err := json.Marshal(requestIDs)
		if err != nil {
			return fmt.Errorf("store envelope %s: %w", env.ID, err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE requests SET envelope_id = ?
			WHERE id IN (SELECT value FROM json_each(?)) AND envelope_id IS NULL`, env.ID, string(ids))
		if err != nil {
			return fmt.Errorf("store envelope %s: assign requests: %w", env.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(requestIDs)) {
			return fmt.Errorf("store envelope %s: assigned %d of %d requests (%v)", env.ID, n, len(requestIDs), err)
		}
	}
	if len(query) > 0 {
		ids, err := json.Marshal(query)
		if err != nil {
			return fmt.Errorf("store envelope %s: %w", env.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE requests SET queried = ?, query_envelope = ?
			WHERE id IN (SELECT value FROM json_each(?)) AND `+askable, ms(at), env.ID, string(ids)); err != nil {
			return fmt.Errorf("store envelope %s: record query: %w", env.ID, err)
		}
	}
	if err := s.audit.Stage(ctx, tx, audit.Entry{Time: env.Created, Event: audit.EventEnvelopeSealed, Envelope: env.ID,
		Channel: env.Channel, Seq: env.Seq, Count: int64(len(requestIDs)), Detail: env.Kind + sealedDetail(o)}); err != nil {
		return fmt.Errorf("store envelope %s: %w", env.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store envelope %s: commit: %w", env.ID, err)
	}
	return nil
}

// sealedDetail says what a sealed envelope carries besides requests.
func sealedDetail(o storeOpts) string {
	switch {
	case o.replaces != "":
		return ", re-sends " + o.replaces
	case len(o.query) > 0:
		return fmt.Sprintf(", asks about %d requests", len(o.query))
	}
	return ""
}

// MarkPublished records that the envelopes named by ids were published at
// at, in one transaction, and moves their queued requests to "sent". Each
// publication counts an attempt, and the envelope falls due to be
// published again b.Delay(attempts) after at (see [Spool.Due]). Envelopes
// in any state but sealed and published are left as they are: a dead,
// dropped, acknowledged or expired envelope does not come back because a
// publication of it was recorded late.
func (s *Spool) MarkPublished(ctx context.Context, ids []string, at time.Time, b Backoff) error {
	if len(ids) == 0 {
		return nil
	}
	if err := b.validate(); err != nil {
		return fmt.Errorf("mark published: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mark published: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		var attempts int
		err := tx.QueryRowContext(ctx, `UPDATE envelopes SET attempts = attempts + 1
			WHERE id = ? AND state IN ('sealed', 'published') RETURNING attempts`, id).Scan(&attempts)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return fmt.Errorf("mark published %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE envelopes SET state = 'published', published = ?, resend_at = ?
			WHERE id = ?`, ms(at), ms(at.Add(b.Delay(attempts))), id); err != nil {
			return fmt.Errorf("mark published %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE requests SET status = 'sent', updated = ?
			WHERE envelope_id = ? AND status = 'queued'`, ms(at), id); err != nil {
			return fmt.Errorf("mark published %s: %w", id, err)
		}
		if err := s.audit.Stage(ctx, tx, audit.Entry{Time: at, Event: audit.EventEnvelopePublished, Envelope: id, Count: int64(attempts)}); err != nil {
			return fmt.Errorf("mark published %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mark published: commit: %w", err)
	}
	return nil
}

// Unpublished returns the envelopes stored but not known to be published,
// in sequence order.
func (s *Spool) Unpublished(ctx context.Context) ([]*Envelope, error) {
	return s.envelopes(ctx, `WHERE state IN `+openStates+` AND state = 'sealed' ORDER BY channel, seq`)
}

// Due returns up to limit published envelopes whose next re-send is due
// at now (ResendAt not after now), the longest overdue first, without
// their bytes. Call [Spool.MarkDead] first: Due does not look at
// attempts. The caller re-sends the requests of each still open
// ([Spool.OpenRequests]) in a new envelope ([Spool.StoreResend]), or
// retires one that has none ([Spool.Retire]).
func (s *Spool) Due(ctx context.Context, now time.Time, limit int) ([]*Envelope, error) {
	return selectEnvelopes(ctx, s.w, false, `WHERE state = 'published' AND resend_at <= ?
		ORDER BY resend_at, channel, seq LIMIT ?`, ms(now), limit)
}

// MarkDead makes dead every published envelope whose next re-send is due
// at now and that was already published maxAttempts times or more, and
// returns them (without their bytes, which the spool keeps for a retry).
// Their requests keep their status: they expire with the envelope unless
// a late result or acknowledgement comes first.
func (s *Spool) MarkDead(ctx context.Context, now time.Time, maxAttempts int) ([]*Envelope, error) {
	if maxAttempts < 1 {
		return nil, fmt.Errorf("mark dead: max attempts %d is below 1", maxAttempts)
	}
	rows, err := s.w.QueryContext(ctx, `UPDATE envelopes SET state = 'dead', resend_at = NULL
		WHERE state = 'published' AND resend_at <= ? AND attempts >= ?
		RETURNING `+envelopeColumns(false), ms(now), maxAttempts)
	if err != nil {
		return nil, fmt.Errorf("mark dead: %w", err)
	}
	list, err := scanEnvelopes(rows)
	if err != nil {
		return nil, fmt.Errorf("mark dead: %w", err)
	}
	return list, nil
}

// askDueQuery selects the requests due to be asked about (see
// [Spool.AskDue]), reading the partial index requests_ask.
const askDueQuery = `SELECT id FROM (SELECT id, rid,
		max(queried, CASE WHEN status = 'held' THEN updated ELSE 0 END) AS waiting
	FROM requests r
	WHERE ` + askable + `
		AND NOT EXISTS (SELECT 1 FROM envelopes e
			WHERE e.id = r.query_envelope AND e.state IN ('sealed', 'published')))
	WHERE waiting < ? ORDER BY waiting, rid LIMIT ?`

// AskDue returns the ids of up to limit requests that are due to be asked
// about: held ones last asked about (or, if never asked, held) before
// before, and orphaned ones never asked about or last asked about before
// before, unless the envelope that last asked about them is still sealed
// or published: publishing it again asks again. A dead envelope is not
// published again, so the requests it asked about are due. The longest
// waiting come first (an orphaned request never asked about before all),
// so that when more than limit are due every one is asked in turn. It
// reads from the read-only pool.
func (s *Spool) AskDue(ctx context.Context, before time.Time, limit int) ([]string, error) {
	// A held request's updated is the time it became held: nothing else
	// changes a held request until its final result. An orphaned request
	// is asked about at once.
	rows, err := s.r.QueryContext(ctx, askDueQuery, ms(before), limit)
	if err != nil {
		return nil, fmt.Errorf("requests due to be asked about: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("requests due to be asked about: %w", err)
	}
	return ids, nil
}

// EnvelopeByID returns one stored envelope.
func (s *Spool) EnvelopeByID(ctx context.Context, id string) (*Envelope, error) {
	list, err := s.envelopes(ctx, `WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("envelope %s: %w", id, ErrNotFound)
	}
	return list[0], nil
}

func (s *Spool) envelopes(ctx context.Context, where string, args ...any) ([]*Envelope, error) {
	return selectEnvelopes(ctx, s.w, true, where, args...)
}

// selectEnvelopes reads the envelopes matching where from db, with their
// bytes if data.
func selectEnvelopes(ctx context.Context, db *sql.DB, data bool, where string, args ...any) ([]*Envelope, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+envelopeColumns(data)+` FROM envelopes `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list envelopes: %w", err)
	}
	list, err := scanEnvelopes(rows)
	if err != nil {
		return nil, fmt.Errorf("list envelopes: %w", err)
	}
	return list, nil
}

// envelopeColumns is the column list scanEnvelopes reads; without data,
// the bytes read as empty.
func envelopeColumns(data bool) string {
	d := "X''"
	if data {
		d = "data"
	}
	return `id, kind, channel, seq, header_hash, name, ` + d + `, requests, state, created, expires, published, attempts, resend_at`
}

// scanEnvelopes reads rows of envelopeColumns to the end and closes them
// (the writer has a single connection).
func scanEnvelopes(rows *sql.Rows) ([]*Envelope, error) {
	defer rows.Close()
	var out []*Envelope
	for rows.Next() {
		var (
			e                           Envelope
			seq                         int64
			hash                        []byte
			created, expires, published int64
			resend                      sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &e.Kind, &e.Channel, &seq, &hash, &e.Name, &e.Data, &e.Requests, &e.State,
			&created, &expires, &published, &e.Attempts, &resend); err != nil {
			return nil, err
		}
		e.Seq = uint64(seq)
		copy(e.HeaderHash[:], hash)
		e.Created, e.Expires = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC()
		if published > 0 {
			e.Published = time.UnixMilli(published).UTC()
		}
		if resend.Valid {
			e.ResendAt = time.UnixMilli(resend.Int64).UTC()
		}
		out = append(out, &e)
	}
	return out, rows.Err()
}

// Expire marks the open envelopes (sealed, published or dead) whose expiry
// is not after now as expired, dropping their bytes, and orphans their
// requests without a result (queued or sent): they keep their status, lose
// their parameters and subject (the DMZ never sends them again), and
// [Spool.AskDue] picks them, so that the intranet says whether it applied
// them. An expired envelope may have been applied with only its answer
// lost; the intranet's answer is the request's one final result (expired
// with batch.ReasonNotReceived if it never arrived). Expire returns the ids
// of the requests it orphaned. Held requests are not touched: the
// intranet answered them, and their final result (approval_expired at the
// latest) comes from there.
func (s *Spool) Expire(ctx context.Context, now time.Time) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	defer tx.Rollback()
	ids, err := orphan(ctx, tx, `SELECT id FROM envelopes WHERE state IN `+openStates+` AND expires <= ?`, now, ms(now))
	if err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	expired, err := tx.QueryContext(ctx, `UPDATE envelopes SET state = 'expired', data = X'', resend_at = NULL
		WHERE state IN `+openStates+` AND expires <= ? RETURNING id`, ms(now))
	if err != nil {
		return nil, fmt.Errorf("expire envelopes: %w", err)
	}
	envs, err := scanStrings(expired)
	if err != nil {
		return nil, fmt.Errorf("expire envelopes: %w", err)
	}
	for _, id := range envs {
		if err := s.audit.Stage(ctx, tx, audit.Entry{Time: now, Event: audit.EventEnvelopeExpired, Envelope: id}); err != nil {
			return nil, fmt.Errorf("expire envelopes: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("expire: commit: %w", err)
	}
	return ids, nil
}

// orphan orphans, at now, the requests without a result (queued or sent)
// of the envelopes that the query envelopes (with its args) selects, and
// returns their ids.
func orphan(ctx context.Context, tx *sql.Tx, envelopes string, now time.Time, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE requests SET orphaned = ?, params = NULL, subject = '', updated = ?
		WHERE status IN ('queued', 'sent') AND envelope_id IN (`+envelopes+`)
		RETURNING id`, append([]any{ms(now), ms(now)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("orphan requests: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("orphan requests: %w", err)
	}
	return ids, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ReceivedEnvelope identifies a result envelope being applied.
type ReceivedEnvelope struct {
	ID      string
	Channel string
	Seq     uint64
	// Prev is the header hash of the envelope before it on the channel
	// (zero for seq 1), and HeaderHash its own, as envelope.Opened gives
	// them.
	Prev       [32]byte
	HeaderHash [32]byte
	// Catalogue, when not nil, is the operation catalogue the envelope
	// carries, already checked by the caller. ApplyResults stores it, in
	// its transaction, as a Catalogue with Seq and the time of applying,
	// if Seq is higher than the stored catalogue's.
	Catalogue json.RawMessage
}

// Applied says what ApplyResults did.
type Applied struct {
	Final []string // requests that reached a final status
	// Held lists the requests that a held result moved from queued or
	// sent to held: not final, their final result comes in a later
	// envelope.
	Held    []string
	Unknown []string // result request ids the spool does not hold
	// Stale counts the results ignored because their request was already
	// final, or was already held and the result is another held one.
	Stale    int
	Acked    int      // request envelopes newly acknowledged
	NoResult []string // requests of acknowledged envelopes left without a result, now failed
	// CatalogueStored says that the envelope's catalogue replaced the
	// stored one (or was the first).
	CatalogueStored bool
	// GapsOpened counts the ranges of sequence numbers this envelope
	// showed missing.
	GapsOpened int
}

// ApplyResults stores the results of one result envelope and marks the
// request envelopes it acknowledges, in one transaction that also records
// env and stores env.Catalogue (see ReceivedEnvelope). It returns
// ErrDuplicate if env.ID was applied before, and ErrReplay if another
// envelope already used env's channel and sequence number; in both cases
// nothing changes. An envelope with no results and no acknowledgements is
// recorded all the same.
//
// A final result (done, rejected, failed) applies to a request that is
// queued, sent or held; a held result only to one that is queued or sent.
// Any other result is stale and ignored. An acknowledgement applies to an
// open envelope (sealed, published or dead: a dead letter acknowledged
// late is acknowledged all the same); the acknowledged envelope's
// requests that are still queued or sent fail with ReasonNoResult, held
// ones stay held.
func (s *Spool) ApplyResults(ctx context.Context, env ReceivedEnvelope, res *batch.Results, now time.Time) (*Applied, error) {
	if env.Seq >= math.MaxInt64 {
		return nil, fmt.Errorf("apply results %s: sequence number %d out of range", env.ID, env.Seq)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	defer tx.Rollback()
	var prior string
	err = tx.QueryRowContext(ctx, `SELECT id FROM received WHERE id = ? OR (channel = ? AND seq = ?) LIMIT 1`,
		env.ID, env.Channel, int64(env.Seq)).Scan(&prior)
	switch {
	case err == nil && prior == env.ID:
		return nil, ErrDuplicate
	case err == nil:
		return nil, fmt.Errorf("apply results %s: %s %d is envelope %s: %w", env.ID, env.Channel, env.Seq, prior, ErrReplay)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	gaps, err := s.recordReceived(ctx, tx, env, now)
	if err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	final, err := tx.PrepareContext(ctx, `UPDATE requests SET status = ?, result = ?, rows_affected = ?,
		retry_after = ?, reason = ?, message = ?, params = NULL, subject = '', updated = ?
		WHERE id = ? AND status IN ('queued', 'sent', 'held')`)
	if err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	defer final.Close()
	// A held request's params and subject go too: the intranet holds the
	// request now, and the DMZ never sends it again.
	held, err := tx.PrepareContext(ctx, `UPDATE requests SET status = 'held', result = NULL, rows_affected = 0,
		retry_after = 0, reason = ?, message = ?, params = NULL, subject = '', updated = ?
		WHERE id = ? AND status IN ('queued', 'sent')`)
	if err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	defer held.Close()
	exists, err := tx.PrepareContext(ctx, `SELECT count(*) FROM requests WHERE id = ?`)
	if err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	defer exists.Close()
	out := &Applied{GapsOpened: audit.CountGaps(gaps, audit.GapOpened)}
	var trail []audit.Entry // staged with the envelope, if auditing is on
	for _, r := range res.Results {
		var n int64
		if r.Status == batch.StatusHeld {
			n, err = affected(held.ExecContext(ctx, r.Reason, r.Message, ms(now), r.RequestID))
		} else {
			var rows []byte
			if r.Status == batch.StatusDone {
				rows, err = json.Marshal(r.Rows)
				if err != nil {
					return nil, fmt.Errorf("apply results %s: result %s: %w", env.ID, r.RequestID, err)
				}
				if r.Rows == nil {
					rows = []byte("[]")
				}
			}
			n, err = affected(final.ExecContext(ctx, r.Status, rows, r.RowsAffected, max(r.RetryAfter, 0), r.Reason, r.Message, ms(now), r.RequestID))
		}
		if err != nil {
			return nil, fmt.Errorf("apply results %s: result %s: %w", env.ID, r.RequestID, err)
		}
		if n == 1 {
			trail = append(trail, audit.Entry{Time: now, Event: audit.EventResultReceived, Request: r.RequestID, Envelope: env.ID,
				Decision: r.Status, Reason: r.Reason, Rows: max(r.RowsAffected, int64(len(r.Rows)))})
			if r.Status == batch.StatusHeld {
				out.Held = append(out.Held, r.RequestID)
			} else {
				out.Final = append(out.Final, r.RequestID)
			}
			continue
		}
		var c int
		if err := exists.QueryRowContext(ctx, r.RequestID).Scan(&c); err != nil {
			return nil, fmt.Errorf("apply results %s: result %s: %w", env.ID, r.RequestID, err)
		}
		if c == 0 {
			out.Unknown = append(out.Unknown, r.RequestID)
		} else {
			out.Stale++
		}
	}
	for _, id := range res.Acks {
		n, err := affected(tx.ExecContext(ctx, `UPDATE envelopes SET state = 'acked', data = X'', resend_at = NULL
			WHERE id = ? AND state IN `+openStates, id))
		if err != nil {
			return nil, fmt.Errorf("apply results %s: ack %s: %w", env.ID, id, err)
		}
		out.Acked += int(n)
		if n == 0 {
			continue
		}
		trail = append(trail, audit.Entry{Time: now, Event: audit.EventAck, Envelope: id, Detail: "acknowledged by " + env.ID})
		// The intranet acknowledges an envelope in the same envelope as the
		// last of its results; a request still queued or sent here was
		// never answered. A held one was: its final result comes later.
		rows, err := tx.QueryContext(ctx, `UPDATE requests SET status = 'failed', reason = ?, message = ?,
			params = NULL, subject = '', updated = ? WHERE envelope_id = ? AND status IN ('queued', 'sent') RETURNING id`,
			ReasonNoResult, "the intranet acknowledged the request without a result", ms(now), id)
		if err != nil {
			return nil, fmt.Errorf("apply results %s: ack %s: %w", env.ID, id, err)
		}
		ids, err := scanStrings(rows)
		if err != nil {
			return nil, fmt.Errorf("apply results %s: ack %s: %w", env.ID, id, err)
		}
		out.NoResult = append(out.NoResult, ids...)
		out.Final = append(out.Final, ids...)
		for _, rid := range ids {
			trail = append(trail, audit.Entry{Time: now, Event: audit.EventResultReceived, Request: rid, Envelope: env.ID,
				Decision: batch.StatusFailed, Reason: ReasonNoResult})
		}
	}
	if env.Catalogue != nil {
		stored, err := storeCatalogue(ctx, tx, &Catalogue{Data: env.Catalogue, Seq: env.Seq, Received: now})
		if err != nil {
			return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
		}
		out.CatalogueStored = stored
	}
	trail = append(trail, audit.Entry{Time: now, Event: audit.EventEnvelopeOpened, Envelope: env.ID, Channel: env.Channel, Seq: env.Seq,
		Count: int64(len(res.Results)), Detail: fmt.Sprintf("%d results, %d acknowledgements", len(res.Results), len(res.Acks))})
	// The envelope's audit entries, its channel's gaps last, in one statement.
	if err := s.audit.Stage(ctx, tx, append(trail, gaps...)...); err != nil {
		return nil, fmt.Errorf("apply results %s: %w", env.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply results %s: commit: %w", env.ID, err)
	}
	return out, nil
}

// affected returns the rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
