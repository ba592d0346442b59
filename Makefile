# p2p — make help lists the targets.
export GOTOOLCHAIN := local
GO ?= go
PKGS := ./...
# The end-to-end packages: each starts Temporal (or builds and runs p2p) and
# takes minutes. Every other package's tests run in seconds.
E2E_PKGS := devstack cmd/p2p devserver

.PHONY: help build build-prod generate generate-check lint test test-race test-e2e chaos fuzz bench bench-prod eval dev clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/p2p with the embedded dev stack (Temporal server inside)
	$(GO) build -o bin/p2p ./cmd/p2p

build-prod: ## build bin/p2p-prod without the embedded Temporal server (api, worker, migrate)
	$(GO) build -tags nodev -trimpath -ldflags='-s -w' -o bin/p2p-prod ./cmd/p2p

dev: ## run p2p dev
	$(GO) run ./cmd/p2p dev

generate: ## regenerate api/api.gen.go from openapi.yaml and docs/configuration.md from the flags
	$(GO) generate ./api/... ./cmd/p2p/...

generate-check: generate ## fail if generated code is stale
	git diff --exit-code -- api/ docs/configuration.md

# errcheck-excludes.txt lists the calls whose error is ignored on purpose,
# and why.
lint: ## gofmt, go vet, staticcheck, errcheck, workflowcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool errcheck -exclude errcheck-excludes.txt $(PKGS)
	$(GO) tool workflowcheck ./workflows/...
	$(GO) vet -tags chaos ./chaos/ ./internal/prodstack/
	$(GO) vet -tags chaos_previous ./workflows/

# Every test runs once: the fast packages under the race detector, the
# end-to-end ones (which embed the Temporal server, slow to build with -race)
# plainly.
test: test-race test-e2e ## run every test (Postgres contract tests need P2P_TEST_DATABASE_URL)

test-race: ## every package but the end-to-end ones (E2E_PKGS), under the race detector
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list $(PKGS) | grep -v $(E2E_PKGS:%=-e '/%$$'))

test-e2e: ## the end-to-end packages (E2E_PKGS)
	$(GO) test -count=1 -timeout 20m $(E2E_PKGS:%=./%)

# The fault suite on the production topology (chaos/, build tag chaos, so
# make test never runs it): builds the Temporal server, its SQL tool and
# p2p into bin/, then per scenario recreates the databases chaos_temporal,
# chaos_temporal_visibility and chaos_p2p on the PostgreSQL at
# 127.0.0.1:5432 (CHAOS_POSTGRES_URL to change), starts 2 apis and 2
# workers and breaks things; it fails, never skips, without PostgreSQL.
# CHAOS_SCALE=ci is the bounded run of .ci/run; make chaos is the full one.
CHAOS_SCALE ?= full
chaos: ## fault suite on the production topology: Temporal on PostgreSQL, 2 apis, 2 workers, a misbehaving partner; 5 scenarios (CHAOS_SCALE=ci: bounded)
	CHAOS_SCALE=$(CHAOS_SCALE) $(GO) test -tags chaos -count=1 -v -timeout 90m ./chaos/

# Each fuzz target for a number of executions, one at a time (the seed
# corpora already run as tests in make test). Budgets are counts, not
# durations: Go 1.26's fuzz coordinator can fail a duration-bounded run with
# a spurious "context deadline exceeded" at the deadline (go.dev/issue/75804,
# fixed in Go 1.27); a count has no deadline to race. Each is sized to a few
# seconds here; FUZZSCALE multiplies them all (make fuzz FUZZSCALE=100 for a
# long run). Minimising is bounded too.
FUZZSCALE ?= 1
FUZZ_TARGETS := FuzzRequestProblems:transfer:200000 FuzzCreateTransferBody:api:8000 \
	FuzzParseMemberMatch:pdex:8000 FuzzParseBulkMemberMatch:pdex:400 \
	FuzzParseManifest:connectors/bulkdata:80000 FuzzRetryAfter:connectors/httpclass:200000

fuzz: ## run each fuzz target for its execution budget (× FUZZSCALE): request validation, member-match, manifests, Retry-After
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; n=$$(( $${rest##*:} * $(FUZZSCALE) )); \
		echo "fuzz $$name ./$$pkg ($$n executions)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $${n}x -fuzzminimizetime 100x ./$$pkg; \
	done

bench: ## benchmarks (identity matching at 1M members; staleness of the index across processes; 500 MB Bulk Data download; end-to-end transfers in p2p dev; p2p against bare Temporal on the embedded server; audit export of 1M events; then bench-prod)
	$(GO) test -run '^$$' -bench . -benchmem ./identity/...
	$(GO) test -run '^$$' -bench Staleness -benchtime 1000x ./activities/
	$(GO) test -run '^$$' -bench Download500MB -benchtime 3x ./connectors/bulkdata/
	$(GO) test -run '^$$' -bench Transfers -benchtime 300x ./devstack/
	$(GO) test -run '^$$' -bench VsBare -benchtime 500x -timeout 30m ./devstack/
	$(GO) test -run '^$$' -bench Codec -benchmem ./internal/payloadcodec/
	$(GO) test -run '^$$' -bench AuditExport -benchtime 1x -timeout 60m ./api/
	$(MAKE) bench-prod

# p2p against bare Temporal on the production topology: builds the Temporal
# server as make chaos does and recreates the databases bench_temporal,
# bench_temporal_visibility and bench_p2p on CHAOS_POSTGRES_URL (default the
# local PostgreSQL). P2P_BENCH_UNITS (default 500) per side.
bench-prod: ## p2p against bare Temporal on the production topology (Temporal on PostgreSQL, p2p api + worker processes)
	$(GO) test -tags chaos -run '^$$' -bench ProdVsBare -benchtime 1x -timeout 60m ./chaos/

eval: ## identity evaluation report on the shared data sets
	P2P_IDENTITY_EVAL=1 $(GO) test -count=1 -run TestEvaluation -v ./identity/...

clean:
	rm -rf bin .p2p
