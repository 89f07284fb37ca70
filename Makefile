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
#   make install     build and install the binaries, the systemd units, the
#                    sysusers.d and tmpfiles.d files and example configs
#                    (PREFIX, DESTDIR, BINDIR, UNITDIR...; see "Installing" below)
#   make uninstall   remove what install put under PREFIX; never /etc/ferry,
#                    /var/lib/ferry, /var/log/ferry or /srv/ferry

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

# VERSION is what the agents report (ferryctl status, ferry_build_info).
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "-X github.com/ferrybridge/ferry/internal/status.version=$(VERSION)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

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

# Installing.
#
# make install lays out a host of either zone (both agents' files; enable
# only the zone's units):
#
#   $(BINDIR)       dmz-agent, intranet-agent, ferryctl (0755)
#   $(UNITDIR)      ferry-dmz-agent.service, ferry-intranet-agent.service,
#                   ferry-check-daily@.service, ferry-check-daily@.timer (0644)
#   $(SYSUSERSDIR)  ferry.conf: users ferry-dmz, ferry-intranet, group ferry-admin
#   $(TMPFILESDIR)  ferry.conf: /etc/ferry, /var/lib/ferry, /var/log/ferry,
#                   /run/ferry, /srv/ferry/exchange with owners and modes
#   $(DATADIR)      dmz.yaml.example, intranet.yaml.example (0644, the
#                   pristine examples, replaced at each install)
#   /etc/ferry/ZONE/ZONE.yaml.example (0640), only where none exists: an
#                   admin's copy is never overwritten
#
# The units, sysusers.d and tmpfiles.d files go under PREFIX/lib, the
# vendor directories systemd searches after /etc (for PREFIX /usr/local
# or /usr): an admin's drop-ins and overrides in /etc/systemd/system,
# /etc/sysusers.d and /etc/tmpfiles.d win over them and survive a
# reinstall, and uninstall removes exactly what install put there. The
# units' /usr/local/bin is rewritten to BINDIR.
#
# Without DESTDIR, install then applies the files: systemd-sysusers,
# systemd-tmpfiles --create (only ferry's file) and, where systemd is
# PID 1, systemctl daemon-reload. With DESTDIR (a package or an image) it
# only copies; the package runs those at install time.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DATADIR     ?= $(PREFIX)/share/ferry
SYSCONFDIR  ?= /etc
INSTALL     ?= install

UNITS := ferry-dmz-agent.service ferry-intranet-agent.service \
	ferry-check-daily@.service ferry-check-daily@.timer
ZONES := dmz intranet

.PHONY: install uninstall

install: build
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DATADIR)
	$(INSTALL) -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(BINDIR)/
	@set -e; for u in $(UNITS); do \
		echo "install deploy/systemd/$$u -> $(DESTDIR)$(UNITDIR)/$$u"; \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' deploy/systemd/$$u > $(DESTDIR)$(UNITDIR)/.$$u.tmp; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/.$$u.tmp; \
		mv -f $(DESTDIR)$(UNITDIR)/.$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; \
	done
	$(INSTALL) -m 0644 deploy/sysusers.d/ferry.conf $(DESTDIR)$(SYSUSERSDIR)/ferry.conf
	$(INSTALL) -m 0644 deploy/tmpfiles.d/ferry.conf $(DESTDIR)$(TMPFILESDIR)/ferry.conf
	@set -e; for z in $(ZONES); do \
		$(INSTALL) -m 0644 deploy/etc/$$z.yaml $(DESTDIR)$(DATADIR)/$$z.yaml.example; \
		dir=$(DESTDIR)$(SYSCONFDIR)/ferry/$$z; \
		[ -d $$dir ] || $(INSTALL) -d -m 0750 $$dir; \
		if [ -e $$dir/$$z.yaml.example ] || [ -L $$dir/$$z.yaml.example ]; then \
			cmp -s deploy/etc/$$z.yaml $$dir/$$z.yaml.example || \
				echo "kept $$dir/$$z.yaml.example (it differs; the new example is $(DATADIR)/$$z.yaml.example)"; \
		else \
			echo "install deploy/etc/$$z.yaml -> $$dir/$$z.yaml.example"; \
			$(INSTALL) -m 0640 deploy/etc/$$z.yaml $$dir/$$z.yaml.example; \
		fi; \
	done
ifeq ($(DESTDIR),)
	@command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null || \
		{ echo "install: systemd-sysusers and systemd-tmpfiles are needed (ferry runs under systemd)" >&2; exit 1; }
	systemd-sysusers $(SYSUSERSDIR)/ferry.conf
	systemd-tmpfiles --create $(TMPFILESDIR)/ferry.conf
	@if [ -d /run/systemd/system ]; then echo "systemctl daemon-reload"; systemctl daemon-reload; \
	else echo "systemd is not running (a container?): no daemon-reload"; fi
endif

uninstall:
ifeq ($(DESTDIR),)
	@if [ -d /run/systemd/system ] && [ -n "$$(systemctl list-units --state=active --plain --no-legend 'ferry-*' 2>/dev/null)" ]; then \
		echo "uninstall: ferry units are running; stop and disable them first:" >&2; \
		systemctl list-units --state=active --plain --no-legend 'ferry-*' >&2; \
		exit 1; \
	fi
endif
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(CMDS))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/ferry.conf $(DESTDIR)$(TMPFILESDIR)/ferry.conf
	rm -f $(addprefix $(DESTDIR)$(DATADIR)/,$(addsuffix .yaml.example,$(ZONES)))
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null
ifeq ($(DESTDIR),)
	@if [ -d /run/systemd/system ]; then echo "systemctl daemon-reload"; systemctl daemon-reload; fi
endif
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/ferry (configs, keys, policies), /var/lib/ferry (spool, ledger, replica, audit log),"
	@echo "  /var/log/ferry, /srv/ferry/exchange (envelopes in transit), and the users ferry-dmz, ferry-intranet"
	@echo "  and group ferry-admin: remove them by hand once the audit log's retention allows"
