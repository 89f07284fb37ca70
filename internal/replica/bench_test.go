package replica

import (
	"context"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/sample"
)

// BenchmarkApply_policyEngine measures the intranet's per-request cost of applying
// envelopes of 256 reads (violations.query) to the sample replica: "full"
// with the whole policy engine (subject binding, rate limits taken and
// stored, masks, the authorizer) and "bare" with the same statements and
// authorizer without subject binding, limits or masks. Their ratio is the
// engine's share of the apply stage.
func BenchmarkApply_policyEngine(b *testing.B) {
	for _, tc := range []struct {
		name string
		pol  []byte
	}{{"full", sample.LoadPolicy()}, {"bare", sample.BarePolicy()}} {
		b.Run(tc.name, func(b *testing.B) {
			pol := parsePolicy(b, tc.pol)
			db := openTest(b, sampleReplicaFile(b))
			c := sample.Citizens()[0]
			const perEnvelope = 256
			b.ResetTimer()
			for i := 0; i < b.N; i += perEnvelope {
				n := min(perEnvelope, b.N-i)
				reqs := make([]batch.Request, n)
				for j := range reqs {
					reqs[j] = sampleReq(b, "violations.query", c.IDNumber, map[string]any{"id_number": c.IDNumber, "plate": c.Plate})
				}
				a, err := db.Apply(context.Background(), testEnvelope(b, uint64(i/perEnvelope+1)), reqs, pol)
				if err != nil {
					b.Fatal(err)
				}
				if r := a.Results[0]; r.Status != batch.StatusDone {
					b.Fatalf("%+v", r)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
