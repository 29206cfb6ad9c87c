// Package api is the HTTP face of ohx: the gin router, middleware, the FHIR REST handlers and the
// single place where errors become OperationOutcomes.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openhealthexchange/ohx/api/authz"
	"github.com/openhealthexchange/ohx/capability"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Config configures the HTTP API.
type Config struct {
	// BaseURL is the public FHIR base, e.g. "https://ohx.example/fhir" (no trailing slash).
	BaseURL string
	// Version is the software version reported in the CapabilityStatement.
	Version string
	// DefaultCount and MaxCount bound search page sizes (defaults 50 and 1000).
	DefaultCount, MaxCount int
	// CursorKey signs paging cursors; at least 32 random bytes.
	CursorKey []byte
	// MaxBodyBytes limits request bodies (default 1 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds the work for one request (default 30 s).
	RequestTimeout time.Duration
	// CacheBytes bounds the memory of the result cache of searches and reads (0: default
	// DefaultCacheBytes; negative: off). When full, the least recently used results are evicted;
	// a result larger than CacheBytes/16 is not kept. The cache is used only with stores that
	// implement store.ChangeTracker.
	CacheBytes int64
	// CacheEntries is the former entry-count bound of the cache.
	//
	// Deprecated: the cache is bounded by CacheBytes; a negative CacheEntries still turns it
	// off, other values are ignored.
	CacheEntries int
	// CacheTTL bounds how long an unchanged result is kept (default 5 min): an expired result is
	// never served.
	CacheTTL time.Duration
	// Auth verifies access tokens. Nil disables enforcement, which is allowed only for local
	// experiments (OHX_AUTH=off): the server then warns at start and on /readyz.
	Auth Authenticator
	// SMARTConfiguration is the document served at [base]/.well-known/smart-configuration.
	SMARTConfiguration []byte
	// Security is the CapabilityStatement's rest.security (SMART service and oauth-uris).
	Security *fhir.CapabilitySecurity
	// AuthRoutes, if set, mounts the built-in authorization server's endpoints.
	AuthRoutes func(r gin.IRouter)
	// CORSOrigins lists the origins (scheme://host[:port]) whose scripts may call the FHIR API,
	// the connect API and CORSPaths; nil or a list holding "*" allows any origin. Credentials
	// (cookies) are never allowed cross-origin: these endpoints take bearer tokens and PKCE.
	CORSOrigins []string
	// CORSPaths lists further exact paths that get CORS: the built-in authorization server's
	// endpoints for scripts (authserver.Server.CORSPaths), never its cookie-bearing pages.
	CORSPaths []string
	// TrustedProxies lists the reverse proxies (IPs or CIDRs) whose X-Forwarded-For and
	// X-Real-IP are believed for the client address (sign-in throttling, logs); none by default,
	// so the address is the TCP peer's and cannot be forged with a header.
	TrustedProxies []string
	// Connect, if set, enables the vendor account linking endpoints under /connect.
	Connect *ConnectConfig
	// Webhooks, if set, enables the vendor notification endpoints under /webhooks.
	Webhooks *WebhookConfig
	// Practitioners, if set, serves GET [base]/Practitioner/{id}: the practitioner users of the
	// built-in authorization server, so that a token's fhirUser can be read (authserver.Server).
	Practitioners Practitioners
	// App, if set, serves the built-in SMART app under /app/ (viewer.Handler): static files with
	// their own Content-Security-Policy, no CORS, no token (the app gets its token by launching).
	App http.Handler
	// ReadThrough, if set, fills uncovered windows of a patient's data from the vendors before
	// a patient-scoped Observation search is answered (readthrough.go).
	ReadThrough ReadThrough
	// Admin configures the operator API under /admin (admin.go), which is always mounted and
	// needs an admin token; nil: queue and dead letters only, no connections or syncs.
	Admin *AdminConfig
}

// DefaultCacheBytes is the result cache's memory budget when Config.CacheBytes is 0.
const DefaultCacheBytes = 64 << 20

