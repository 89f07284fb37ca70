// Package chaos is the hostile ferry: a test tool that stands between a
// writer's directory and a reader's directory and carries envelope files
// across the way an attacker-controlled medium might.
//
// # What it simulates
//
// The directory medium (package medium/dir) assumes a ferry, diode or
// exchange server that is observable and writable by an attacker. A
// [Ferry] plays that part. It takes every file with a final envelope name
// (see [medium.ValidName]) from the From directory, removes it there, and
// writes it into the To directory the way a real medium must: under a
// hidden temporary name, fsynced, renamed to a final name without ever
// replacing a file, and the directory fsynced. On the way, with the
// probabilities in [Faults], it
//
//   - loses the file,
//   - truncates it or flips one bit in it,
//   - delivers it twice,
//   - holds it back so that later files overtake it,
//   - delays it,
//   - re-delivers a file it carried earlier (a replay), under a new name,
//   - plants a file of random bytes (garbage) under a fresh name, and
//   - plants a hostile entry under an envelope name: a symlink, a FIFO, a
//     sparse file larger than the size cap, or a directory.
//
// Copies get a distinct valid name made from the original by inserting
// ".c<n>" before ".fxe" (duplicates, replays, and the garbage and hostile
// entries planted after a file). A delivery whose name is already taken in
// To gets ".r<n>" instead; nothing in To is ever replaced.
//
// # Replaying a failure
//
// Every decision is drawn from one math/rand/v2 source seeded with
// [Config.Seed], used only by the goroutine running [Ferry.Run], in the
// order files are taken (sorted by name within each poll). Run logs the
// seed when it starts. To replay a failure, run the same input with the
// same seed and the same [Faults]: the same files are lost, corrupted,
// duplicated, held back, replayed and planted, and [Ferry.Stats] gives the
// same counts. "The same input" means the same files taken in the same
// order; a writer that publishes while the ferry runs can shift which
// files one poll sees, so a test that must replay exactly publishes its
// files before the ferry takes them, or in name order.
//
// What the seed does not fix is wall-clock timing: when a delayed file is
// due, when a held-back file is released because the ferry went idle, and
// which fallback name a copy gets when the name it wanted is already taken
// in To.
//
//	seed := time.Now().UnixNano()
//	t.Logf("chaos seed %d", seed) // rerun with this seed to replay
//	f, err := chaos.New(chaos.Config{From: out, To: in, Seed: seed,
//		Faults: chaos.Faults{Loss: 0.1, Duplicate: 0.1, Reorder: 0.2, BitFlip: 0.05}})
//	...
//	go f.Run(ctx)
//
// # Bounds
//
// The ferry holds at most [MaxPending] files (and about [MaxPendingBytes]
// bytes) in memory for delay and reordering; while it is full it leaves
// files in From. It keeps at most [HistorySize] files (and about
// [MaxHistoryBytes] bytes) for replays. Huge files are sparse and take no
// disk space; garbage files are at most [MaxGarbageSize] bytes.
//
// # Stopping
//
// When the context of Run ends, the ferry delivers everything it still
// holds (so a stop loses nothing beyond the losses it counted) and returns.
// A ferry that is killed loses what it held, as a real medium may.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// DefaultPoll is how often a Ferry lists its From directory when
// Config.Poll is 0.
const DefaultPoll = 20 * time.Millisecond

// Bounds on what a Ferry holds.
const (
	// MaxPending is the most files held back for delay or reordering.
	MaxPending = 256
	// MaxPendingBytes stops intake once the held files reach this size.
	MaxPendingBytes = 256 << 20
	// HistorySize is the most earlier files kept for replays.
	HistorySize = 64
	// MaxHistoryBytes bounds the bytes kept for replays.
	MaxHistoryBytes = 64 << 20
	// ReorderWindow is the most later files a held-back file waits for.
	ReorderWindow = 16
	// MaxGarbageSize is the largest garbage file planted.
	MaxGarbageSize = 4096
)

// HostileTarget is where a planted symlink points. It exists on every
// Linux host, so a reader that follows links would visibly read it.
const HostileTarget = "/etc/passwd"

// Attribute keys for log records.
const (
	logSeed   = "seed"
	logFrom   = "from"
	logTo     = "to"
	logFile   = "file"
	logAs     = "as"
	logFault  = "fault"
	logError  = "error"
	logFaults = "faults"
	logCount  = "count"
)

