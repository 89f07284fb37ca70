package carry

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestExport_Import(t *testing.T) {
	z := newZones(t)
	send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
	// Written out of order, on two channels, with a sequence number that
	// sorts differently as text than as a number within its channel.
	var want []string
	for _, e := range []struct {
		ch  string
		seq uint64
	}{{"results", 2}, {"requests", 10}, {"requests", 9}, {"results", 1}, {"requests", 1}, {"results-1", 1}, {"results", 1e19}} {
		writeEnv(t, send, e.ch, e.seq, 100+int(e.seq%1000))
	}
	// By channel, then sequence: "results" before "results-1", although
	// the name "results-1-…" sorts before "results-1000…" as text.
	want = []string{
		testEnvName("requests", 1), testEnvName("requests", 9), testEnvName("requests", 10),
		testEnvName("results", 1), testEnvName("results", 2), testEnvName("results", 1e19),
		testEnvName("results-1", 1),
	}
	before := snapshot(t, send)

	s := mustExport(t, exportOpts(z, send, set))
	if got := setNames(s); !slices.Equal(got, want) {
		t.Fatalf("manifest order = %v, want %v", got, want)
	}
	if s.Remaining != 0 || s.Manifest.From != "dmz" || s.Manifest.To != "intranet" || !s.Manifest.Created.Equal(testNow) {
		t.Errorf("set = %+v", s)
	}
	var total int64
	for _, f := range s.Manifest.Files {
		total += f.Size
	}
	if total != s.Manifest.Bytes {
		t.Errorf("bytes = %d, files add up to %d", s.Manifest.Bytes, total)
	}
	dirEmpty(t, send)
	sameFiles(t, snapshot(t, set), before)

	r, err := Import(context.Background(), importOpts(z, set, recv))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !slices.Equal(r.Imported, want) || !r.Complete() || len(r.Extra)+len(r.Skipped) != 0 {
		t.Errorf("report = %+v", r)
	}
	sameFiles(t, snapshot(t, recv), before)
	// The carry set is only read.
	sameFiles(t, snapshot(t, set), before)
}

func TestImport_Missing(t *testing.T) {
	z := newZones(t)
	send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
	for seq := uint64(1); seq <= 4; seq++ {
		writeEnv(t, send, "requests", seq, 64)
	}
	mustExport(t, exportOpts(z, send, set))
	lost := testEnvName("requests", 2)
	if err := os.Remove(filepath.Join(set, lost)); err != nil {
		t.Fatal(err)
	}
	r, err := Import(context.Background(), importOpts(z, set, recv))
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete", err)
	}
	if r.Complete() || !slices.Equal(r.Missing, []string{lost}) || len(r.Imported) != 3 {
		t.Errorf("report = %+v", r)
	}
	if got := names(snapshot(t, recv)); slices.Contains(got, lost) || len(got) != 3 {
		t.Errorf("receive dir = %v", got)
	}
}

func TestImport_Corrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, path string)
		reason string
	}{
		{"flipped byte", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 0x01
			os.WriteFile(path, b, 0o644)
		}, ReasonHashMismatch},
		{"truncated", func(t *testing.T, path string) {
			os.Truncate(path, 10)
		}, ReasonSizeMismatch},
		{"extended", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("x"))
			f.Close()
		}, ReasonSizeMismatch},
		{"symlink to the right bytes", func(t *testing.T, path string) {
			// Even a symlink to a file with the listed content is not
			// followed.
			elsewhere := filepath.Join(t.TempDir(), "copy")
			b, _ := os.ReadFile(path)
			os.WriteFile(elsewhere, b, 0o644)
			os.Remove(path)
			if err := os.Symlink(elsewhere, path); err != nil {
				t.Fatal(err)
			}
		}, ReasonSymlink},
		{"fifo", func(t *testing.T, path string) {
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ReasonNotRegular},
		{"directory", func(t *testing.T, path string) {
			os.Remove(path)
			os.Mkdir(path, 0o755)
		}, ReasonNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := newZones(t)
			send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
			for seq := uint64(1); seq <= 3; seq++ {
				writeEnv(t, send, "requests", seq, 200)
			}
			mustExport(t, exportOpts(z, send, set))
			bad := testEnvName("requests", 3)
			tc.spoil(t, filepath.Join(set, bad))
			r, err := importWithin(t, importOpts(z, set, recv))
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("err = %v, want ErrIncomplete", err)
			}
			if !slices.Equal(r.Corrupt, []Problem{{Name: bad, Reason: tc.reason}}) || len(r.Imported) != 2 || len(r.Missing) != 0 {
				t.Errorf("report = %+v", r)
			}
			if _, err := os.Lstat(filepath.Join(recv, bad)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("corrupt file reached the receive directory: %v", err)
			}
		})
	}
}

