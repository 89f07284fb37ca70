package carry

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/keys"
)

// testZones holds a sending and a receiving zone.
type testZones struct {
	dmz      *keys.Zone
	intranet *keys.Zone
}

func newZones(t *testing.T) testZones {
	t.Helper()
	d, err := keys.Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	i, err := keys.Generate("intranet")
	if err != nil {
		t.Fatal(err)
	}
	return testZones{dmz: d, intranet: i}
}

// testNow is the clock of every test export.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// envName returns the file name of envelope seq on channel, with an id
// derived from both so that tests can predict names.
func testEnvName(channel string, seq uint64) string {
	return fmt.Sprintf("%s-%020d-%032x.fxe", channel, seq, seq*7919+uint64(len(channel)))
}

// writeEnv writes size random bytes as envelope seq of channel into dir
// and returns its name.
func writeEnv(t *testing.T, dir, channel string, seq uint64, size int) string {
	t.Helper()
	name := testEnvName(channel, seq)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
		t.Fatal(err)
	}
	return name
}

// snapshot returns the regular files of dir and their contents.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// names returns the sorted keys of a snapshot, without the manifest.
func names(s map[string][]byte) []string {
	var n []string
	for k := range s {
		if k != ManifestName {
			n = append(n, k)
		}
	}
	slices.Sort(n)
	return n
}

func exportOpts(z testZones, send, out string) ExportOptions {
	return ExportOptions{SendDir: send, OutDir: out, Zone: z.dmz, To: "intranet", Now: func() time.Time { return testNow }}
}

func importOpts(z testZones, set, recv string) ImportOptions {
	return ImportOptions{Dir: set, ReceiveDir: recv, Zone: "intranet", Peer: z.dmz.Public()}
}

func mustExport(t *testing.T, o ExportOptions) *Set {
	t.Helper()
	s, err := Export(context.Background(), o)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return s
}

// setNames returns the file names of a set's manifest.
func setNames(s *Set) []string {
	var n []string
	for _, f := range s.Manifest.Files {
		n = append(n, f.Name)
	}
	return n
}

// sameFiles fails unless got holds exactly the files of want, byte for byte.
func sameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if g, w := names(got), names(want); !slices.Equal(g, w) {
		t.Fatalf("files = %v, want %v", g, w)
	}
	for n, b := range want {
		if n != ManifestName && !bytes.Equal(got[n], b) {
			t.Errorf("%s differs", n)
		}
	}
}

// dirEmpty fails unless dir holds nothing but dot files.
func dirEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s holds %s, want nothing", dir, e.Name())
		}
	}
}

// importWithin runs Import and fails the test if it does not return within
// a few seconds (opening a FIFO without O_NONBLOCK blocks forever).
func importWithin(t *testing.T, o ImportOptions) (*Report, error) {
	t.Helper()
	type result struct {
		r   *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := Import(context.Background(), o)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-time.After(10 * time.Second):
		t.Fatal("Import blocked")
		return nil, nil
	}
}
