package sample

import (
	"bytes"
	"regexp"
)

// rateLine matches a rate limit of the sample policy.
var rateLine = regexp.MustCompile(`(?m)^(\s+per_(?:subject|client):) \S+$`)

// LoadPolicy returns the sample policy with every rate limit raised to
// 1000000 requests a second. The whole engine still runs (the limiter keeps
// and updates its buckets), but benchmarks and load tests, which send the
// requests of a few sample citizens thousands of times, are not refused.
func LoadPolicy() []byte {
	return rateLine.ReplaceAll(Policy(), []byte("$1 1000000/1s"))
}

// BarePolicy returns the sample policy without what the full engine adds to
// a v0 whitelist: no subject binding, no rate limits and no masks. The
// statements, parameters and declared table access are the same (the
// authorizer that enforces the access always runs). Benchmarks measure the
// engine's cost as the difference between this policy and LoadPolicy in
// the same run.
func BarePolicy() []byte {
	var out []byte
	skip := false // inside a limits: or mask: block
	for _, line := range bytes.SplitAfter(Policy(), []byte("\n")) {
		trimmed := bytes.TrimRight(line, "\n")
		switch {
		case bytes.Equal(trimmed, []byte("    limits:")), bytes.Equal(trimmed, []byte("    mask:")):
			skip = true
			continue
		case skip && bytes.HasPrefix(trimmed, []byte("      ")):
			continue
		case bytes.HasPrefix(trimmed, []byte("    subject: ")):
			skip = false
			continue
		}
		skip = false
		out = append(out, line...)
	}
	return out
}
