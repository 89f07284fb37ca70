package e2e

import (
	"math/rand/v2"
	"os"
	"strconv"
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
	// The results path carries a few dozen envelopes (results batch up):
	// at 10% a run may lose or duplicate none of them by chance.
	Ensure: 5,
}

// TestHostileFerry_ExactlyOnce carries both directions through the hostile
// ferry and SIGKILLs both agents several times, mid-stream and while the
// backlog drains: every accepted request still ends done, and each took
// effect on the replica exactly once. The seed is logged; set
// FERRY_CHAOS_SEED to replay a run's fault decisions and kill points.
// Built with -tags soak (make soak) it runs soakScale times longer.
func TestHostileFerry_ExactlyOnce(t *testing.T) {
	d := effectsDeployment(t)
	d.viaFerries(t, "1s")
	seed := time.Now().UnixNano()
	if s := os.Getenv("FERRY_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = parseSeed(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("hostile ferry seed %d (FERRY_CHAOS_SEED=%d replays its decisions)", seed, seed)
	ferries := []*ferry{
		d.startFerry(t, requestsOut, "requests", seed, hostileFaults),
		d.startFerry(t, resultsOut, "results", seed+1, hostileFaults),
	}
	defer func() {
		for _, f := range ferries {
			f.stop()
			t.Logf("hostile ferry %s: %+v", f.name, f.Stats())
		}
	}()

	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	// SIGKILL the agents at seeded points of the stream, each in turn,
	// and restart them; clients ride out the DMZ's restarts by retrying
	// with their idempotency keys. One more kill of each comes while the
	// backlog drains.
	n, kills := effectsTotal*soakScale, 2+2*soakScale
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	crash := map[int]func(){}
	for k := range kills {
		at := 1 + rng.IntN(n-1)
		for crash[at] != nil {
			at = 1 + rng.IntN(n-1)
		}
		crash[at] = func() {
			if k%2 == 0 {
				in.kill(t)
				in = d.start(t, "intranet-agent")
			} else {
				dz.kill(t)
				dz = d.start(t, "dmz-agent")
			}
		}
	}
	t.Logf("%d requests, %d SIGKILLs", n, kills+2)
	ids := submitEffects(t, d, n, time.Minute, crash)
	in.kill(t)
	in = d.start(t, "intranet-agent")
	dz.kill(t)
	dz = d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	checkEffects(t, d, ids)
	for _, f := range ferries {
		if st := f.Stats(); st.Lost == 0 || st.Duplicated == 0 {
			t.Errorf("hostile ferry %s did too little to prove anything: %+v", f.name, st)
		}
	}
	dz.stop(t)
	in.stop(t)
	checkAudit(t, d, ids)
}

func parseSeed(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