func TestImport_Extra(t *testing.T) {
	z := newZones(t)
	send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
	writeEnv(t, send, "requests", 1, 50)
	mustExport(t, exportOpts(z, send, set))
	// A valid envelope name that the manifest does not list, and junk.
	extra := writeEnv(t, set, "requests", 2, 50)
	os.WriteFile(filepath.Join(set, ".hidden"), []byte("x"), 0o644)
	r, err := Import(context.Background(), importOpts(z, set, recv))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !slices.Equal(r.Extra, []string{".hidden", extra}) || len(r.Imported) != 1 {
		t.Errorf("report = %+v", r)
	}
	if got := names(snapshot(t, recv)); !slices.Equal(got, []string{testEnvName("requests", 1)}) {
		t.Errorf("receive dir = %v", got)
	}
}

func TestImport_Refused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, z testZones, set string) ImportOptions
		want  error
	}{
		{"tampered text", func(t *testing.T, z testZones, set string) ImportOptions {
			rewrite(t, filepath.Join(set, ManifestName), "to intranet", "to intranex")
			return importOpts(z, set, "")
		}, ErrBadSignature},
		{"tampered file hash", func(t *testing.T, z testZones, set string) ImportOptions {
			rewrite(t, filepath.Join(set, ManifestName), "sha256:", "sha256:0")
			return importOpts(z, set, "")
		}, ErrBadSignature},
		{"another key of the same zone", func(t *testing.T, z testZones, set string) ImportOptions {
			o := importOpts(z, set, "")
			o.Peer = newZones(t).dmz.Public()
			return o
		}, ErrUnknownSender},
		{"another zone's key", func(t *testing.T, z testZones, set string) ImportOptions {
			o := importOpts(z, set, "")
			o.Peer = z.intranet.Public()
			return o
		}, ErrUnknownSender},
		{"addressed to another zone", func(t *testing.T, z testZones, set string) ImportOptions {
			o := importOpts(z, set, "")
			o.Zone = "archive"
			return o
		}, ErrWrongRecipient},
		{"signature stripped", func(t *testing.T, z testZones, set string) ImportOptions {
			p := filepath.Join(set, ManifestName)
			b, _ := os.ReadFile(p)
			i := strings.LastIndex(string(b), "\n\n")
			os.WriteFile(p, b[:i+2], 0o644)
			return importOpts(z, set, "")
		}, ErrBadSignature},
		{"too large", func(t *testing.T, z testZones, set string) ImportOptions {
			f, _ := os.OpenFile(filepath.Join(set, ManifestName), os.O_APPEND|os.O_WRONLY, 0)
			f.Truncate(MaxManifestSize + 1)
			f.Close()
			return importOpts(z, set, "")
		}, ErrTooLarge},
		{"manifest missing", func(t *testing.T, z testZones, set string) ImportOptions {
			os.Remove(filepath.Join(set, ManifestName))
			return importOpts(z, set, "")
		}, ErrNoManifest},
		{"manifest is a symlink", func(t *testing.T, z testZones, set string) ImportOptions {
			p := filepath.Join(set, ManifestName)
			moved := filepath.Join(t.TempDir(), ManifestName)
			os.Rename(p, moved)
			os.Symlink(moved, p)
			return importOpts(z, set, "")
		}, ErrMalformed},
		{"manifest is a fifo", func(t *testing.T, z testZones, set string) ImportOptions {
			p := filepath.Join(set, ManifestName)
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
			return importOpts(z, set, "")
		}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := newZones(t)
			send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
			for seq := uint64(1); seq <= 3; seq++ {
				writeEnv(t, send, "requests", seq, 80)
			}
			mustExport(t, exportOpts(z, send, set))
			o := tc.setup(t, z, set)
			o.ReceiveDir = recv
			r, err := importWithin(t, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if r != nil {
				t.Errorf("report = %+v, want none", r)
			}
			dirEmpty(t, recv)
		})
	}
}

