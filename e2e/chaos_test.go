package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/chaos"
)

// hostileFaults is what the hostile ferry does to each direction in the
// soak test: a tenth of the files lost, a tenth duplicated, a tenth held
// back and overtaken, some corrupted, replayed, or accompanied by garbage
// and hostile entries.
var hostileFaults = chaos.Faults{
	Loss: 0.10, Duplicate: 0.10, Reorder: 0.10, Truncate: 0.03, BitFlip: 0.03,
	Replay: 0.05, Garbage: 0.02, Hostile: 0.02, Delay: 200 * time.Millisecond,
}

// TestHostileFerry_ExactlyOnce carries both directions through the hostile
// ferry and SIGKILLs the intranet agent mid-stream: every accepted request
// still ends done, and each took effect on the replica exactly once. The
// seed is logged; set FERRY_CHAOS_SEED to replay a run's fault decisions.
func TestHostileFerry_ExactlyOnce(t *testing.T) {
	d := effectsDeployment(t)
	// Each agent now writes into an -out directory that a hostile ferry
	// carries into the directory the other agent reads.
	rewire := func(file, old, new string) {
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
	dmzCfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	rewire(dmzCfg, "dir: ../exchange/requests\n", "dir: ../exchange/requests-out\n")
	rewire(dmzCfg, "envelope_ttl: 24h\n", "envelope_ttl: 24h\nresend_after: 1s\n")
	rewire(filepath.Join(d.dir, "intranet", "intranet.yaml"), "dir: ../exchange/results\n", "dir: ../exchange/results-out\n")
	ex := filepath.Join(d.dir, "exchange")
	for _, sub := range []string{"requests-out", "results-out"} {
		if err := os.MkdirAll(filepath.Join(ex, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}

	seed := time.Now().UnixNano()
	if s := os.Getenv("FERRY_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = parseSeed(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("hostile ferry seed %d (FERRY_CHAOS_SEED=%d replays its decisions)", seed, seed)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ferries []*chaos.Ferry
	for i, dirs := range [][2]string{{"requests-out", "requests"}, {"results-out", "results"}} {
		f, err := chaos.New(chaos.Config{From: filepath.Join(ex, dirs[0]), To: filepath.Join(ex, dirs[1]),
			Seed: seed + int64(i), Faults: hostileFaults})
		if err != nil {
			t.Fatal(err)
		}
		ferries = append(ferries, f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Run(ctx); err != nil {
				t.Errorf("hostile ferry %s: %v", dirs[0], err)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
		for i, f := range ferries {
			t.Logf("hostile ferry %d: %+v", i, f.Stats())
		}
	}()

	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	ids := submitEffects(t, d, 0, func() { in.kill(t) })
	in = d.start(t, "intranet-agent")
	checkEffects(t, d, ids)
	for i, f := range ferries {
		if st := f.Stats(); st.Lost == 0 || st.Duplicated == 0 {
			t.Errorf("hostile ferry %d did too little to prove anything: %+v", i, st)
		}
	}
	dz.stop(t)
	in.stop(t)
}

func parseSeed(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
