package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// filePerm is the mode of the files the ferry writes, as a publisher's.
const filePerm = 0o640

// maxNameTries bounds the search for a free name in To.
const maxNameTries = 1000

// The kinds of hostile entry, drawn uniformly.
const (
	hostileSymlink = iota
	hostileFIFO
	hostileHuge
	hostileDir
	hostileKinds
)

// Fault names for log records.
const (
	faultLoss      = "loss"
	faultDuplicate = "duplicate"
	faultReorder   = "reorder"
	faultDelay     = "delay"
	faultTruncate  = "truncate"
	faultBitFlip   = "bitflip"
	faultReplay    = "replay"
	faultGarbage   = "garbage"
	faultSymlink   = "symlink"
	faultFIFO      = "fifo"
	faultHuge      = "huge"
	faultDir       = "dir"
)

// readFile reads name in d without following links, refusing anything but
// a regular file with one link and at most maxSize bytes with a
// *safefs.RefusedError.
func readFile(d *os.File, name string, maxSize int64) ([]byte, error) {
	src, size, err := safefs.OpenRegular(d, name, maxSize)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return safefs.ReadAll(src, size, maxSize)
}

// take decides the fate of a file just taken from From. The draws happen
// in a fixed order, so that the decisions depend only on the seed and the
// sequence of files taken.
func (f *Ferry) take(name string, data []byte) error {
	fs := f.faults
	f.takenSeq++
	f.count(func(s *Stats) { s.Taken++ })
	lose := f.chance(fs.Loss)
	truncate := f.chance(fs.Truncate)
	flip := f.chance(fs.BitFlip)
	dup := f.chance(fs.Duplicate)
	reorder := f.chance(fs.Reorder)
	replay := f.chance(fs.Replay)
	garbage := f.chance(fs.Garbage)
	hostile := f.chance(fs.Hostile)
	if fs.Ensure > 0 && f.takenSeq >= fs.Ensure && !lose && !dup {
		switch st := f.Stats(); {
		case st.Lost == 0:
			lose = true
		case st.Duplicated == 0:
			dup = true
		}
	}

	// A replay is of a file carried earlier, so pick it before this one
	// enters the history.
	if replay && len(f.history) > 0 {
		old := f.history[f.rng.IntN(len(f.history))]
		f.hold(item{base: old.base, names: []string{f.altName(old.base)}, data: old.data, due: time.Now()})
		f.count(func(s *Stats) { s.Replayed++ })
		f.log.Debug("fault", slog.String(logFault, faultReplay), slog.String(logFile, old.base))
	}
	f.remember(name, data)

	if lose {
		f.count(func(s *Stats) { s.Lost++ })
		f.log.Debug("fault", slog.String(logFault, faultLoss), slog.String(logFile, name))
	} else {
		it := item{base: name, names: []string{name}, data: data, due: time.Now()}
		// data is shared with the history, which replays the original:
		// cutting it only reslices, and a bit flip works on a copy.
		if truncate && len(it.data) > 0 {
			it.data = it.data[:f.rng.IntN(len(it.data))]
			f.count(func(s *Stats) { s.Truncated++ })
			f.log.Debug("fault", slog.String(logFault, faultTruncate), slog.String(logFile, name))
		}
		if flip && len(it.data) > 0 {
			it.data = slices.Clone(it.data)
			it.data[f.rng.IntN(len(it.data))] ^= 1 << f.rng.IntN(8)
			f.count(func(s *Stats) { s.BitFlipped++ })
			f.log.Debug("fault", slog.String(logFault, faultBitFlip), slog.String(logFile, name))
		}
		if dup {
			it.names = append(it.names, f.altName(name))
			f.count(func(s *Stats) { s.Duplicated++ })
			f.log.Debug("fault", slog.String(logFault, faultDuplicate), slog.String(logFile, name))
		}
		if reorder {
			it.after = f.takenSeq + 1 + f.rng.IntN(ReorderWindow)
			f.count(func(s *Stats) { s.Reordered++ })
			f.log.Debug("fault", slog.String(logFault, faultReorder), slog.String(logFile, name))
		}
		if fs.Delay > 0 {
			if d := time.Duration(f.rng.Int64N(int64(fs.Delay) + 1)); d > 0 {
				it.due = it.due.Add(d)
				f.count(func(s *Stats) { s.Delayed++ })
				f.log.Debug("fault", slog.String(logFault, faultDelay), slog.String(logFile, name))
			}
		}
		f.hold(it)
	}

	if garbage {
		if err := f.plantGarbage(name); err != nil {
			return err
		}
	}
	if hostile {
		if err := f.plantHostile(name, f.rng.IntN(hostileKinds)); err != nil {
			return err
		}
	}
	return nil
}

