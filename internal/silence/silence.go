// Package silence notices when a peer zone has gone quiet.
//
// Each agent expects envelopes from the other zone at least every
// heartbeat: the peer seals one when its channel has been quiet that
// long. A [Watch] remembers when the last authentic envelope arrived on a
// channel and, once the configured limit has passed without one, reports
// the channel silent: a warning in the log once per silent spell, an
// info line when it is heard again, and [Watch.State] for status and
// metrics. Silence means the peer is down, the medium has stopped moving,
// or an attacker is dropping files; the watch cannot tell which.
//
// # What counts
//
// Only envelopes that passed signature and recipient checks count (the
// caller calls [Watch.Heard] after envelope.Opener.Open succeeded), so
// garbage dropped on the medium cannot hide a silent peer. The clock
// starts when the watch is made: a freshly started agent waits a full
// limit before it reports silence.
package silence

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log attribute keys.
const (
	logChannel = "channel"
	logSilent  = "silent_for"
	logLimit   = "limit"
)

// Watch tracks one incoming channel.
type Watch struct {
	channel string
	limit   time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	last   time.Time
	silent bool
}

// New returns a watch of channel that reports silence after limit,
// counting from now.
func New(channel string, limit time.Duration, now time.Time, log *slog.Logger) *Watch {
	return &Watch{channel: channel, limit: limit, log: log, last: now}
}

// Heard records an authentic envelope on the channel at now.
func (w *Watch) Heard(now time.Time) {
	w.mu.Lock()
	was := w.silent
	quiet := now.Sub(w.last)
	if now.After(w.last) {
		w.last = now
	}
	w.silent = false
	w.mu.Unlock()
	if was {
		w.log.Info("channel heard again", slog.String(logChannel, w.channel), slog.Duration(logSilent, quiet.Round(time.Second)))
	}
}

// Check reports whether the channel is silent at now, logging a warning
// when it has just become so.
func (w *Watch) Check(now time.Time) bool {
	w.mu.Lock()
	quiet := now.Sub(w.last)
	became := !w.silent && quiet >= w.limit
	if became {
		w.silent = true
	}
	silent := w.silent
	w.mu.Unlock()
	if became {
		w.log.Warn("channel silent: no envelope from the peer zone", slog.String(logChannel, w.channel),
			slog.Duration(logSilent, quiet.Round(time.Second)), slog.Duration(logLimit, w.limit))
	}
	return silent
}

// State returns when the channel was last heard and whether it is
// reported silent.
func (w *Watch) State() (last time.Time, silent bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.silent
}

// Run checks the channel a few times per limit until ctx ends, with now
// as the clock. It returns nil.
func (w *Watch) Run(ctx context.Context, now func() time.Time) error {
	t := time.NewTicker(max(w.limit/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Check(now())
		case <-ctx.Done():
			return nil
		}
	}
}
