package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	switch {
	case len(args) > 0 && isHelp(args[0]):
		printHelp(stdout)
		return nil
	case len(args) > 0 && (args[0] == "--version" || args[0] == "-version"):
		cmd = "version"
	case len(args) > 0 && args[0] != "" && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig("ohx serve", args, getenv, stderr)
		if err != nil {
			return err
		}
		tuneGC(getenv, cacheBytes(cfg))
		cfg.cpus = tuneProcs(getenv)
		return serve(ctx, cfg, stderr, nil)
	case "health":
		return runHealth(ctx, args, getenv, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, getenv, stdout, stderr)
	case "clients":
		return runClients(ctx, args, getenv, stdout, stderr)
	case "users":
		return runUsers(ctx, args, getenv, stdin, stdout, stderr)
	case "token":
		return runToken(ctx, args, getenv, stdout, stderr)
	case "keys":
		return runKeys(ctx, args, getenv, stdout, stderr)
	case "connections":
		return runConnections(ctx, args, getenv, stdout, stderr)
	case "googlehealth":
		return runGoogleHealth(ctx, args, getenv, stdout, stderr)
	case "publish-jwks":
		return runPublishJWKS(args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "ohx", version)
		return nil
	}
	return fmt.Errorf("unknown command %q (see ohx help)", cmd)
}

// serve runs the server until ctx ends. If ready is not nil it receives the listening address.
func serve(ctx context.Context, cfg Config, logOut io.Writer, ready chan<- string) error {
	if f, ok := logOut.(*os.File); ok {
		// The process's own stderr (a file, a pipe to journald or a container runtime): batch
		// the access log's writes. Tests pass buffers and read them as they go.
		bl := newBufferedLog(f, 100*time.Millisecond)
		defer bl.Close()
		logOut = bl
	}
	log, err := newLogger(cfg, logOut)
	if err != nil {
		return err
	}
	key, err := secretKey(cfg)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ac := api.Config{
		BaseURL:        cfg.BaseURL,
		Version:        version,
		DefaultCount:   cfg.DefaultCount,
		MaxCount:       cfg.MaxCount,
		CursorKey:      seal.Derive(key, "ohx paging cursor"),
		CacheBytes:     cacheBytes(cfg),
		MaxBodyBytes:   cfg.MaxBodyBytes,
		RequestTimeout: cfg.RequestTimeout,
		CORSOrigins:    commaList(cfg.CORSOrigins),
		TrustedProxies: commaList(cfg.TrustedProxies),
	}
	if err := setupAuth(ctx, cfg, st, key, log, &ac); err != nil {
		return err
	}
	runner, err := setupProviders(ctx, cfg, st, key, log, promReg, &ac)
	if err != nil {
		return err
	}
	srv, err := api.New(ac, st, search.DefaultRegistry(), log, promReg)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.PprofAddr != "" {
		ps, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer ps.Close()
	}
	log.Info("ohx serving", "addr", ln.Addr().String(), "base_url", cfg.BaseURL, "store", storeKind(cfg), "version", version)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	pctx, stopPipeline := context.WithCancel(ctx)
	pipelineDone := make(chan struct{})
	go func() { defer close(pipelineDone); runPipeline(pctx, runner) }()
	defer func() { stopPipeline(); <-pipelineDone }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Garbage collector defaults of the server, used unless GOGC or GOMEMLIMIT are set
// (https://go.dev/doc/gc-guide). The live heap of a serving ohx is small (the result cache is
// its largest part), so the default GOGC=100 collects very often under load; a higher
// percentage trades a little memory for much less collector CPU, and the soft limit keeps the
// heap well inside the server's memory budget (SQLite's page caches live outside the Go heap).
const (
	defaultGCPercent   = 300
	defaultMemoryLimit = 112 << 20
)

// tuneGC applies the defaults; the soft limit grows with a result cache budget raised above the
// default, which would otherwise keep the live heap at the limit and the collector running.
func tuneGC(getenv func(string) string, cacheBytes int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(max(defaultMemoryLimit, cacheBytes+48<<20))
	}
}