// rewrite replaces the first old with new in the file at path.
func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExport_MaxBytes(t *testing.T) {
	z := newZones(t)
	send, recv := t.TempDir(), t.TempDir()
	var all []string
	for seq := uint64(1); seq <= 5; seq++ {
		all = append(all, writeEnv(t, send, "requests", seq, 300))
	}
	// Room for two files and their manifest, not for three; but for three
	// or four if the manifest were not counted.
	m := &Manifest{ID: NewID(), From: "dmz", FromKey: "00000000", To: "intranet", Created: testNow}
	ll := fileLineLen(File{Name: all[0], Size: 300})
	max := int64(600 + m.signedLen(2, 600, 2*ll))
	if 900+int64(m.signedLen(3, 900, 3*ll)) <= max || 900 > max {
		t.Fatal("test sizes do not separate two files from three")
	}
	var got []string
	for i, want := range [][]string{all[:2], all[2:4], all[4:]} {
		o := exportOpts(z, send, filepath.Join(t.TempDir(), "disc"))
		o.MaxBytes = max
		s := mustExport(t, o)
		if n := setNames(s); !slices.Equal(n, want) {
			t.Fatalf("export %d took %v, want %v", i+1, n, want)
		}
		if s.Remaining != len(all)-2*i-len(want) {
			t.Errorf("export %d: remaining = %d", i+1, s.Remaining)
		}
		var used int64
		for _, b := range snapshot(t, o.OutDir) {
			used += int64(len(b))
		}
		if used > max || i == 0 && used != max {
			// The first set is filled to the byte: the budget counts the
			// manifest exactly.
			t.Errorf("export %d: set holds %d bytes, budget %d", i+1, used, max)
		}
		if _, err := Import(context.Background(), importOpts(z, o.OutDir, recv)); err != nil {
			t.Fatal(err)
		}
		got = append(got, setNames(s)...)
	}
	if !slices.Equal(got, all) {
		t.Errorf("exported %v, want %v", got, all)
	}
	if got := names(snapshot(t, recv)); !slices.Equal(got, all) {
		t.Errorf("received %v", got)
	}
	o := exportOpts(z, send, filepath.Join(t.TempDir(), "disc"))
	if _, err := Export(context.Background(), o); !errors.Is(err, ErrNothingToExport) {
		t.Errorf("export of an empty send directory: err = %v, want ErrNothingToExport", err)
	}
	if _, err := os.Stat(o.OutDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("nothing to export wrote %s: %v", o.OutDir, err)
	}
}

func TestExport_TooLarge(t *testing.T) {
	z := newZones(t)
	send := t.TempDir()
	writeEnv(t, send, "requests", 1, 100)
	big := writeEnv(t, send, "requests", 2, 5000)
	writeEnv(t, send, "requests", 3, 100)
	before := snapshot(t, send)
	for _, outExists := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "disc")
		if outExists {
			os.Mkdir(out, 0o755)
		}
		o := exportOpts(z, send, out)
		o.MaxBytes = 4000
		_, err := Export(context.Background(), o)
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Name != big || tl.Size != 5000 {
			t.Fatalf("err = %v, want a TooLargeError naming %s", err, big)
		}
		if !strings.Contains(err.Error(), big) {
			t.Errorf("error %q does not name the envelope", err)
		}
		sameFiles(t, snapshot(t, send), before)
		if outExists {
			dirEmpty(t, out)
		} else if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("failed export left %s: %v", out, err)
		}
	}
}

func TestExport_LeavesOthersAlone(t *testing.T) {
	z := newZones(t)
	send := t.TempDir()
	env := writeEnv(t, send, "requests", 1, 10)
	others := map[string]string{
		".requests-00000000000000000002-00000000000000000000000000000002.fxe.tmp-0123456789abcdef": "temp",
		"README":           "not an envelope name",
		"Requests-1.fxe":   "uppercase",
		"requests-1-x.fxe": "valid file name, not the envelope shape",
		"requests-99999999999999999999-00000000000000000000000000000001.fxe": "sequence beyond 64 bits",
	}
	for n, c := range others {
		os.WriteFile(filepath.Join(send, n), []byte(c), 0o644)
	}
	link := testEnvName("requests", 3)
	os.Symlink(filepath.Join(send, env), filepath.Join(send, link))
	before := snapshot(t, send)

	s := mustExport(t, exportOpts(z, send, filepath.Join(t.TempDir(), "disc")))
	if got := setNames(s); !slices.Equal(got, []string{env}) {
		t.Errorf("exported %v, want only %s", got, env)
	}
	delete(before, env)
	sameFiles(t, snapshot(t, send), before)
	if _, err := os.Lstat(filepath.Join(send, link)); err != nil {
		t.Errorf("symlink touched: %v", err)
	}
	for _, n := range s.Ignored {
		if strings.HasPrefix(n, ".") {
			t.Errorf("dot name %s listed as ignored", n)
		}
	}
	if !slices.Contains(s.Ignored, link) || !slices.Contains(s.Ignored, "README") {
		t.Errorf("ignored = %v", s.Ignored)
	}
}

