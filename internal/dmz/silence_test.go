package dmz

import (
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// TestAgent_PeerSilence: with no envelope from the intranet for
// peer_silence the agent reports the results channel silent, and an
// authentic envelope ends it; garbage on the medium does not.
func TestAgent_PeerSilence(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "peer_silence: 1s\n"})
	waitSilent := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, silent := e.agent.PeerHeard(); silent == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("silent never became %v", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, silent := e.agent.PeerHeard(); silent {
		t.Fatal("silent at start")
	}
	waitSilent(true)
	e.drop(t, "results-00000000000000000001-00000000000000000000000000000000.fxe", []byte("garbage"))
	time.Sleep(300 * time.Millisecond)
	if _, silent := e.agent.PeerHeard(); !silent {
		t.Fatal("garbage on the medium counted as the intranet")
	}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{}, Results: []batch.Result{}})
	e.drop(t, name, data)
	waitSilent(false)
}