// backgroundProcs is how many goroutines of `ohx serve` can run CPU-bound for tens of
// milliseconds at a time: the job runner's two workers mapping vendor pages and the embedded
// store's writer flushing them (providers/pipeline).
const backgroundProcs = 3

// tuneProcs gives the Go scheduler at least one P more than backgroundProcs (and never fewer
// than its default, the CPUs this process may use), unless GOMAXPROCS is set. While every P
// runs such a goroutine, no P looks at the network poller, and a webhook's connection that
// became readable waits for sysmon, which polls it only after 10 ms without a poll
// (https://github.com/golang/go/pull/51651): the acknowledgements' tail. A P left over blocks
// in the poller and runs the handler at once, on its own OS thread, which the kernel then
// schedules among the busy ones. Measured on 2 cores (ohxbench webhook-empty,
// 1,000/s for 15 s, OHX_QUEUE_SYNC=normal): p99 10.7–13.9 ms with 2 Ps, 6.6–7.6 ms with 4;
// searches and reads by id unchanged. It returns the Ps before it raised them, the CPUs this
// process may use: what sizes the embedded store's read pool (openStore). Every reader
// connection keeps its own page cache, and with a reader per P (4) the bench's peak RSS was
// 162 MB where 2 readers made it 83 MB (searches and reads by id on a 1 M store).
func tuneProcs(getenv func(string) string) int {
	n := runtime.GOMAXPROCS(0)
	if getenv("GOMAXPROCS") != "" {
		return n
	}
	runtime.GOMAXPROCS(max(n, backgroundProcs+1))
	return n
}

// servePprof serves the runtime profiles on their own loopback listener (parseConfig refuses any
// other address), never on the API's: https://pkg.go.dev/net/http/pprof. Importing the package
// also registers its handlers on http.DefaultServeMux, which ohx never serves.
func servePprof(addr string, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (OHX_PPROF_ADDR): %w", addr, err)
	}
	ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go ps.Serve(ln)
	log.Info("profiles served", "addr", ln.Addr().String())
	return ps, nil
}

func storeKind(cfg Config) string {
	if cfg.MongoURI != "" {
		return "mongodb"
	}
	return "sqlite"
}

func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	if cfg.MongoURI != "" {
		return openMongo(ctx, cfg, log)
	}
	return sqlite.Open(ctx, cfg.DataDir, sqlite.Options{Readers: cfg.cpus, HistoryVersions: cfg.HistoryVersions, QueueSync: cfg.QueueSync}, log)
}

// secretKey returns the deployment's key material: OHX_SECRET_KEY, or a random key kept in
// DataDir/secret.key (created on first start, mode 0600) for the embedded single-node setup.
func secretKey(cfg Config) ([]byte, error) {
	if cfg.SecretKey != "" {
		k, err := base64.StdEncoding.DecodeString(cfg.SecretKey)
		if err != nil || len(k) < 32 {
			return nil, errors.New("config: OHX_SECRET_KEY must be base64 of at least 32 bytes")
		}
		return k, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "secret.key")
	if b, err := os.ReadFile(path); err == nil {
		k, err := base64.StdEncoding.DecodeString(string(b))
		if err != nil || len(k) < 32 {
			return nil, fmt.Errorf("%s is corrupt", path)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(k)); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key file: %w", err)
	}
	return k, f.Close()
}

// cacheBytes maps OHX_RESULT_CACHE and OHX_RESULT_CACHE_BYTES (0: off) to api.Config.CacheBytes
// (negative: off).
func cacheBytes(cfg Config) int64 {
	if cfg.ResultCache == "off" || cfg.ResultCacheBytes == 0 {
		return -1
	}
	return int64(cfg.ResultCacheBytes)
}
