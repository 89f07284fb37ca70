package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrybridge/ferry/internal/medium/chaos"
)

// Exchange directories: each agent writes into an -out directory that a
// ferry carries into the directory the other agent reads.
const (
	requestsOut = "requests-out"
	resultsOut  = "results-out"
)

// rewire replaces old, which must appear exactly once, by new in file.
func rewire(t testing.TB, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, old) != 1 {
		t.Fatalf("%s: %q appears %d times", file, old, strings.Count(s, old))
	}
	if err := os.WriteFile(file, []byte(strings.Replace(s, old, new, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
}

// viaFerries makes both agents of d write into -out directories instead of
// straight into the other's, so that ferries (startFerry) stand between
// them, and has the DMZ publish unacknowledged envelopes again after
// resendAfter (a config duration such as "1s").
func (d *deployment) viaFerries(t testing.TB, resendAfter string) {
	t.Helper()
	dmzCfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	rewire(t, dmzCfg, "dir: ../exchange/requests\n", "dir: ../exchange/"+requestsOut+"\n")
	rewire(t, dmzCfg, "envelope_ttl: 24h\n", "envelope_ttl: 24h\nresend_after: "+resendAfter+"\n")
	rewire(t, filepath.Join(d.dir, "intranet", "intranet.yaml"), "dir: ../exchange/results\n", "dir: ../exchange/"+resultsOut+"\n")
	for _, sub := range []string{requestsOut, resultsOut} {
		if err := os.MkdirAll(filepath.Join(d.dir, "exchange", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// ferry is a chaos.Ferry running between two exchange directories.
type ferry struct {
	*chaos.Ferry
	name   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFerry carries files from exchange/from to exchange/to with faults
// until stop is called or the test ends.
func (d *deployment) startFerry(t testing.TB, from, to string, seed int64, faults chaos.Faults) *ferry {
	t.Helper()
	ex := filepath.Join(d.dir, "exchange")
	cf, err := chaos.New(chaos.Config{From: filepath.Join(ex, from), To: filepath.Join(ex, to), Seed: seed, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &ferry{Ferry: cf, name: from, cancel: cancel}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := cf.Run(ctx); err != nil {
			t.Errorf("ferry %s: %v", from, err)
		}
	}()
	t.Cleanup(f.stop)
	return f
}

// stop stops the ferry and waits for it; files left in its source
// directory stay there. It may be called more than once.
func (f *ferry) stop() {
	f.cancel()
	f.wg.Wait()
}
