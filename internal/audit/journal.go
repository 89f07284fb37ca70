package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The admin journal: what ferryctl does offline to a zone (keys generated,
// rotated, accepted or revoked; envelopes carried out or in) happens where
// no agent sees it. ferryctl appends one line per action to the journal in
// the zone's key directory ([AppendJournal]); the zone's agent takes new
// lines into its audit log as they appear ([Log.IngestJournal], from
// [Log.Run]), and keeps how far it read in the log itself, in the same
// transaction as the entries, so no line is taken twice or lost.
//
// A line is an [Entry] of event "admin" as canonical JSON, with the OS user
// who ran the command (and the one behind sudo) as its actor. Until an
// agent has taken a line in, the journal is only a file: whoever can write
// the key directory can change it. Once taken in, the line is in the log.

// JournalFile is the admin journal's name in a zone's key directory.
const JournalFile = "admin-journal"

// journalSource is the name under which the log keeps how many bytes of
// the journal it has taken in.
const journalSource = "admin-journal"

// maxJournalRead bounds what one IngestJournal call reads.
const maxJournalRead = 1 << 20

// AppendJournal appends e to the admin journal in the key directory dir,
// durably: one line, written with O_APPEND and synced. The journal is
// created 0640. e's zone may be empty (the agent sets its own); its
// event must be EventAdmin and its decision (the action) set.
func AppendJournal(dir string, e Entry) error {
	if e.Event != EventAdmin || e.Decision == "" {
		return errors.New("admin journal: an entry must be an admin action")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Zone == "" {
		e.Zone = "-" // Encode wants one; the ingesting agent sets its own
	}
	b, err := e.Encode()
	if err != nil {
		return fmt.Errorf("admin journal: %w", err)
	}
	file := filepath.Join(dir, JournalFile)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("admin journal: %w", err)
	}
	if err := ownLikeDir(f, dir); err != nil {
		f.Close()
		return fmt.Errorf("admin journal %s: %w", file, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("admin journal %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("admin journal %s: %w", file, err)
	}
	return f.Close()
}

// ownLikeDir gives f, when root runs this, the owner and group of dir:
// an admin working with sudo must not leave a journal the zone's agent
// cannot read.
func ownLikeDir(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	d, ok1 := di.Sys().(*syscall.Stat_t)
	s, ok2 := fi.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || d.Uid == s.Uid && d.Gid == s.Gid {
		return nil
	}
	return f.Chown(int(d.Uid), int(d.Gid))
}

// IngestJournal takes the complete lines of the admin journal at file that
// it has not taken before into the log, as admin entries of this zone, and
// returns how many lines it took. A line that is not an admin entry is
// recorded as an audit.journal entry naming its byte offset, never its
// contents. A journal shorter than what was taken in was replaced or
// truncated: that is recorded too, and reading starts again at its
// beginning. A missing journal is no error.
func (l *Log) IngestJournal(ctx context.Context, file string) (int, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("admin journal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("admin journal: %w", err)
	}
	var offset int64
	err = l.db.QueryRowContext(ctx, `SELECT last_id FROM audit_sources WHERE source = ?`, journalSource).Scan(&offset)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("admin journal: %w", err)
	}
	now := time.Now()
	var entries []Entry
	if fi.Size() < offset {
		entries = append(entries, Entry{Time: now, Event: EventJournal, Actor: "agent", Decision: "refused",
			Detail: fmt.Sprintf("the admin journal %s holds %d bytes, %d were taken in before: it was replaced or truncated", file, fi.Size(), offset)})
		offset = 0
	}
	if fi.Size() == offset && len(entries) == 0 {
		return 0, nil
	}
	buf := make([]byte, min(fi.Size()-offset, maxJournalRead))
	n, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("admin journal %s: %w", file, err)
	}
	buf = buf[:n]
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 && len(buf) == maxJournalRead {
		// A line longer than anything AppendJournal writes: skip it.
		entries = append(entries, journalRefusal(now, file, offset, "a line longer than "+strconv.Itoa(maxJournalRead)+" bytes"))
		end = len(buf) - 1
	}
	lines := 0
	if end >= 0 {
		pos := offset
		for line := range bytes.SplitSeq(buf[:end], []byte("\n")) {
			e, err := DecodeEntry(line)
			switch {
			case err != nil:
				entries = append(entries, journalRefusal(now, file, pos, "not an audit entry"))
			case e.Event != EventAdmin || e.Decision == "":
				entries = append(entries, journalRefusal(now, file, pos, "not an admin action"))
			default:
				entries = append(entries, e)
				lines++
			}
			pos += int64(len(line)) + 1
		}
		offset += int64(end) + 1
	}
	if len(entries) == 0 {
		return 0, nil
	}
	bodies, times := make([][]byte, len(entries)), make([]int64, len(entries))
	for i, e := range entries {
		e.Zone = l.zone
		if bodies[i], err = e.Encode(); err != nil {
			return 0, fmt.Errorf("admin journal: %w", err)
		}
		times[i] = e.Time.UnixMilli()
	}
	_, err = l.appendBodies(ctx, bodies, times, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_sources (source, last_id) VALUES (?, ?)
			ON CONFLICT (source) DO UPDATE SET last_id = excluded.last_id`, journalSource, offset)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("admin journal: %w", err)
	}
	return lines, nil
}

// journalRefusal is the entry for a journal line that cannot be taken in.
func journalRefusal(now time.Time, file string, offset int64, why string) Entry {
	return Entry{Time: now, Event: EventJournal, Actor: "agent", Decision: "refused",
		Detail: fmt.Sprintf("the admin journal %s at byte %d: %s; left out", file, offset, why)}
}