// hold queues it for delivery by release.
func (f *Ferry) hold(it item) {
	f.pending = append(f.pending, it)
	f.pendingBytes += len(it.data)
}

// remember keeps a taken file for replays, forgetting the oldest beyond
// the bounds.
func (f *Ferry) remember(name string, data []byte) {
	f.history = append(f.history, item{base: name, data: data})
	f.historyBytes += len(data)
	for len(f.history) > 0 && (len(f.history) > HistorySize || f.historyBytes > MaxHistoryBytes) {
		f.historyBytes -= len(f.history[0].data)
		f.history = slices.Delete(f.history, 0, 1)
	}
}

// release delivers, in the order they were taken, the held files that are
// due at now and have waited for enough later files (or, if idle, that
// are due). With all set it delivers every held file. On an error the
// failed file and those after it stay held.
func (f *Ferry) release(now time.Time, idle, all bool) error {
	kept := f.pending[:0]
	for i, it := range f.pending {
		if !all && (it.due.After(now) || !idle && f.takenSeq < it.after) {
			kept = append(kept, it)
			continue
		}
		if err := f.deliver(it); err != nil {
			f.pending = append(kept, f.pending[i:]...)
			return err
		}
		f.pendingBytes -= len(it.data)
	}
	clear(f.pending[len(kept):]) // let the delivered data go
	f.pending = kept
	return nil
}

// deliver writes a copy of it into To under each of its names.
func (f *Ferry) deliver(it item) error {
	d, err := safefs.OpenDir(f.to)
	if err != nil {
		return fmt.Errorf("chaos ferry: deliver %s: %w", it.base, err)
	}
	defer d.Close()
	for _, name := range it.names {
		tmp, err := safefs.WriteTemp(d, name, filePerm, func(w *os.File) error {
			_, err := w.Write(it.data)
			return err
		})
		if err != nil {
			return fmt.Errorf("chaos ferry: deliver %s: %w", it.base, err)
		}
		if _, err := f.publish(d, tmp, name, it.base, false); err != nil {
			return fmt.Errorf("chaos ferry: deliver %s: %w", it.base, err)
		}
		f.count(func(s *Stats) { s.Delivered++ })
	}
	return nil
}

// publish renames the temporary entry tmp in d to want without replacing
// anything, and fsyncs d. If want is taken, it uses a fallback name made
// from base. On failure it removes tmp.
func (f *Ferry) publish(d *os.File, tmp, want, base string, isDir bool) (string, error) {
	name := want
	for range maxNameTries {
		err := safefs.RenameNoReplace(d, tmp, d, name)
		if err == nil {
			if name != want {
				f.count(func(s *Stats) { s.Renamed++ })
				f.log.Debug("name taken; used another", slog.String(logFile, want), slog.String(logAs, name))
			}
			// The rename lives in the directory: fsync it, so that what
			// the ferry delivered stays delivered across a crash.
			return name, safefs.Sync(d)
		}
		if !errors.Is(err, unix.EEXIST) {
			removeTemp(d, tmp, isDir)
			return "", err
		}
		name = f.fallbackName(base)
	}
	removeTemp(d, tmp, isDir)
	return "", fmt.Errorf("no free name for %s after %d tries", want, maxNameTries)
}

func removeTemp(d *os.File, tmp string, isDir bool) {
	if isDir {
		_ = safefs.RemoveDir(d, tmp)
		return
	}
	_ = safefs.Unlink(d, tmp)
}

