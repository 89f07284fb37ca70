# ferry — build, demo, test, bench, fuzz.
#
#   make demo    build everything and run a full two-zone round trip
#   make test    the whole suite: gofmt, vet, race-enabled tests (the e2e
#                tests build the binaries and run both agents)
#   make bench   benchmarks with same-run baselines (see docs/benchmarks.md)
#   make fuzz    run every fuzz target for FUZZTIME each

GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 20s
BENCHTIME ?= 3s
export CGO_ENABLED = 1

CMDS := ferryctl dmz-agent intranet-agent

.PHONY: all build demo test vet bench fuzz clean

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

bench:
	./scripts/bench.sh

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

clean:
	rm -rf $(BIN)
