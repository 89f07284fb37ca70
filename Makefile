# ferry — build, demo, test, bench, fuzz.
#
#   make demo    build everything and run a full two-zone round trip
#   make test    the whole suite: gofmt, vet, race-enabled tests (the e2e
#                tests build the binaries and run both agents), then fuzz-ci
#   make fuzz-ci the fuzz targets over envelope opening for FUZZTIME_CI each
#                and the batch decoders, the audit proof, checkpoint and
#                consistency-proof parsers and the audit exchange of envelopes
#                for FUZZTIME_BATCH each (about 40s);
#                the budgets are counts of executions, not durations: Go
#                1.26's fuzzer can fail a duration-bounded run with "context
#                deadline exceeded" on a loaded machine, with no failing
#                input (https://go.dev/issue/75804, fixed in Go 1.27);
#                a failing input fails it and is written to the package's
#                testdata/fuzz/<Target>/ (go test prints how to re-run it)
#   make bench   benchmarks with same-run baselines (see docs/benchmarks.md)
#   make fuzz    run every fuzz target for FUZZTIME each
#   make soak    the hostile-ferry soak ten times larger than in make test
#                (6,000 requests, 22 SIGKILLs); FERRY_CHAOS_SEED replays one

GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 20s
FUZZTIME_CI    ?= 150000x
FUZZTIME_BATCH ?= 60000x
BENCHTIME ?= 3s
export CGO_ENABLED = 1

CMDS := ferryctl dmz-agent intranet-agent

.PHONY: all build demo test vet bench fuzz fuzz-ci soak clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

demo: build
	$(BIN)/ferryctl demo

vet:
	@unformatted=$$(gofmt -l .); test -z "$$unformatted" || { echo "gofmt needed: $$unformatted"; exit 1; }
	$(GO) vet ./...

test: vet
	$(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz-ci

# Fuzzing runs without -race (see scripts/fuzz.sh); the seeds, committed
# under each package's testdata/fuzz/, also run under -race in the step
# above.
FUZZ_CI := ./internal/envelope:FuzzOpen=$(FUZZTIME_CI) \
	./internal/envelope:FuzzOpenSigned=$(FUZZTIME_CI) \
	./internal/batch:FuzzDecodeRequests=$(FUZZTIME_BATCH) \
	./internal/batch:FuzzDecodeResults=$(FUZZTIME_BATCH) \
	./internal/audit:FuzzVerifyProof=$(FUZZTIME_BATCH) \
	./internal/audit:FuzzCheckpoint=$(FUZZTIME_BATCH) \
	./internal/audit:FuzzParseProof=$(FUZZTIME_BATCH) \
	./internal/audit:FuzzExchangeIncoming=$(FUZZTIME_BATCH)

fuzz-ci:
	./scripts/fuzz.sh $(FUZZ_CI)

bench:
	./scripts/bench.sh

soak:
	$(GO) test -race -count=1 -timeout 60m -tags soak -run 'TestHostileFerry' -v ./e2e

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

clean:
	rm -rf $(BIN)
