package mediumtest

import (
	"testing"
	"time"
)

// ReportRatio reports a media benchmark's figures over b.N batches of
// bytes each: the medium's time per batch as ns/op, the medium's and the
// baseline's throughput (medium-MB/s, <baseline>-MB/s), and their ratio
// (medium ÷ baseline; above 1 the medium is faster).
func ReportRatio(b *testing.B, bytes int64, medium, baseline time.Duration, name string) {
	total := float64(bytes) * float64(b.N) / 1e6
	b.ReportMetric(float64(medium.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(total/medium.Seconds(), "medium-MB/s")
	b.ReportMetric(total/baseline.Seconds(), name+"-MB/s")
	b.ReportMetric(baseline.Seconds()/medium.Seconds(), "ratio")
}
