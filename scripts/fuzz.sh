#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME (default 20s) each.
# Seeds come from each package's testdata/ and f.Add calls; new failing
# inputs are written under testdata/fuzz/ by go test, to be committed.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
