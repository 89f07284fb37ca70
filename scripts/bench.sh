#!/usr/bin/env bash
# make bench: runs every Go benchmark, then prints the headline figures as
# ratios against the baselines measured in the same run:
#   intake:     durable 202s per second vs a no-op Go HTTP handler, at 64
#               and at 256 connections
#   round trip: end-to-end requests per second through both agents vs an
#               HTTP handler querying the replica directly (the design ferry
#               replaces), with p50/p99 latency; and vs a shell loop of the
#               age and minisign CLIs sealing one file per request
#   policy:     end-to-end requests per second with the full policy engine vs
#               the same statements without subject binding, limits or masks
# Raw output is kept in bench.out. The machine is shared and noisy; compare
# ratios, not absolute figures, across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-3s}
out=bench.out
: >"$out"

if ! command -v age >/dev/null || ! command -v minisign >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq age minisign >/dev/null
	else
		echo "note: the round-trip baseline needs the age and minisign CLIs (apt-get install age minisign)" >&2
	fi
fi

go test -run '^$' -bench . -benchtime "$benchtime" -benchmem \
	$(go list ./... | grep -v '/e2e$') | tee -a "$out"
# The intake again with 256 connections, renamed so that both are kept.
FERRY_BENCH_CLIENTS=256 go test -run '^$' -bench 'BenchmarkIntake$' -benchtime "${INTAKE_REQUESTS:-40000}x" ./internal/dmz |
	sed 's/^BenchmarkIntake/BenchmarkIntake256/' | tee -a "$out"
# End to end: a fixed number of requests per run, so both agents start once
# per measurement and the spool and replica stay a realistic size.
go test -run '^$' -bench 'RoundTrip/(bridge|direct)' -benchtime "${E2E_REQUESTS:-20000}x" ./e2e | tee -a "$out"
go test -run '^$' -bench 'RoundTrip/cli' -benchtime "${CLI_REQUESTS:-300}x" ./e2e | tee -a "$out"
# The DMZ agent's memory with a backlog the intranet does not drain
# (BACKLOG_REQUESTS=1000000 for issue 9's million; it takes minutes).
go test -run '^$' -bench 'BacklogMemory' -benchtime "${BACKLOG_REQUESTS:-100000}x" -timeout 60m ./e2e | tee -a "$out"
# Through ferries that lose 0%, 1% and 10% of the files, and the drain
# after a minute's outage of the return path (FERRY_OUTAGE).
go test -run '^$' -bench 'RoundTrip_loss' -benchtime "${LOSS_REQUESTS:-5000}x" ./e2e | tee -a "$out"
go test -run '^$' -bench 'DrainAfterOutage' -benchtime 1x -timeout 30m ./e2e | tee -a "$out"

metric() { # metric BENCH-REGEX UNIT: the value of UNIT on the first matching line
	awk -v re="$1" -v unit="$2" '$1 ~ re { for (i = 2; i < NF; i++) if ($(i+1) == unit) { print $i; exit } }' "$out"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo
echo "== headline figures (same run)"
intake=$(metric '^BenchmarkIntake' 'req/s')
noop=$(metric '^BenchmarkIntake' 'noop-req/s')
bridge=$(metric '^BenchmarkRoundTrip/bridge-' 'req/s')
bare=$(metric '^BenchmarkRoundTrip/bridge-bare-policy' 'req/s')
evaluate=$(metric '^BenchmarkEvaluate-' 'ns/op')
evalallocs=$(metric '^BenchmarkEvaluate-' 'allocs/op')
cli=$(metric '^BenchmarkRoundTrip/cli' 'req/s')
intake256=$(metric '^BenchmarkIntake256' 'req/s')
noop256=$(metric '^BenchmarkIntake256' 'noop-req/s')
direct=$(metric '^BenchmarkRoundTrip/direct' 'req/s')
printf 'intake      64 connections: durable %s req/s, no-op handler %s req/s, ratio %s (target >= 0.5)\n' "${intake:-n/a}" "${noop:-n/a}" "$(ratio "$intake" "$noop")"
printf 'intake      256 connections: durable %s req/s, no-op handler %s req/s, ratio %s (target >= 0.5)\n' "${intake256:-n/a}" "${noop256:-n/a}" "$(ratio "$intake256" "$noop256")"
printf 'isolation   bridge %s req/s (p50 %s ms, p99 %s ms), direct replica handler %s req/s (p50 %s ms, p99 %s ms), ratio %s (target >= 0.5)\n' \
	"${bridge:-n/a}" "$(metric '^BenchmarkRoundTrip/bridge-' 'p50-ms')" "$(metric '^BenchmarkRoundTrip/bridge-' 'p99-ms')" \
	"${direct:-n/a}" "$(metric '^BenchmarkRoundTrip/direct' 'p50-ms')" "$(metric '^BenchmarkRoundTrip/direct' 'p99-ms')" "$(ratio "$bridge" "$direct")"
printf 'memory      under load: dmz %s MiB, intranet %s MiB peak; backlog of %s: dmz %s MiB at a tenth, %s MiB at the end\n' \
	"$(metric '^BenchmarkRoundTrip/bridge-' 'dmz-rss-MiB')" "$(metric '^BenchmarkRoundTrip/bridge-' 'intranet-rss-MiB')" \
	"${BACKLOG_REQUESTS:-100000}" "$(metric '^BenchmarkBacklogMemory' 'rss-tenth-MiB')" "$(metric '^BenchmarkBacklogMemory' 'rss-end-MiB')"
printf 'round trip  bridge %s req/s, age+minisign CLI loop %s req/s, ratio %s (target >= 100)\n' "${bridge:-n/a}" "${cli:-n/a}" "$(ratio "$bridge" "$cli")"
printf 'policy      full engine %s req/s, bare policy %s req/s, ratio %s (target >= 0.9); Evaluate %s ns/op, %s allocs/op\n' "${bridge:-n/a}" "${bare:-n/a}" "$(ratio "$bridge" "$bare")" "${evaluate:-n/a}" "${evalallocs:-n/a}"
