# Open Health Exchange (ohx). `make run` serves on the embedded store; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run build test test-all lint bench golden token

run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/ohx serve

# Prints an access token of the demo backend client that `make run` creates (embedded store).
token:
	@$(GO) run ./cmd/ohx token

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ohx ./cmd/ohx

# Every test, with the race detector: the SQLite store, the MongoDB store against FerretDB
# embedded in the test binary, R4 output through google/fhir/go's validator, the HTTP API.
test:
	$(GO) test -race -short -count=1 ./...

# Also the slow tests skipped by -short.
test-all:
	$(GO) test -race -count=1 ./...

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: the files above need formatting" && exit 1)
	$(GO) vet ./...

# Regenerate golden files.
golden:
	$(GO) test ./... -run Golden -update

# Load benchmark: ohx against a bare net/http handler serving the same bytes, same run.
bench: build
	$(GO) run ./cmd/ohxbench $(BENCHFLAGS)