// Faults are the probabilities, each from 0 to 1, with which the ferry
// mistreats each file it takes from From. They are drawn independently.
type Faults struct {
	Loss      float64 // the file is not delivered
	Duplicate float64 // the file is delivered twice, under two names
	Reorder   float64 // the file is held back until up to ReorderWindow later files were taken
	Truncate  float64 // the delivered bytes are cut at a random length
	BitFlip   float64 // one random bit of the delivered bytes is flipped
	Replay    float64 // a file taken earlier is delivered again, under a new name
	Garbage   float64 // a file of random bytes is planted under a fresh name
	Hostile   float64 // a symlink, FIFO, huge file or directory is planted under a fresh name

	// Delay is the longest random extra delay of a file; 0 means none.
	Delay time.Duration

	// Ensure, when above 0, makes sure a run that takes at least Ensure
	// files both loses and duplicates one, however the draws fall: the
	// Ensure-th file taken, or a later one, is lost if none was yet, and
	// else duplicated if none was yet. A short run at low probabilities
	// may otherwise exercise neither. It stays a function of the seed and
	// the sequence of files taken.
	Ensure int
}

// Config configures a Ferry.
type Config struct {
	From string // the writer's directory; files are taken from it
	To   string // the reader's directory; files are delivered into it
	Seed int64  // seeds every random decision; log it to replay a run
	// Faults says how often the ferry mistreats a file.
	Faults Faults
	// Poll is how often From is listed; 0 means DefaultPoll.
	Poll time.Duration
	// MaxFileSize is the size cap of the reader: larger files in From are
	// left there and counted as refused, and planted huge files are one
	// byte larger. 0 means medium.DefaultMaxFileSize.
	MaxFileSize int64
	Logger      *slog.Logger
}

// Stats counts what a Ferry did. Taken files are either lost or
// delivered; the fault counts say how many taken files each fault hit.
type Stats struct {
	Taken      int // files taken from From (and removed there)
	Delivered  int // envelope files written to To: originals, duplicates and replays, corrupted or not
	Lost       int // taken files never delivered
	Duplicated int // taken files delivered twice
	Reordered  int // taken files held back for reordering
	Delayed    int // taken files delayed
	Truncated  int // taken files delivered truncated
	BitFlipped int // taken files delivered with a flipped bit
	Replayed   int // earlier files delivered again
	Garbage    int // files of random bytes planted
	Symlinks   int // symlinks planted
	FIFOs      int // FIFOs planted
	HugeFiles  int // sparse files over MaxFileSize planted
	Dirs       int // directories planted
	Refused    int // files in From that could not be carried (not regular, too large): left there, counted once each
	Renamed    int // deliveries whose own name was taken in To, so another was used
}

// Hostile returns the number of hostile entries planted.
func (s Stats) Hostile() int { return s.Symlinks + s.FIFOs + s.HugeFiles + s.Dirs }

// Ferry carries files from one directory to another with faults. Run it
// once at a time; Stats may be called at any time from any goroutine.
type Ferry struct {
	from, to string
	seed     int64
	faults   Faults
	poll     time.Duration
	maxSize  int64
	log      *slog.Logger
	running  atomic.Bool

	// Owned by the goroutine in Run.
	rng          *rand.Rand
	pending      []item
	pendingBytes int
	history      []item
	historyBytes int
	nameSeq      uint64          // numbers the names of copies
	fallbackSeq  uint64          // numbers the names used when a name is taken
	takenSeq     int             // files taken so far, for reordering
	refused      map[string]bool // From names refused, counted once; pruned to the listing
	fromErr      string          // the last From listing error logged

	mu    sync.Mutex
	stats Stats
}

// item is a file held for delivery, or kept for replay.
type item struct {
	base  string    // the name it was taken under; fallback names are made from it
	names []string  // the names to deliver a copy under: two for a duplicate
	data  []byte    // shared with the history; never modified
	due   time.Time // not delivered before
	after int       // not delivered before this many files were taken, unless the ferry is idle
}