// Server holds the API's dependencies.
type Server struct {
	cfg       Config
	store     store.Store
	reg       *search.Registry
	pol       *authz.Policy
	log       *slog.Logger
	engine    *gin.Engine
	cs        *fhir.CapabilityStatement
	csJSON    []byte
	cs4JSON   []byte
	metrics   *metrics
	cache     *resultCache
	auth      Authenticator
	ridPrefix string
	ridSeq    atomic.Uint64
	// createMu serialises conditional creates and updates (and transactions) in this process,
	// so that two concurrent registrations matching the same criteria cannot both create a
	// Patient. Criteria of exactly one identifier hold across instances too: the store makes
	// the create atomic (store.Store.CreateUnique, TxOp.UniqueSystem).
	createMu sync.Mutex
}

// New builds the router. reg must be the registry the store indexes with; promReg receives the
// HTTP metrics (nil: a private registry).
func New(cfg Config, st store.Store, reg *search.Registry, log *slog.Logger, promReg *prometheus.Registry) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultCount <= 0 {
		cfg.DefaultCount = 50
	}
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = 1000
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if len(cfg.CursorKey) < 32 {
		return nil, errors.New("api: CursorKey must be at least 32 bytes")
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.CacheEntries < 0 {
		cfg.CacheBytes = -1
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	if promReg == nil {
		promReg = prometheus.NewRegistry()
	}
	var rb [6]byte
	rand.Read(rb[:])
	s := &Server{ridPrefix: hex.EncodeToString(rb[:]) + "-", cfg: cfg, store: st, reg: reg, pol: authz.New(reg, st), log: log,
		metrics: newMetrics(promReg), cache: newResultCache(st, cfg.CacheTTL, cfg.CacheBytes, promReg), auth: cfg.Auth}
	s.cs = capability.Build(reg, capability.Config{
		BaseURL: cfg.BaseURL, Version: cfg.Version, DefaultCount: cfg.DefaultCount, MaxCount: cfg.MaxCount, Started: time.Now(),
		Security: cfg.Security, Practitioners: cfg.Practitioners != nil,
		MaxBundleEntries: maxBundleEntries, Transactions: isTransactor(st),
	})
	if err := s.encodeCapability(); err != nil {
		return nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	// gin believes X-Forwarded-For from any peer unless told otherwise
	// (https://pkg.go.dev/github.com/gin-gonic/gin#Engine.SetTrustedProxies).
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("api: TrustedProxies: %w", err)
	}
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	cp, err := newCORS(cfg.CORSOrigins, cfg.CORSPaths, cfg.Connect != nil)
	if err != nil {
		return nil, err
	}
	e.Use(s.requestID, s.recover, s.accessLog, s.metrics.middleware, s.limits, cp.handle)
	e.NoRoute(s.wrap(func(c *gin.Context) error {
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "no such endpoint")
	}))
	e.NoMethod(s.wrap(func(c *gin.Context) error {
		return fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "method %s is not allowed here", c.Request.Method)
	}))
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(promReg, promhttp.HandlerOpts{})))
	if s.auth == nil {
		log.Warn("authentication is disabled: every FHIR request is served without a token (OHX_AUTH=off); never do this with real data")
	}
	if cfg.AuthRoutes != nil {
		cfg.AuthRoutes(e)
	}
	if err := s.connectRoutes(e); err != nil {
		return nil, err
	}
	s.webhookRoutes(e)
	s.adminRoutes(e)
	if cfg.App != nil {
		app := gin.WrapH(cfg.App)
		e.GET("/app", app) // redirected to /app/, the app's redirect URI
		e.GET("/app/*file", app)
		e.HEAD("/app/*file", app)
	}
	// Discovery is JSON whatever the Accept header says (https://hl7.org/fhir/smart-app-launch/conformance.html).
	for _, base := range []string{"/fhir", "/fhir/r4"} {
		e.GET(base+"/.well-known/smart-configuration", s.smartConfiguration)
	}
	s.fhirRoutes(e.Group("/fhir", s.negotiate(R5)))
	s.fhirRoutes(e.Group("/fhir/r4", s.negotiate(R4)))
	s.engine = e
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

