package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/dir"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

func TestNew(t *testing.T) {
	ok := Config{From: "/a", To: "/b"}
	tests := []struct {
		name string
		edit func(c *Config)
		want string // "" means valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"all faults 1", func(c *Config) {
			c.Faults = Faults{Loss: 1, Duplicate: 1, Reorder: 1, Truncate: 1, BitFlip: 1, Replay: 1, Garbage: 1, Hostile: 1, Delay: time.Second}
		}, ""},
		{"no from", func(c *Config) { c.From = "" }, "from is empty"},
		{"no to", func(c *Config) { c.To = "" }, "to is empty"},
		{"same dir", func(c *Config) { c.To = "/a/" }, "both"},
		{"negative poll", func(c *Config) { c.Poll = -1 }, "poll"},
		{"negative delay", func(c *Config) { c.Faults.Delay = -1 }, "delay"},
		{"negative max size", func(c *Config) { c.MaxFileSize = -1 }, "max file size"},
		{"loss above 1", func(c *Config) { c.Faults.Loss = 1.5 }, "loss probability"},
		{"ensure negative", func(c *Config) { c.Faults.Ensure = -1 }, "ensure -1 is negative"},
		{"hostile negative", func(c *Config) { c.Faults.Hostile = -0.1 }, "hostile probability"},
		{"bitflip NaN", func(c *Config) { c.Faults.BitFlip = math.NaN() }, "bitflip probability"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestFerry_Run_noFaults(t *testing.T) {
	from, to := newDirs(t)
	src := publishN(t, from, 50, 1)
	// Temporary and invalid names in From belong to a writer in progress
	// (or to nobody): the ferry must leave them alone.
	untouched := []string{".req-0100.fxe.tmp-0123456789abcdef", "notes.txt", "UPPER.fxe"}
	for _, n := range untouched {
		if err := os.WriteFile(filepath.Join(from, n), []byte("leave me"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := carryAll(t, Config{From: from, To: to, Seed: 1})

	got := entries(t, to)
	if len(got) != len(src) {
		t.Errorf("To holds %d entries, want %d", len(got), len(src))
	}
	for name, data := range src {
		e, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s not delivered", name)
		case e.kind != "file" || !bytes.Equal(e.data, data):
			t.Errorf("%s delivered as a %s of %d bytes that differ from the %d sent", name, e.kind, e.size, len(data))
		}
	}
	for _, n := range untouched {
		if _, err := os.Lstat(filepath.Join(from, n)); err != nil {
			t.Errorf("%s was touched: %v", n, err)
		}
	}
	if want := (Stats{Taken: 50, Delivered: 50}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestFerry_Run_loss(t *testing.T) {
	from, to := newDirs(t)
	publishN(t, from, 30, 2)
	st := carryAll(t, Config{From: from, To: to, Seed: 2, Faults: Faults{Loss: 1}})
	if got := entries(t, to); len(got) != 0 {
		t.Errorf("To holds %v, want nothing", slices.Sorted(maps.Keys(got)))
	}
	if want := (Stats{Taken: 30, Lost: 30}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

// TestFerry_Run_ensure: with no fault probability at all, Ensure still
// loses the Ensure-th file taken and duplicates the next one.
func TestFerry_Run_ensure(t *testing.T) {
	from, to := newDirs(t)
	publishN(t, from, 10, 2)
	st := carryAll(t, Config{From: from, To: to, Seed: 5, Faults: Faults{Ensure: 3}})
	if want := (Stats{Taken: 10, Delivered: 10, Lost: 1, Duplicated: 1}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if got := entries(t, to); len(got) != 10 {
		t.Errorf("To holds %d files, want 9 originals and a copy", len(got))
	}
}

func TestFerry_Run_duplicate(t *testing.T) {
	from, to := newDirs(t)
	src := publishN(t, from, 30, 3)
	st := carryAll(t, Config{From: from, To: to, Seed: 3, Faults: Faults{Duplicate: 1}})

	got := entries(t, to)
	if len(got) != 2*len(src) {
		t.Errorf("To holds %d entries, want %d", len(got), 2*len(src))
	}
	for name := range got {
		if !medium.ValidName(name) {
			t.Errorf("delivered under invalid name %q", name)
		}
	}
	counts := contentCount(got)
	for name, data := range src {
		if n := counts[string(data)]; n != 2 {
			t.Errorf("%s delivered %d times, want 2", name, n)
		}
		if !bytes.Equal(got[name].data, data) {
			t.Errorf("%s not delivered under its own name", name)
		}
	}
	if want := (Stats{Taken: 30, Delivered: 60, Duplicated: 30}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestFerry_Run_corruption(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		check  func(t *testing.T, sent, got []byte)
	}{
		{"truncate", Faults{Truncate: 1}, func(t *testing.T, sent, got []byte) {
			if len(got) >= len(sent) || !bytes.HasPrefix(sent, got) {
				t.Errorf("got %d bytes, want a strict prefix of the %d sent", len(got), len(sent))
			}
		}},
		{"bitflip", Faults{BitFlip: 1}, func(t *testing.T, sent, got []byte) {
			if len(got) != len(sent) {
				t.Fatalf("got %d bytes, want %d", len(got), len(sent))
			}
			diff := 0
			for i := range sent {
				diff += bits.OnesCount8(sent[i] ^ got[i])
			}
			if diff != 1 {
				t.Errorf("%d bits differ, want 1", diff)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := newDirs(t)
			src := publishN(t, from, 30, 4)
			// One-byte files: the only cut that changes them is to zero.
			for i := range 20 {
				name := fmt.Sprintf("tiny-%02d.fxe", i)
				src[name] = []byte{byte(i)}
				if err := os.WriteFile(filepath.Join(from, name), src[name], 0o600); err != nil {
					t.Fatal(err)
				}
			}
			st := carryAll(t, Config{From: from, To: to, Seed: 4, Faults: tt.faults})
			got := entries(t, to)
			corrupted := 0
			for name, data := range src {
				e, ok := got[name]
				if !ok {
					t.Errorf("%s not delivered", name)
					continue
				}
				if len(data) == 0 {
					// Nothing to cut or flip: it must arrive as sent.
					if len(e.data) != 0 {
						t.Errorf("%s: empty file delivered with %d bytes", name, len(e.data))
					}
					continue
				}
				t.Run(name, func(t *testing.T) { tt.check(t, data, e.data) })
				corrupted++
			}
			if st.Truncated+st.BitFlipped != corrupted || st.Delivered != len(src) {
				t.Errorf("Stats = %+v, want %d corrupted of %d delivered", st, corrupted, len(src))
			}
		})
	}
}

// allFaults is a mix of every fault, for the tests that want them all.
var allFaults = Faults{
	Loss: 0.1, Duplicate: 0.2, Reorder: 0.3, Truncate: 0.1, BitFlip: 0.1,
	Replay: 0.2, Garbage: 0.2, Hostile: 0.2, Delay: 10 * time.Millisecond,
}

func TestFerry_Run_deterministic(t *testing.T) {
	run := func(t *testing.T, seed int64) (Stats, map[string]string) {
		from, to := newDirs(t)
		publishN(t, from, 80, 5)
		st := carryAll(t, Config{From: from, To: to, Seed: seed, Faults: allFaults, MaxFileSize: 4096})
		return st, digest(t, to)
	}
	st1, d1 := run(t, 42)
	st2, d2 := run(t, 42)
	if st1 != st2 {
		t.Errorf("same seed, different stats:\n%+v\n%+v", st1, st2)
	}
	if !maps.Equal(d1, d2) {
		t.Errorf("same seed, different deliveries:\n%v\n%v", d1, d2)
	}
	// Every kind of fault happened, or the comparison proves little.
	if st1.Lost == 0 || st1.Duplicated == 0 || st1.Reordered == 0 || st1.Truncated == 0 || st1.BitFlipped == 0 ||
		st1.Replayed == 0 || st1.Garbage == 0 || st1.Hostile() == 0 || st1.Delayed == 0 {
		t.Errorf("some fault never happened: %+v", st1)
	}
	st3, d3 := run(t, 43)
	if st1 == st3 && maps.Equal(d1, d3) {
		t.Errorf("seeds 42 and 43 gave the same run: %+v", st1)
	}
}

func TestFerry_Run_hostile(t *testing.T) {
	const maxSize = 1 << 16
	from, to := newDirs(t)
	src := publishN(t, from, 60, 6)
	st := carryAll(t, Config{From: from, To: to, Seed: 6, Faults: Faults{Hostile: 1}, MaxFileSize: maxSize})

	kinds := map[string]int{}
	for name, e := range entries(t, to) {
		if !medium.ValidName(name) {
			t.Errorf("planted under invalid name %q", name)
		}
		switch {
		case e.kind == "symlink":
			if e.target != HostileTarget {
				t.Errorf("%s points to %q, want %q", name, e.target, HostileTarget)
			}
			kinds["symlink"]++
		case e.kind == "file" && e.size > maxSize:
			// Sparse: the size claims more than the blocks hold.
			if e.blocks*512 >= e.size {
				t.Errorf("%s: huge file of %d bytes takes %d blocks, want sparse", name, e.size, e.blocks)
			}
			kinds["huge"]++
		case e.kind == "file":
			if !bytes.Equal(e.data, src[name]) {
				t.Errorf("%s: a regular file that is not a delivered envelope", name)
			}
			kinds["envelope"]++
		default:
			kinds[e.kind]++
		}
	}
	want := map[string]int{"envelope": 60, "symlink": st.Symlinks, "fifo": st.FIFOs, "huge": st.HugeFiles, "dir": st.Dirs}
	if !maps.Equal(kinds, want) {
		t.Errorf("To holds %v, want %v", kinds, want)
	}
	if st.Hostile() != 60 || st.Symlinks == 0 || st.FIFOs == 0 || st.HugeFiles == 0 || st.Dirs == 0 {
		t.Errorf("Stats = %+v, want 60 hostile entries of every kind", st)
	}
}

func TestFerry_Run_nameTaken(t *testing.T) {
	from, to := newDirs(t)
	src := publishN(t, from, 3, 7)
	// The reader has not yet claimed an earlier file of the same name.
	old := []byte("an earlier file")
	if err := os.WriteFile(filepath.Join(to, "req-0001.fxe"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	st := carryAll(t, Config{From: from, To: to, Seed: 7})
	got := entries(t, to)
	if !bytes.Equal(got["req-0001.fxe"].data, old) {
		t.Errorf("the earlier file was replaced")
	}
	if !bytes.Equal(got["req-0001.r1.fxe"].data, src["req-0001.fxe"]) {
		t.Errorf("req-0001.fxe not delivered as req-0001.r1.fxe; To holds %v", slices.Sorted(maps.Keys(got)))
	}
	if want := (Stats{Taken: 3, Delivered: 3, Renamed: 1}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestFerry_Run_refused(t *testing.T) {
	from, to := newDirs(t)
	publishN(t, from, 2, 8)
	if err := os.Symlink("/etc/passwd", filepath.Join(from, "link.fxe")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from, "big.fxe"), make([]byte, 10001), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, newFerry(t, Config{From: from, To: to, Seed: 8, MaxFileSize: 10000}))
	waitFor(t, "files carried", func() bool { return r.f.Stats().Taken == 2 && r.f.Stats().Refused == 2 })
	time.Sleep(30 * time.Millisecond) // a few more polls: counted once, not again
	st := r.stop(t)
	if want := (Stats{Taken: 2, Delivered: 2, Refused: 2}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if got := validNames(t, from); !slices.Equal(got, []string{"big.fxe", "link.fxe"}) {
		t.Errorf("From holds %v, want the refused files left alone", got)
	}
}

func TestFerry_Run_bounded(t *testing.T) {
	from, to := newDirs(t)
	publishN(t, from, MaxPending+20, 9)
	// Every file is delayed far beyond the test, so the ferry fills up.
	r := start(t, newFerry(t, Config{From: from, To: to, Seed: 9, Faults: Faults{Delay: time.Hour}}))
	waitFor(t, "the ferry to fill", func() bool { return r.f.Stats().Taken >= MaxPending })
	time.Sleep(30 * time.Millisecond)
	if st := r.f.Stats(); st.Taken != MaxPending || st.Delivered != 0 {
		t.Errorf("Stats = %+v, want %d taken and none delivered yet", st, MaxPending)
	}
	if n := len(validNames(t, from)); n != 20 {
		t.Errorf("From holds %d files, want 20 left there", n)
	}
	// Stopping delivers what the ferry holds.
	if st := r.stop(t); st.Delivered != MaxPending {
		t.Errorf("after stop, Stats = %+v, want %d delivered", st, MaxPending)
	}
	if n := len(validNames(t, to)); n != MaxPending {
		t.Errorf("To holds %d files, want %d", n, MaxPending)
	}
}

// TestFerry_release_reorder feeds files one at a time and records the
// order in which they reach To.
func TestFerry_release_reorder(t *testing.T) {
	from, to := newDirs(t)
	f := newFerry(t, Config{From: from, To: to, Seed: 10, Faults: Faults{Reorder: 0.5}})
	var sent, order []string
	seen := map[string]bool{}
	collect := func() {
		for _, n := range validNames(t, to) {
			if !seen[n] {
				seen[n] = true
				order = append(order, n)
			}
		}
	}
	for i := range 40 {
		name := "req-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + ".fxe"
		sent = append(sent, name)
		if err := f.take(name, []byte(name)); err != nil {
			t.Fatal(err)
		}
		if err := f.release(time.Now(), false, false); err != nil {
			t.Fatal(err)
		}
		if len(f.pending) > ReorderWindow+1 {
			t.Fatalf("%d files held, want at most %d", len(f.pending), ReorderWindow+1)
		}
		collect()
	}
	if err := f.release(time.Now(), true, false); err != nil {
		t.Fatal(err)
	}
	collect()
	if !slices.Equal(slices.Sorted(slices.Values(order)), sent) {
		t.Fatalf("delivered %v, want each of %v once", order, sent)
	}
	if slices.Equal(order, sent) {
		t.Errorf("delivered in the order sent, want reordered: %v", order)
	}
	if st := f.Stats(); st.Reordered == 0 || st.Reordered == 40 {
		t.Errorf("Stats = %+v, want some files reordered", st)
	}
}

func TestFerry_Run_twice(t *testing.T) {
	from, to := newDirs(t)
	r := start(t, newFerry(t, Config{From: from, To: to}))
	waitFor(t, "Run to start", r.f.running.Load)
	if err := r.f.Run(t.Context()); err == nil {
		t.Error("a second concurrent Run returned nil, want an error")
	}
}

// TestFerry_Run_receiver points the dir medium's real receiver at To and
// consumes like an agent. The receiver must keep working through every
// fault: hostile entries are refused by the inbox with their reason, and
// files that are not what was sent (garbage) are quarantined by the
// consumer, as an agent's envelope check would.
func TestFerry_Run_receiver(t *testing.T) {
	const maxSize = 1 << 16
	from, to := newDirs(t)
	base := t.TempDir()
	qdir := filepath.Join(base, "quarantine")
	in, err := medium.OpenInbox(medium.InboxConfig{Dir: filepath.Join(base, "inbox"), QuarantineDir: qdir, MaxFileSize: maxSize,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	recv, err := dir.NewReceiver(dir.ReceiverConfig{Dir: to, Inbox: in, Rescan: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	src := publishN(t, from, 60, 11)
	sent := map[string]bool{}
	for _, data := range src {
		sent[string(data)] = true
	}
	faults := allFaults
	faults.Loss, faults.Truncate, faults.BitFlip = 0, 0, 0 // so every file arrives intact at least once
	faults.Hostile = 0.5

	ferry := start(t, newFerry(t, Config{From: from, To: to, Seed: 11, Faults: faults, MaxFileSize: maxSize}))
	rr := mediumtest.Start(t, recv)
	good := map[string]int{}
	processed, target := 0, -1
	var st Stats
	end := time.After(deadline)
	for target < 0 || processed < target {
		select {
		case name := <-rr.Out:
			processed++
			data, err := in.Read(name)
			var fe *medium.FileError
			switch {
			case errors.As(err, &fe):
				err = in.Quarantine(name, fe.Reason, err.Error())
			case err != nil:
				t.Fatalf("Read(%s): %v", name, err)
			case sent[string(data)]:
				good[string(data)]++
				err = in.Remove(name)
			default:
				err = in.Quarantine(name, "not_an_envelope", "not a file that was sent")
			}
			if err != nil {
				t.Fatalf("consume %s: %v", name, err)
			}
		case <-time.After(20 * time.Millisecond):
		case <-end:
			t.Fatalf("timed out: processed %d of %d; stats %+v", processed, target, ferry.f.Stats())
		}
		if target < 0 && len(validNames(t, from)) == 0 {
			st = ferry.stop(t)
			target = st.Delivered + st.Garbage + st.Hostile()
		}
	}
	rr.Quiet(t, 100*time.Millisecond)
	rr.Stop(t) // fails the test unless Run was still running

	if st.Duplicated == 0 || st.Replayed == 0 || st.Garbage == 0 || st.Symlinks == 0 || st.FIFOs == 0 || st.HugeFiles == 0 || st.Dirs == 0 {
		t.Errorf("some fault never happened: %+v", st)
	}
	total := 0
	for data := range sent {
		if good[data] == 0 {
			t.Errorf("a file of %d bytes never arrived intact", len(data))
		}
		total += good[data]
	}
	if total != st.Delivered {
		t.Errorf("%d good files consumed, want %d delivered", total, st.Delivered)
	}
	reasons := map[string]int{}
	qfiles, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range qfiles {
		if !strings.HasSuffix(de.Name(), medium.ReasonExt) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(qdir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		reasons[strings.TrimPrefix(line, "reason: ")]++
	}
	want := map[string]int{
		medium.ReasonSymlink:    st.Symlinks,
		medium.ReasonNotRegular: st.FIFOs + st.Dirs,
		medium.ReasonTooLarge:   st.HugeFiles,
		"not_an_envelope":       st.Garbage,
	}
	if !maps.Equal(reasons, want) {
		t.Errorf("quarantined by reason %v, want %v", reasons, want)
	}
	if left := validNames(t, to); len(left) != 0 {
		t.Errorf("To still holds %v", left)
	}
}
