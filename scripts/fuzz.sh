#!/usr/bin/env bash
# Runs Go fuzz targets for a bounded budget each (a duration such as 20s,
# or a count of executions such as 150000x), without the race detector.
#
#   scripts/fuzz.sh                       every fuzz target in the module
#   scripts/fuzz.sh PKG:TARGET[=TIME]...  only these, e.g.
#                                         ./internal/envelope:FuzzOpen=150000x
#
# TIME defaults to FUZZTIME (default 20s). Seeds come from each target's
# f.Add calls and its package's testdata/fuzz/<TARGET>/ (committed, in go's
# corpus file format); inputs that widen coverage go to go's cache only.
#
# The first failing input stops the run with a non-zero status: go test
# writes it to <package dir>/testdata/fuzz/<TARGET>/<hash>, where it then
# runs as a seed in every plain go test (commit it once fixed), and prints
# the command that re-runs it: go test -run=<TARGET>/<hash> <package>.
#
# Fuzzing is without -race: the targets are single-goroutine parsers, so
# the race detector would find nothing and cut the executions per second
# several times; make test runs every seed under -race anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}

run() { # run PKG TARGET TIME
	echo "== $1 $2 ($3)"
	if ! go test -run '^$' -fuzz "^$2\$" -fuzztime "$3" "$1"; then
		echo "fuzz: $1 $2 failed; the failing input is in $(go list -f '{{.Dir}}' "$1")/testdata/fuzz/$2/" >&2
		exit 1
	fi
}

if [ $# -gt 0 ]; then
	for spec in "$@"; do
		pkg=${spec%%:*}
		target=${spec#*:}
		t=$fuzztime
		case $target in *=*) t=${target#*=}; target=${target%%=*} ;; esac
		if [ -z "$pkg" ] || [ -z "$target" ] || [ "$pkg" = "$spec" ]; then
			echo "fuzz: bad target $spec, want PKG:TARGET[=TIME]" >&2
			exit 2
		fi
		run "$pkg" "$target" "$t"
	done
	exit 0
fi
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		run "$pkg" "$target" "$fuzztime"
	done
done