func TestExport_OutDir(t *testing.T) {
	z := newZones(t)
	send := t.TempDir()
	writeEnv(t, send, "requests", 1, 10)
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "old"), nil, 0o644)
	if _, err := Export(context.Background(), exportOpts(z, send, out)); !errors.Is(err, ErrOutDirNotEmpty) {
		t.Errorf("err = %v, want ErrOutDirNotEmpty", err)
	}
	file := filepath.Join(out, "old")
	if _, err := Export(context.Background(), exportOpts(z, send, file)); err == nil {
		t.Error("export into a file succeeded")
	}
	if len(snapshot(t, send)) != 1 {
		t.Error("refused export touched the send directory")
	}
}

// TestExport_CrashSafety crashes Export after the manifest is durable and
// before the sources are removed: the sources stay, the next export
// carries them again, and importing both sets yields each file once.
func TestExport_CrashSafety(t *testing.T) {
	z := newZones(t)
	send, recv := t.TempDir(), t.TempDir()
	for seq := uint64(1); seq <= 4; seq++ {
		writeEnv(t, send, "requests", seq, 300)
	}
	before := snapshot(t, send)
	crash := errors.New("crash")
	o1 := exportOpts(z, send, filepath.Join(t.TempDir(), "disc1"))
	o1.beforeRemove = func() error { return crash }
	if _, err := Export(context.Background(), o1); !errors.Is(err, crash) {
		t.Fatalf("err = %v, want the crash", err)
	}
	sameFiles(t, snapshot(t, send), before)
	sameFiles(t, snapshot(t, o1.OutDir), before)

	o2 := exportOpts(z, send, filepath.Join(t.TempDir(), "disc2"))
	s2 := mustExport(t, o2)
	if len(s2.Manifest.Files) != 4 {
		t.Fatalf("second export took %v", setNames(s2))
	}
	dirEmpty(t, send)

	r1, err := Import(context.Background(), importOpts(z, o1.OutDir, recv))
	if err != nil || len(r1.Imported) != 4 {
		t.Fatalf("import 1: %+v, %v", r1, err)
	}
	r2, err := Import(context.Background(), importOpts(z, o2.OutDir, recv))
	if err != nil || len(r2.Imported) != 0 || len(r2.Skipped) != 4 || r2.Skipped[0].Reason != ReasonPresent {
		t.Fatalf("import 2: %+v, %v", r2, err)
	}
	sameFiles(t, snapshot(t, recv), before)
}

func TestImport_NameTaken(t *testing.T) {
	z := newZones(t)
	send, set, recv := t.TempDir(), filepath.Join(t.TempDir(), "disc"), t.TempDir()
	n := writeEnv(t, send, "requests", 1, 30)
	mustExport(t, exportOpts(z, send, set))
	os.WriteFile(filepath.Join(recv, n), []byte("other bytes"), 0o644)
	r, err := Import(context.Background(), importOpts(z, set, recv))
	if err != nil || !slices.Equal(r.Skipped, []Problem{{Name: n, Reason: ReasonNameTaken}}) {
		t.Fatalf("report %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(filepath.Join(recv, n)); string(b) != "other bytes" {
		t.Error("existing file replaced")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1", 1}, {"650M", 650_000_000}, {"700MB", 700_000_000}, {"4.7G", 4_700_000_000},
		{"4.7g", 4_700_000_000}, {"25GB", 25_000_000_000}, {"1Ki", 1024}, {"1.5KiB", 1536},
		{"2Gi", 2 << 30}, {"100k", 100_000},
		{"", -1}, {"0", -1}, {"-1", -1}, {"1.5", -1}, {"M", -1}, {"1X", -1}, {"1..2G", -1},
		{".5G", -1}, {"5.G", -1}, {"99999999999T", -1}, {"1 G", -1}, {"0.0000001K", -1},
	} {
		got, err := ParseSize(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
}