func (s *Server) encodeCapability() error {
	var err error
	if s.csJSON, err = json.Marshal(s.cs); err != nil {
		return err
	}
	// The R4 statement describes the R4 base, where the links of R4 answers point.
	cs4 := *s.cs
	cs4.URL = s.cfg.BaseURL + "/r4/metadata"
	if cs4.Implementation != nil {
		impl := *cs4.Implementation
		impl.URL = s.cfg.BaseURL + "/r4"
		cs4.Implementation = &impl
	}
	s.cs4JSON, err = fhir.MarshalR4(&cs4, fhir.R4Options{})
	return err
}

func (s *Server) fhirRoutes(g *gin.RouterGroup) {
	g.GET("/metadata", s.metadata)
	g.GET("/$versions", s.handle(s.versions))
	a, h := s.authenticate, s.handle
	g.GET("/:type", a, h(s.search))
	g.POST("/:type/_search", a, h(s.search))
	g.GET("/:type/:id", a, h(s.read))
	g.GET("/:type/:id/:sub", a, h(s.instanceOperation)) // Patient compartment, $everything (compartment.go)
	g.GET("/:type/:id/_history", a, h(s.history))       // history.go
	g.GET("/:type/:id/_history/:vid", a, h(s.vread))    // history.go
	g.GET("/Observation/$lastn", a, h(s.lastN))         // lastn.go
	g.POST("/:type", a, h(s.create))
	g.POST("/:type/:id/:sub/_search", a, h(s.instanceOperation))
	g.PUT("/:type/:id", a, h(s.update))
	g.PUT("/:type", a, h(s.conditionalUpdate))
	g.POST("", a, h(s.bundleTx)) // batch and transaction (bundle_tx.go)
	for _, m := range []string{http.MethodDelete, http.MethodPatch} {
		g.Handle(m, "/:type/:id", a, h(s.notAllowed))
		g.Handle(m, "/:type", a, h(s.notAllowed))
	}
}

func (s *Server) smartConfiguration(c *gin.Context) {
	if s.cfg.SMARTConfiguration == nil {
		s.fail(c, fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "SMART authorization is not configured (OHX_AUTH=off)"))
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json; charset=utf-8", s.cfg.SMARTConfiguration)
}

func (s *Server) ready(c *gin.Context) {
	// A read of an id that cannot exist exercises the store end to end.
	_, err := s.store.Read(c.Request.Context(), "Patient", "readyz-probe")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("readiness probe failed", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "store unavailable"})
		return
	}
	if s.auth == nil {
		c.JSON(http.StatusOK, gin.H{"status": "ready", "warning": "authentication is disabled (OHX_AUTH=off)"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// --- middleware ---

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

const ctxRequestID = "ohx.requestID"

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// requestID accepts a well-formed X-Request-ID from a proxy or makes one.
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if id == "" || !requestIDRE.MatchString(id) {
		// Unique, not secret: a per-process random prefix and a counter (no syscall per request).
		id = s.ridPrefix + strconv.FormatUint(s.ridSeq.Add(1), 36)
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-ID", id)
	c.Next()
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic serving request", "request_id", requestID(c), "panic", r)
			s.fail(c, errors.New("panic"))
		}
	}()
	c.Next()
}

// accessLog logs one line per request: route template, never the query string or body (they may
// carry patient identifiers and names).
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.log.Info("http", "request_id", requestID(c), "method", c.Request.Method, "route", c.FullPath(),
		"status", c.Writer.Status(), "bytes", c.Writer.Size(), "dur_ms", strconv.FormatFloat(float64(time.Since(start).Microseconds())/1000, 'f', 3, 64))
}

// limits bounds the body size and the time a request may take.
func (s *Server) limits(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}
