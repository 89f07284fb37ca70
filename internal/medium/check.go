package medium

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// CheckReport is what a check of a medium found: whether it answers,
// whether a file can be written, renamed and removed on it, how much room
// it has, and what is waiting on it. Each implementation's Check fills
// one in (dir.Check, sftp.Check, ...); `ferryctl medium check` prints it.
//
// A check never claims, changes or removes a file it did not write: it
// only lists the medium and writes, renames and removes its own probe
// file (see [ProbeName]).
type CheckReport struct {
	Medium    string        // "dir /path", "sftp user@host:port/dir", ...
	Reachable bool          // the medium answered: the directory exists, or the server was connected and logged in to
	Identity  string        // sftp: the host key fingerprint (SHA256:...) the server showed; ftps: the certificate's SHA-256; dir: ""
	Writable  bool          // a probe file was written, renamed and removed
	FreeBytes int64         // -1 when the medium cannot tell
	Files     int           // final-named files waiting (unclaimed)
	Oldest    string        // the oldest of them ("" if none)
	OldestAge time.Duration // how long the oldest has waited, by its modification time
	Temps     int           // temp files of interrupted uploads
	Problems  []string      // each a full sentence; empty means healthy
}

// MinFreeBytes is the free space below which a check reports a problem:
// less than one envelope of the largest size the inbox accepts.
const MinFreeBytes = DefaultMaxFileSize

// probePrefix starts the name of every probe file a check writes.
const probePrefix = ".ferry-check-"

// ProbeName returns a fresh name for a check's probe file,
// ".ferry-check-<16 hex>". It starts with '.', so no receiver takes it,
// and it does not have the shape of a publisher's temporary name, so no
// janitor counts it.
func ProbeName() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return probePrefix + hex.EncodeToString(b[:])
}

// ProbeRenamed returns the dot name a check renames its probe file to.
func ProbeRenamed(probe string) string { return probe + ".renamed" }

// Healthy reports whether the check found no problem.
func (r *CheckReport) Healthy() bool { return len(r.Problems) == 0 }

// Problemf records a problem. The message is a full sentence: it starts
// with a capital letter and ends with a period, which Problemf adds when
// it is missing.
func (r *CheckReport) Problemf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if msg == "" {
		return
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	r.Problems = append(r.Problems, msg)
}

// AddFile counts a final-named file waiting on the medium, last modified
// at mtime, and keeps the oldest. Ties go to the smaller name, so the
// report does not depend on listing order.
func (r *CheckReport) AddFile(name string, mtime, now time.Time) {
	r.Files++
	age := max(now.Sub(mtime), 0)
	if r.Oldest == "" || age > r.OldestAge || age == r.OldestAge && name < r.Oldest {
		r.Oldest, r.OldestAge = name, age
	}
}

// SetFree records the free space of the medium, n bytes, and reports a
// problem when it is known to be below MinFreeBytes.
func (r *CheckReport) SetFree(n int64) {
	r.FreeBytes = n
	if n >= 0 && n < MinFreeBytes {
		r.Problemf("only %d bytes are free on the medium, less than one envelope of the largest size (%d bytes)", n, int64(MinFreeBytes))
	}
}
