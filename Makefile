# Open Health Exchange (ohx). `make run` serves on the embedded store; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run demo build test test-all e2e lint lint-deploy bench bench-quick golden token

run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/ohx serve

# ohx with simulated Withings, Google Health and Fitbit servers (generated data, webhooks pushed
# every 30 s) on a fresh store; prints a guided start. DEMOFLAGS: e.g. -seed 7 -push-every 10s.
demo: build
	bin/ohx demo $(DEMOFLAGS)

# Prints an access token of the demo backend client that `make run` creates (embedded store).
token:
	@$(GO) run ./cmd/ohx token

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ohx ./cmd/ohx

# Every test, with the race detector: the SQLite store, the MongoDB store against FerretDB
# embedded in the test binary, R4 output through google/fhir/go's validator, the HTTP API.
test: testdata/fhirkit/node_modules
	$(GO) test -race -short -count=1 ./...
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory e2e; \
	elif [ "$$OHX_REQUIRE_NODE" = 1 ]; then echo "make test: the e2e suite needs Node.js and npm"; exit 1; \
	else echo "make test: e2e suite skipped (no npm)"; fi

# The npm packages of the fhir-kit-client end-to-end test, pinned by its package-lock.json (the
# test skips without Node.js; the browser tests skip without Debian's chromium).
testdata/fhirkit/node_modules: testdata/fhirkit/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix testdata/fhirkit --no-audit --no-fund --loglevel=error && touch $@; fi

# The e2e suite: `ohx demo` driven by public clients (fhir-kit-client, fhirclient) from e2e/.
e2e: build e2e/node_modules
	npm test --prefix e2e

e2e/node_modules: e2e/package-lock.json
	npm ci --prefix e2e --no-audit --no-fund --loglevel=error && touch $@

# The Dockerfile and compose file, checked by linters from npm (images cannot be built here).
lint-deploy: e2e/node_modules
	npm run --prefix e2e lint:deploy

# Also the slow tests skipped by -short.
test-all: testdata/fhirkit/node_modules
	$(GO) test -race -count=1 ./...

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: the files above need formatting" && exit 1)
	$(GO) vet ./...

# Regenerate golden files.
golden:
	$(GO) test ./... -run Golden -update

# Load benchmark: `ohx serve` as its own process against a bare net/http handler (another
# process) serving the same bytes, same load generator and connections, same run. 1 M
# Observations, generated once into .bench/ and reused; figures in bench/results.json.
# PROFILE=1 also writes the server's CPU profiles per scenario and heap profiles to bench/.
BENCH = $(GO) build -o bin/ohxbench ./cmd/ohxbench && bin/ohxbench -ohx bin/ohx $(if $(PROFILE),-profile)
bench: build
	$(BENCH) $(BENCHFLAGS)

# The same with 50 k Observations and short rounds: under 2 minutes on 2 cores.
bench-quick: build
	$(BENCH) -quick $(BENCHFLAGS)
