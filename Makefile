# Meridian — see README.md. Every target works from a fresh clone with Go 1.26.
GO        ?= go
BIN       := bin/meridian
FUZZTIME  ?= 30s
STATICCHECK_VERSION := v0.8.2

.PHONY: build test bench fuzz demo sim lint clean measure-failover measure-partitioner sim-long

build:
	$(GO) build -o $(BIN) ./cmd/meridian

# The README's test command; CI runs it through .ci/run. The invariants tag turns on the
# expensive internal consistency checks of the deterministic cores.
# The packages that start whole clusters of processes (sim-tests/...) run one at a time after the
# others: two of them at once on a 2-core machine starve each other's bots.
test:
	$(GO) test -race -count=1 -tags invariants $$($(GO) list ./... | grep -v /sim-tests/)
	$(GO) test -race -count=1 -tags invariants -p 1 ./sim-tests/...

# Performance targets are benchmarks, not timed tests (docs/performance.md). One core, as the
# targets are stated per core.
bench:
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench 'BenchmarkSnapshot|BenchmarkDecodeSnapshot' -benchmem ./wire
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench 'BenchmarkTick|BenchmarkCrowd' -benchtime 200x -timeout 30m ./cellserver
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench 'BenchmarkServerForward' -benchmem ./gateway

# Runs every fuzz target for FUZZTIME each (the committed seed corpora run in `make test`).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The showcase: the hotspot scenario with 600 bots on a local cluster (3 meta nodes, 3 cell
# servers, a gateway; Pebble), the partition map redrawn live, then the report's path.
demo: build
	./$(BIN) demo

# The full scenarios of `meridian sim`: the hotspot, dynamic vs static partitioning, at 250, 500,
# 750, 1 000 and 2 000 bots (sim-report/hotspot/scaling.md), then every other scenario at 500
# bots; then the generated blocks of docs/performance.md are rewritten from the reports
# (sim-tests/simdoc; the analysis around them is a person's). 25–30 minutes on 2 cores.
# A run whose invariants fail (the crowd outgrew the machine) is reported, not fatal here.
SIM_SCALE ?= 250,500,750,1000,2000
sim: build
	-./$(BIN) sim hotspot --compare --scale $(SIM_SCALE) --servers 3 --duration 90s --report sim-report/hotspot
	@set -e; for s in migration flash-crowd uniform leader-kill server-kill; do \
	  ./$(BIN) sim $$s --bots 500 --servers 3 --duration 60s --report sim-report/$$s || true; \
	done
	$(GO) run ./sim-tests/simdoc -reports sim-report -doc docs/performance.md

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin

# Leader SIGKILL → writes accepted again, over 10 kills of real `meridian meta` processes
# (docs/performance.md). The same test runs once in `make test`.
measure-failover:
	$(GO) test -count=1 -v -run TestLeaderKillFailover ./sim-tests/metacluster -args -failover-kills=10 | grep -E 'kill_test|ok|FAIL'

# The load-balance measurement of docs/performance.md (deterministic cluster simulation).
measure-partitioner:
	$(GO) test -count=1 -run TestMeasureLoadBalance -v -timeout 30m ./sim-tests/cluster -args -sim.measure

# The deterministic cluster simulation over many seeds, longer runs.
sim-long:
	$(GO) test -count=1 -run 'TestSim' -v -timeout 60m ./sim-tests/cluster -args -sim.long
