// Package remote is what every remote drop medium (SFTP, FTPS) does the
// same way, over a small interface that each protocol implements: the
// receiver's scan loop, the publisher's temporary upload and placing, and
// the janitor of stale temporary files. The protocol packages
// (medium/sftp, medium/ftps) dial and authenticate; this package keeps
// their connection ([Reconnector]) and decides what to do with the files.
//
// # Connections
//
// A [Reconnector] keeps one protocol connection (a [Link]): it hands out
// the live one, dials a new one after a failure once an exponential
// backoff with jitter has passed ([Backoff]: 100ms doubling to 30s by
// default), bounds each operation by the protocol's operation timeout
// (an overrun closes the connection, which fails the operation), and
// tells the server's answers, which keep the connection, from failures,
// which drop it. Its one-slot turn serializes dials, or, for FTP, whole
// publishes and scans.
//
// # The protocol interface
//
// A protocol hands out live connections ([Client.Get]); each [Conn] lists
// the drop directory, stats, opens, uploads, places and removes files.
// Every method is one operation (or a chunked series of them) that the
// protocol bounds by its operation timeout. A method's error that is the
// server's answer to a request (no such file, permission denied, a full
// disk) is marked with [Answer]; any other error is a failure of the
// connection, which the protocol has dropped by the time the method
// returns, and the next [Client.Get] dials again.
//
// # Publishing
//
// [Publisher.Publish] checks the final name first: if it exists, equal
// bytes are success and other bytes [medium.ErrExists]. Otherwise it
// uploads to a temporary dot name (".<name>.tmp-<16 hex>", which
// [medium.ValidName] refuses, so no receiver takes it) and asks the
// protocol to place it under its final name without replacing a file
// where the protocol can ([Conn.Place]). A refused placing compares
// again (another publish may have won the name). A failed or canceled
// upload removes its temporary file, over the next connection if the
// one that wrote it died; an upload is never resumed.
//
// # Receiving
//
// [Receiver.Run] sends the inbox leftovers first, then lists the drop
// directory every Rescan and claims the valid names in name order, one at
// a time: it claims a file only after the previous one was sent. A claim
// downloads into the inbox ([medium.Inbox.Add]), reading no more than the
// size the server reported, and only then removes the file from the
// server, so a file is on the server, in the inbox, or briefly in both,
// never nowhere. Copies of inbox leftovers found by the first listing,
// and files whose name the inbox still holds, are recorded as duplicates
// ([medium.Inbox.QuarantineNote]) and removed from the server; so are
// files over the inbox size cap. Names that are not regular files are
// logged once and left alone. A removal the server refuses leaves the
// name alone while Run runs (stuck); a removal lost with the connection
// is done by the next listing that shows the same file, same size and
// modification time (unremoved), instead of taking it again.
//
// # Janitor
//
// Both sides remove files of the temporary pattern older than TempMaxAge,
// at most every TempMaxAge/4, by the server's modification time against
// the local clock.
package remote

import (
	"context"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"time"
)

// DefaultChunkSize is how much one read or write operation moves when a
// config leaves ChunkSize zero; it bounds the memory a transfer holds and
// the work one operation timeout covers.
const DefaultChunkSize = 1 << 20

// Attribute keys for log records.
const (
	logDir     = "dir"
	logFile    = "file"
	logError   = "error"
	logCount   = "count"
	logSize    = "size"
	logMaxSize = "max_size"
)

// Entry is a file as the server lists or stats it.
type Entry struct {
	Name    string    // base name
	Size    int64     // bytes
	ModTime time.Time // as precise as the protocol tells (FTP LIST: minutes)
	Regular bool      // a regular file (not a directory, link or other)
}

// Client hands out connections to one server.
type Client interface {
	// Get returns the live connection, dialing a new one (after the
	// backoff that recent failures call for) if there is none. It returns
	// ctx.Err() if ctx ends first.
	Get(ctx context.Context) (Conn, error)
}

// Conn is one live connection. Paths are absolute, as the server names
// them. Errors that are the server's answer are marked with [Answer] and
// keep their cause for errors.Is (fs.ErrNotExist for a missing file);
// other errors mean the connection failed and was dropped.
type Conn interface {
	// List lists dir (without "." and "..").
	List(ctx context.Context, dir string) ([]Entry, error)
	// Stat describes path without following a symbolic link where the
	// protocol can; a missing path is an answer wrapping fs.ErrNotExist.
	Stat(ctx context.Context, path string) (Entry, error)
	// Open opens path for reading; a missing path is an answer wrapping
	// fs.ErrNotExist.
	Open(ctx context.Context, path string) (File, error)
	// Upload creates path (exclusively where the protocol can), writes
	// the size bytes of src to it a chunk at a time, makes it durable
	// where the protocol can, and closes it, reporting a late write
	// error. created is false when the server refused to create the file
	// (nothing to remove afterwards); a ctx that ends stops the upload
	// between chunks. A src that fails or ends early fails the upload
	// with its error, which is neither an answer nor the connection's.
	Upload(ctx context.Context, path string, src io.ReaderAt, size int64) (created bool, err error)
	// Place gives tmp the name final without replacing an existing file
	// where the protocol can; a final name that exists is refused with an
	// answer. tmpGone reports that tmp no longer exists (it was renamed).
	Place(ctx context.Context, tmp, final string) (tmpGone bool, err error)
	// Remove removes the file path; a missing one is an answer wrapping
	// fs.ErrNotExist.
	Remove(ctx context.Context, path string) error
	// Dead reports whether the connection has failed or been closed.
	Dead() bool
}

// File is a file open for reading.
type File interface {
	// Stat describes the file opened (not the name: it may have been
	// replaced since), as well as the protocol can tell.
	Stat(ctx context.Context) (Entry, error)
	// ReadFull reads into p until p is full or the file ends, like
	// io.ReadFull, within one operation timeout; n < len(p) with a nil
	// error means the file ended.
	ReadFull(ctx context.Context, p []byte) (n int, err error)
	// Close closes the file; ctx bounds a protocol that must wait for
	// the server. Close after Close does nothing and returns nil.
	Close(ctx context.Context) error
}

// answerError marks an error as the server's answer.
type answerError struct{ err error }

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// Answer marks err as the server's answer to a request, not a failure of
// the connection. Answer(nil) is nil.
func Answer(err error) error {
	if err == nil || IsAnswer(err) {
		return err
	}
	return &answerError{err}
}

// IsAnswer reports whether err was marked with [Answer].
func IsAnswer(err error) bool {
	var a *answerError
	return errors.As(err, &a)
}

// Backoff returns the wait before a dial after n consecutive failures:
// about lo·2^(n-1), at most hi, with jitter in [d/2, d] so that clients
// that failed together do not come back together; 0 for n <= 0.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	if n <= 0 || lo <= 0 {
		return 0
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// logger returns l, or slog.Default() if l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
