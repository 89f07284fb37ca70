// Package medium defines the transfer media that carry envelopes across the
// zone boundary, and the local inbox a receiver claims envelopes into.
//
// # Roles
//
// A sending agent writes each sealed envelope to a medium with a
// [Publisher]. The receiving agent runs a [Receiver], which moves (claims)
// every arrived envelope file into its local [Inbox] and hands the name to
// the agent. The agent reads the file with [Inbox.Read], and then either
// removes it ([Inbox.Remove]) once its effect is durable elsewhere, or
// moves it to the quarantine directory with a reason ([Inbox.Quarantine]).
//
// # Trust
//
// The medium is writable by an attacker. Nothing on it is trusted: names
// are checked with [ValidName] before they are used as paths, files are
// opened without following symlinks, only regular files with one link and
// at most the size cap are read, and a refused file is kept in quarantine
// with a reason file beside it, never silently deleted.
//
// # Exactly once across restarts
//
// A claim is a rename into the inbox followed by an fsync of the inbox
// directory, so a file is at every moment either on the medium or in the
// inbox, never both and never neither. After a restart the receiver sends
// the inbox leftovers first. The consumer removes a file only after it has
// recorded its effect, so nothing is lost; a file that is found both in
// the inbox and on the medium is quarantined as a duplicate (reason
// [ReasonDuplicateName]) instead of being sent twice.
//
// # Large files
//
// Media stream: [Publisher.PublishFrom] reads its source in pieces,
// receivers copy a file into the inbox in pieces, and [Inbox.Open] hands
// a claimed file out as an open file, so a file of any size within the
// inbox size cap passes with memory bounded by a few pieces, not by the
// file. The conformance suite sends 256 MiB through every medium and
// watches the heap while it does.
//
// # Implementations
//
// Package medium/dir is the directory medium (a ferry or diode directory,
// or a shared mount). Package medium/mediumtest is the conformance suite
// every implementation runs.
package medium

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Publisher writes envelope files to a medium.
type Publisher interface {
	// Publish durably writes data under name. When it returns nil the file
	// is complete under its final name; no reader ever sees a partial file
	// under a final name. Publishing a name that already holds the same
	// bytes succeeds; one that holds other bytes fails with ErrExists.
	// A name that fails ValidName fails with ErrInvalidName.
	// Publish returns ctx.Err() if ctx ends first, leaving no partial file.
	// Publish is safe for concurrent use with distinct names.
	Publish(ctx context.Context, name string, data []byte) error

	// PublishFrom is Publish of the size bytes src holds, for files too
	// large to hold in memory: it reads src in pieces, at any offset and
	// as often as it needs (a retry uploads again, a name that exists is
	// compared), and holds at most a few pieces at a time, whatever size
	// is. src must not change until PublishFrom returns; a src that ends
	// before size bytes fails the publish and leaves no partial file.
	PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) error
}

// Receiver claims envelope files that arrive on a medium into an Inbox.
type Receiver interface {
	// Run claims arrived files into the inbox and sends each claimed name
	// on out, until ctx ends; then it returns ctx.Err(). Files already in
	// the inbox when Run starts (claimed before a restart) are sent first.
	//
	// Run sends each claimed file once. A file found on the medium under a
	// name the inbox still holds is quarantined as a duplicate, not sent.
	// A file published again under a name whose earlier file the consumer
	// has already removed is a new arrival and is sent again (senders
	// re-publish unacknowledged envelopes under the same name); consumers
	// deduplicate by envelope identity.
	//
	// Run claims no more than it can send: it claims a file only when the
	// previous one has been sent, so a slow consumer holds files on the
	// medium, not in memory. Failures of the medium (a missing or
	// unreadable directory) are logged and retried; Run returns another
	// error only when the local inbox fails.
	Run(ctx context.Context, out chan<- string) error
}

// ErrExists is returned by Publish when the final name holds other bytes.
var ErrExists = errors.New("medium: name exists with different content")

// ErrInvalidName is returned for a file name that fails ValidName.
var ErrInvalidName = errors.New("medium: invalid envelope file name")

// DefaultMaxFileSize caps the size of a file the inbox will read.
const DefaultMaxFileSize = 64 << 20

// MaxNameLen is the longest valid envelope file name.
const MaxNameLen = 128

// NameExt is the extension every valid envelope file name ends with.
const NameExt = ".fxe"

// ValidName reports whether name is a final envelope file name a receiver
// may claim: 1-128 bytes of [a-z0-9._-], not starting with '.', ending
// ".fxe". Temporary names start with '.', so they never pass.
func ValidName(name string) bool {
	if len(name) <= len(NameExt) || len(name) > MaxNameLen || name[0] == '.' || name[len(name)-len(NameExt):] != NameExt {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ReadSource reads exactly len(p) bytes of a publish source at off. A
// source that ends first fails with an error wrapping
// io.ErrUnexpectedEOF: the caller announced more bytes than it has.
func ReadSource(src io.ReaderAt, off int64, p []byte) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read the source at offset %d: %w", off, err)
}
