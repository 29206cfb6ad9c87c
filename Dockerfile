# syntax=docker/dockerfile:1
# ohx: a static, non-root image. Build with
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ohx .

# Build stage: a pure-Go static binary (the embedded SQLite store is modernc.org/sqlite, so no cgo).
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ohx ./cmd/ohx \
 && mkdir -p /out/data

# Final stage: distroless static (CA certificates, tzdata, /etc/passwd with nonroot, no shell)
# https://github.com/GoogleContainerTools/distroless
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ohx /ohx
# The data dir belongs to nonroot (65532): a new named volume is initialised from it, owner included.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
ENV OHX_ADDR=:8080 \
    OHX_DATA_DIR=/data
EXPOSE 8080
VOLUME ["/data"]
# No shell or curl in the image: `ohx health` GETs http://127.0.0.1:PORT/healthz (PORT from
# OHX_ADDR) and exits 0 on 200. No --start-period: dockerfilelint 1.8 rejects it; compose.yaml
# sets start_period.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/ohx", "health"]
ENTRYPOINT ["/ohx"]
CMD ["serve"]