// altName returns a fresh valid name made from the valid name base for a
// copy the ferry decided to make: "<stem>.c<n>.fxe".
func (f *Ferry) altName(base string) string {
	f.nameSeq++
	return numbered(base, "c", f.nameSeq)
}

// fallbackName returns a fresh valid name made from base for a delivery
// whose name was taken: "<stem>.r<n>.fxe". It has its own counter, so that
// collisions, which depend on timing, do not shift the names drawn for
// copies.
func (f *Ferry) fallbackName(base string) string {
	f.fallbackSeq++
	return numbered(base, "r", f.fallbackSeq)
}

// numbered inserts "."+tag+n before the extension of the valid name base,
// cutting the stem so that the name stays within medium.MaxNameLen.
func numbered(base, tag string, n uint64) string {
	stem := strings.TrimSuffix(base, medium.NameExt)
	suffix := "." + tag + strconv.FormatUint(n, 10) + medium.NameExt
	if len(stem)+len(suffix) > medium.MaxNameLen {
		stem = stem[:medium.MaxNameLen-len(suffix)]
	}
	return stem + suffix
}

// plantGarbage writes up to MaxGarbageSize random bytes under a name made
// from base.
func (f *Ferry) plantGarbage(base string) error {
	want := f.altName(base)
	data := make([]byte, 1+f.rng.IntN(MaxGarbageSize))
	for i := 0; i < len(data); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], f.rng.Uint64())
		copy(data[i:], w[:])
	}
	d, err := safefs.OpenDir(f.to)
	if err != nil {
		return fmt.Errorf("chaos ferry: plant garbage: %w", err)
	}
	defer d.Close()
	tmp, err := safefs.WriteTemp(d, want, filePerm, func(w *os.File) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("chaos ferry: plant garbage: %w", err)
	}
	as, err := f.publish(d, tmp, want, base, false)
	if err != nil {
		return fmt.Errorf("chaos ferry: plant garbage: %w", err)
	}
	f.count(func(s *Stats) { s.Garbage++ })
	f.log.Debug("fault", slog.String(logFault, faultGarbage), slog.String(logFile, as))
	return nil
}

// plantHostile creates an entry of the given kind under a name made from
// base: a symlink to HostileTarget, a FIFO, a sparse file one byte over
// the size cap, or an empty directory. Like a file, it is made under a
// temporary name and renamed into place.
func (f *Ferry) plantHostile(base string, kind int) error {
	want := f.altName(base)
	d, err := safefs.OpenDir(f.to)
	if err != nil {
		return fmt.Errorf("chaos ferry: plant hostile entry: %w", err)
	}
	defer d.Close()
	tmp := safefs.TempName(want)
	var fault string
	switch kind {
	case hostileSymlink:
		fault = faultSymlink
		err = unix.Symlinkat(HostileTarget, int(d.Fd()), tmp)
	case hostileFIFO:
		fault = faultFIFO
		err = unix.Mkfifoat(int(d.Fd()), tmp, 0o600)
	case hostileHuge:
		fault = faultHuge
		// Sparse: it claims more than the cap but takes no disk space.
		tmp, err = safefs.WriteTemp(d, want, filePerm, func(w *os.File) error { return w.Truncate(f.maxSize + 1) })
	default:
		fault = faultDir
		err = unix.Mkdirat(int(d.Fd()), tmp, 0o700)
	}
	if err != nil {
		return fmt.Errorf("chaos ferry: plant %s: %w", fault, err)
	}
	as, err := f.publish(d, tmp, want, base, kind == hostileDir)
	if err != nil {
		return fmt.Errorf("chaos ferry: plant %s: %w", fault, err)
	}
	f.count(func(s *Stats) {
		switch kind {
		case hostileSymlink:
			s.Symlinks++
		case hostileFIFO:
			s.FIFOs++
		case hostileHuge:
			s.HugeFiles++
		default:
			s.Dirs++
		}
	})
	f.log.Debug("fault", slog.String(logFault, fault), slog.String(logFile, as))
	return nil
}