// New validates cfg and returns a Ferry. The directories need not exist
// yet: Run waits for From, and fails if To is missing when it writes.
func New(cfg Config) (*Ferry, error) {
	switch {
	case cfg.From == "":
		return nil, errors.New("new chaos ferry: from is empty")
	case cfg.To == "":
		return nil, errors.New("new chaos ferry: to is empty")
	case filepath.Clean(cfg.From) == filepath.Clean(cfg.To):
		return nil, fmt.Errorf("new chaos ferry: from and to are both %s", cfg.From)
	case cfg.Poll < 0:
		return nil, fmt.Errorf("new chaos ferry: poll %v is negative", cfg.Poll)
	case cfg.Faults.Delay < 0:
		return nil, fmt.Errorf("new chaos ferry: delay %v is negative", cfg.Faults.Delay)
	case cfg.MaxFileSize < 0:
		return nil, fmt.Errorf("new chaos ferry: max file size %d is negative", cfg.MaxFileSize)
	}
	fs := cfg.Faults
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"loss", fs.Loss}, {"duplicate", fs.Duplicate}, {"reorder", fs.Reorder}, {"truncate", fs.Truncate},
		{"bitflip", fs.BitFlip}, {"replay", fs.Replay}, {"garbage", fs.Garbage}, {"hostile", fs.Hostile},
	} {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return nil, fmt.Errorf("new chaos ferry: %s probability %v is not between 0 and 1", p.name, p.v)
		}
	}
	if fs.Ensure < 0 {
		return nil, fmt.Errorf("new chaos ferry: ensure %d is negative", fs.Ensure)
	}
	f := &Ferry{
		from:    cfg.From,
		to:      cfg.To,
		seed:    cfg.Seed,
		faults:  fs,
		poll:    cfg.Poll,
		maxSize: cfg.MaxFileSize,
		log:     cfg.Logger,
		// PCG wants two words; derive the second from the seed so that
		// the seed alone names the stream.
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x9e3779b97f4a7c15)),
		refused: map[string]bool{},
	}
	if f.poll == 0 {
		f.poll = DefaultPoll
	}
	if f.maxSize == 0 {
		f.maxSize = medium.DefaultMaxFileSize
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// Seed returns the seed the ferry was made with.
func (f *Ferry) Seed() int64 { return f.seed }

// Stats returns the counts so far.
func (f *Ferry) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// count applies fn to the stats under the lock.
func (f *Ferry) count(fn func(s *Stats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

// Run carries files until ctx ends, then delivers what it still holds and
// returns nil (or the error of that last delivery). A missing From
// directory is waited for. Run returns an error, wrapped with what it was
// doing, when it cannot list or read From (other than a file that
// vanished or one it refuses), remove a file from From, or write into To;
// the files it holds then stay held. Run may be called again after it
// returned, to continue with the same held files and random stream.
func (f *Ferry) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("chaos ferry: Run is already running")
	}
	defer f.running.Store(false)
	f.log.Info("chaos ferry starting", slog.Int64(logSeed, f.seed), slog.String(logFrom, f.from), slog.String(logTo, f.to),
		slog.String(logFaults, fmt.Sprintf("%+v", f.faults)))

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return f.flush()
		case <-timer.C:
		}
		took, err := f.intake(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		// A poll that took nothing means the writer is idle (or the
		// ferry is full): release held-back files rather than keep them
		// waiting for files that may never come.
		if err := f.release(now, took == 0, false); err != nil {
			return err
		}
		wait := f.poll
		for _, it := range f.pending {
			if it.due.After(now) {
				wait = min(wait, it.due.Sub(now))
			}
		}
		timer.Reset(wait)
	}
}

// flush delivers every held file, ignoring delays and reordering.
func (f *Ferry) flush() error {
	if len(f.pending) > 0 {
		f.log.Info("chaos ferry stopping; delivering held files", slog.Int(logCount, len(f.pending)))
	}
	if err := f.release(time.Time{}, true, true); err != nil {
		return err
	}
	f.log.Info("chaos ferry stopped", slog.Int64(logSeed, f.seed))
	return nil
}

// chance draws one number and reports whether it falls under p. It draws
// whatever p is, so that a probability of 0 or 1 does not change how many
// numbers a file consumes.
func (f *Ferry) chance(p float64) bool { return f.rng.Float64() < p }

// intake takes the files in From, in name order, while there is room, and
// returns how many it took.
func (f *Ferry) intake(ctx context.Context) (int, error) {
	d, err := safefs.OpenDir(f.from)
	if errors.Is(err, unix.ENOENT) {
		if msg := err.Error(); msg != f.fromErr {
			f.fromErr = msg
			f.log.Warn("from directory is missing; waiting", slog.String(logFrom, f.from))
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("chaos ferry: take files: %w", err)
	}
	defer d.Close()
	f.fromErr = ""
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("chaos ferry: take files: read %s: %w", f.from, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !medium.ValidName(n) })
	slices.Sort(names)
	for n := range f.refused {
		if _, ok := slices.BinarySearch(names, n); !ok {
			delete(f.refused, n)
		}
	}

	took := 0
	for _, name := range names {
		if ctx.Err() != nil || len(f.pending) >= MaxPending || f.pendingBytes >= MaxPendingBytes {
			break
		}
		data, err := readFile(d, name, f.maxSize)
		var refused *safefs.RefusedError
		switch {
		case errors.Is(err, unix.ENOENT):
			continue // gone since the listing
		case errors.As(err, &refused) && refused.Reason != safefs.ReasonReadError:
			// Tried again at every poll (a file can be fixed in place),
			// but counted and logged once while it stays.
			if !f.refused[name] {
				f.refused[name] = true
				f.count(func(s *Stats) { s.Refused++ })
				f.log.Warn("cannot carry file; leaving it", slog.String(logFile, name), slog.String(logError, err.Error()))
			}
			continue
		case err != nil:
			return took, fmt.Errorf("chaos ferry: take %s: %w", name, err)
		}
		if err := safefs.Unlink(d, name); err != nil && !errors.Is(err, unix.ENOENT) {
			return took, fmt.Errorf("chaos ferry: take %s: %w", name, err)
		}
		took++
		if err := f.take(name, data); err != nil {
			return took, err
		}
	}
	if took > 0 {
		if err := safefs.Sync(d); err != nil {
			return took, fmt.Errorf("chaos ferry: take files: %w", err)
		}
	}
	return took, nil
}
