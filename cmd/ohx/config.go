package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// Config is the whole configuration of ohx. Every field can be set by an OHX_… environment
// variable or by the flag of the same name (flags win).
type Config struct {
	Addr             string        // OHX_ADDR: listen address
	BaseURL          string        // OHX_BASE_URL: public FHIR base URL
	DataDir          string        // OHX_DATA_DIR: embedded store and key files
	MongoURI         string        // OHX_MONGODB_URI: use MongoDB instead of the embedded store
	MongoDatabase    string        // OHX_MONGODB_DATABASE
	HistoryVersions  int           // OHX_HISTORY_VERSIONS: versions kept per resource, the current one included (0: all)
	QueueSync        string        // OHX_QUEUE_SYNC: durability of the embedded job queue, full (default: survives power loss) or normal (survives a killed process)
	LogLevel         string        // OHX_LOG_LEVEL: debug, info, warn, error
	LogFormat        string        // OHX_LOG_FORMAT: json or text
	DefaultCount     int           // OHX_DEFAULT_COUNT: search page size
	MaxCount         int           // OHX_MAX_COUNT: largest page size
	MaxBodyBytes     int64         // OHX_MAX_BODY_BYTES
	RequestTimeout   time.Duration // OHX_REQUEST_TIMEOUT
	ShutdownTimeout  time.Duration // OHX_SHUTDOWN_TIMEOUT
	SecretKey        string        // OHX_SECRET_KEY: base64 key material; generated into DataDir when empty
	Auth             string        // OHX_AUTH: "on" (default) or "off" (local experiments only)
	AuthIssuer       string        // OHX_AUTH_ISSUER: an external SMART/OIDC issuer replacing the built-in one
	AuthPatientClaim string        // OHX_AUTH_PATIENT_CLAIM: claim with the patient id in external tokens
	RevocationCache  time.Duration // OHX_REVOCATION_CACHE: how long "not revoked" is remembered (default 30s; 0: ask the store every request)
	CORSOrigins      string        // OHX_CORS_ORIGINS: comma-separated origins whose scripts may call the API; "*" (default) any
	TrustedProxies   string        // OHX_TRUSTED_PROXIES: comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed
	ResultCache      string        // OHX_RESULT_CACHE: "on" (default) or "off", the result cache of searches and reads
	ResultCacheBytes int           // OHX_RESULT_CACHE_BYTES (formerly OHX_CACHE_BYTES): its memory budget (default 64 MiB; 0: off)
	PprofAddr        string        // OHX_PPROF_ADDR: loopback address serving net/http/pprof (default: off)

	WithingsClientID     string // OHX_WITHINGS_CLIENT_ID: Withings is offered only when set
	WithingsClientSecret string // OHX_WITHINGS_CLIENT_SECRET
	WithingsRedirectURL  string // OHX_WITHINGS_REDIRECT_URL: default ORIGIN/connect/withings/callback
	WithingsAPIURL       string // OHX_WITHINGS_API_URL: default https://wbsapi.withings.net
	WithingsAuthURL      string // OHX_WITHINGS_AUTH_URL: default the Withings consent page
	WithingsKinds        string // OHX_WITHINGS_KINDS: comma-separated data kinds (default: all that map)
	WithingsRate         int    // OHX_WITHINGS_RATE: requests per minute for the whole app (default 120)

	GoogleHealthClientID      string // OHX_GOOGLEHEALTH_CLIENT_ID: the Google Health API (Fitbit devices) is offered only when set
	GoogleHealthClientSecret  string // OHX_GOOGLEHEALTH_CLIENT_SECRET
	GoogleHealthRedirectURL   string // OHX_GOOGLEHEALTH_REDIRECT_URL: default ORIGIN/connect/googlehealth/callback
	GoogleHealthWebhookSecret string // OHX_GOOGLEHEALTH_WEBHOOK_SECRET: the whole Authorization header value Google sends with notifications
	GoogleHealthAPIURL        string // OHX_GOOGLEHEALTH_API_URL: default https://health.googleapis.com
	GoogleHealthAuthURL       string // OHX_GOOGLEHEALTH_AUTH_URL: default Google's consent page
	GoogleHealthTokenURL      string // OHX_GOOGLEHEALTH_TOKEN_URL: default https://oauth2.googleapis.com/token
	GoogleHealthRevokeURL     string // OHX_GOOGLEHEALTH_REVOKE_URL: default https://oauth2.googleapis.com/revoke
	GoogleHealthKinds         string // OHX_GOOGLEHEALTH_KINDS: comma-separated data kinds (default: all that map)

	FitbitClientID         string // OHX_FITBIT_CLIENT_ID: the legacy Fitbit Web API is offered only when set
	FitbitClientSecret     string // OHX_FITBIT_CLIENT_SECRET: also the key of the notification signatures
	FitbitRedirectURL      string // OHX_FITBIT_REDIRECT_URL: default ORIGIN/connect/fitbit/callback
	FitbitVerificationCode string // OHX_FITBIT_VERIFICATION_CODE: the subscriber verification code
	FitbitSubscriberID     string // OHX_FITBIT_SUBSCRIBER_ID: the subscriber of the subscriptions ohx creates
	FitbitAPIURL           string // OHX_FITBIT_API_URL: default https://api.fitbit.com
	FitbitAuthURL          string // OHX_FITBIT_AUTH_URL: default the Fitbit consent page
	FitbitKinds            string // OHX_FITBIT_KINDS: comma-separated data kinds (default: all that map)
	FitbitRate             int    // OHX_FITBIT_RATE: requests per user and hour (default 150)

	BackfillDays     int    // OHX_BACKFILL_DAYS: initial backfill after connecting (default 30)
	ConnectRedirects string // OHX_CONNECT_REDIRECTS: comma-separated deep links the connect flow may end on

	// ReadThroughBudget (OHX_READTHROUGH_BUDGET, default 3s; 0: off) is the longest a patient's
	// Observation search waits for the vendor sync of a window not synced yet.
	ReadThroughBudget time.Duration

	// Upkeep of the sync pipeline, each pass once per period across every instance sharing the
	// store (0 turns a pass off).
	ReconcileInterval  time.Duration // OHX_RECONCILE_INTERVAL: period of the reconciliation and subscription repair (default 6h)
	ReconcileDays      int           // OHX_RECONCILE_DAYS: days each reconciliation reads again (default 7; 0: an incremental fetch from the cursors)
	DeviceSyncInterval time.Duration // OHX_DEVICE_SYNC_INTERVAL: period of the device re-sync (default 24h)
	TokenRefreshAhead  time.Duration // OHX_TOKEN_REFRESH_AHEAD: vendor access tokens expiring within it are refreshed proactively (default 15m)

	// Publishing synced resources to an EHR (off unless PublishURL is set; publish.go).
	PublishURL           string // OHX_PUBLISH_URL: FHIR base URL of the EHR that receives what ohx syncs
	PublishFHIRVersion   string // OHX_PUBLISH_FHIR_VERSION: R4 (default) or R5
	PublishPatientSystem string // OHX_PUBLISH_PATIENT_SYSTEM: identifier system by which the EHR knows patients (default: a Patient's first identifier)
	PublishTokenURL      string // OHX_PUBLISH_TOKEN_URL: the EHR's OAuth token endpoint
	PublishClientID      string // OHX_PUBLISH_CLIENT_ID
	PublishClientSecret  string // OHX_PUBLISH_CLIENT_SECRET: client credentials with a secret
	PublishKeyFile       string // OHX_PUBLISH_KEY_FILE: PEM private key (RSA or EC P-384) for SMART Backend Services
	PublishKeyID         string // OHX_PUBLISH_KEY_ID: kid of the client assertions (default: the key's JWK thumbprint)
	PublishScope         string // OHX_PUBLISH_SCOPE: space-separated scopes (default: write scopes of the published types)

	// IdentifierNamespace (OHX_IDENTIFIER_NAMESPACE, default fhir.DefaultNamespace) is the base
	// of the identifier systems and meta.source of synced resources. It is never derived from
	// BaseURL, so that moving the server to another host name re-identifies nothing.
	IdentifierNamespace fhir.Namespace

	// pipelineClock is the sync pipeline's clock (nil: time.Now); no setting: end-to-end tests
	// shift it to the days of their recorded vendor payloads.
	pipelineClock func() time.Time
	// cpus is the CPUs the process may use, which size the embedded store's read pool (0: the
	// store's default, GOMAXPROCS); no setting: `ohx serve` records it before tuneProcs.
	cpus int
}

func defaultConfig() Config {
	return Config{
		Addr:             ":8080",
		DataDir:          "data",
		MongoDatabase:    "ohx",
		LogLevel:         "info",
		LogFormat:        "json",
		DefaultCount:     50,
		MaxCount:         1000,
		MaxBodyBytes:     1 << 20,
		RequestTimeout:   30 * time.Second,
		ShutdownTimeout:  20 * time.Second,
		Auth:             "on",
		WithingsRate:     120,
		FitbitRate:       150,
		BackfillDays:     30,
		AuthPatientClaim: "patient",
		RevocationCache:  30 * time.Second,
		CORSOrigins:      "*",
		ResultCache:      "on",
		QueueSync:        "full",
		ResultCacheBytes: 64 << 20,

		ReadThroughBudget: 3 * time.Second,

		ReconcileInterval:  6 * time.Hour,
		ReconcileDays:      7,
		DeviceSyncInterval: 24 * time.Hour,
		TokenRefreshAhead:  15 * time.Minute,

		IdentifierNamespace: fhir.DefaultNamespace,
	}
}

// parseConfig reads env, then flags.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flagOf := map[string]string{} // OHX_… variable → its flag
	str := func(p *string, flagName, env, usage string) {
		flagOf[env] = flagName
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, flagName, *p, usage+" ("+env+")")
	}
	// secret is str for values -h must never print (its defaults come from the environment).
	secret := func(p *string, flagName, env, usage string) {
		flagOf[env] = flagName
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.Var(secretFlag{p}, flagName, usage+" ("+env+")")
	}
	var errs []string
	num := func(p *int, flagName, env, usage string) {
		flagOf[env] = flagName
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q is not a whole number", env, v))
			}
			*p = n
		}
		fs.IntVar(p, flagName, *p, usage+" ("+env+")")
	}
	dur := func(p *time.Duration, flagName, env, usage string) {
		flagOf[env] = flagName
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q is not a duration (like 30s or 5m)", env, v))
			}
			*p = d
		}
		fs.DurationVar(p, flagName, *p, usage+" ("+env+")")
	}
	str(&cfg.Addr, "addr", "OHX_ADDR", "listen address")
	str(&cfg.BaseURL, "base-url", "OHX_BASE_URL", "public FHIR base URL (default http://localhost:PORT/fhir)")
	namespace := string(cfg.IdentifierNamespace)
	str(&namespace, "identifier-namespace", "OHX_IDENTIFIER_NAMESPACE", "base URI of the identifier systems and meta.source of synced resources; set once before the first sync (resource ids derive from it)")
	str(&cfg.DataDir, "data-dir", "OHX_DATA_DIR", "directory of the embedded store and key files")
	secret(&cfg.MongoURI, "mongodb-uri", "OHX_MONGODB_URI", "MongoDB connection URI; the embedded SQLite store is used when empty")
	str(&cfg.MongoDatabase, "mongodb-database", "OHX_MONGODB_DATABASE", "MongoDB database name")
	num(&cfg.HistoryVersions, "history-versions", "OHX_HISTORY_VERSIONS", "versions of each resource kept for vread and _history, the current one included; 0 keeps all")
	str(&cfg.QueueSync, "queue-sync", "OHX_QUEUE_SYNC", "durability of the embedded store's job queue: full syncs every commit to disk (an acknowledged webhook survives a power loss), normal only survives the process being killed")
	str(&cfg.LogLevel, "log-level", "OHX_LOG_LEVEL", "log level: debug, info, warn, error")
	str(&cfg.LogFormat, "log-format", "OHX_LOG_FORMAT", "log format: json or text")
	num(&cfg.DefaultCount, "default-count", "OHX_DEFAULT_COUNT", "default search page size")
	num(&cfg.MaxCount, "max-count", "OHX_MAX_COUNT", "maximum search page size")
	maxBody := int(cfg.MaxBodyBytes)
	num(&maxBody, "max-body-bytes", "OHX_MAX_BODY_BYTES", "largest accepted request body")
	dur(&cfg.RequestTimeout, "request-timeout", "OHX_REQUEST_TIMEOUT", "time limit for one request")
	dur(&cfg.ShutdownTimeout, "shutdown-timeout", "OHX_SHUTDOWN_TIMEOUT", "time allowed for in-flight requests at shutdown")
	secret(&cfg.SecretKey, "secret-key", "OHX_SECRET_KEY", "base64 key material for signing; generated in the data dir when empty")
	str(&cfg.Auth, "auth", "OHX_AUTH", "on, or off to serve FHIR without tokens (local experiments only)")
	str(&cfg.AuthIssuer, "auth-issuer", "OHX_AUTH_ISSUER", "external SMART/OpenID issuer URL; the built-in authorization server is used when empty")
	str(&cfg.AuthPatientClaim, "auth-patient-claim", "OHX_AUTH_PATIENT_CLAIM", "claim naming the patient in external tokens")
	dur(&cfg.RevocationCache, "revocation-cache", "OHX_REVOCATION_CACHE", "a revoked access token of the built-in server stops working within this time; 0 checks every request")
	str(&cfg.TrustedProxies, "trusted-proxies", "OHX_TRUSTED_PROXIES", "comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed (default none: the client address is the TCP peer)")
	str(&cfg.CORSOrigins, "cors-origins", "OHX_CORS_ORIGINS", "comma-separated origins (scheme://host[:port]) whose browser apps may call the API, * for any")
	str(&cfg.ResultCache, "result-cache", "OHX_RESULT_CACHE", "on or off: the result cache of searches and reads (embedded store only)")
	// OHX_CACHE_BYTES is the budget's former name: still read when the new one is not set, and
	// named in errors when it is the one set.
	cacheEnv := "OHX_RESULT_CACHE_BYTES"
	if getenv(cacheEnv) == "" && getenv("OHX_CACHE_BYTES") != "" {
		cacheEnv = "OHX_CACHE_BYTES"
	}
	num(&cfg.ResultCacheBytes, "result-cache-bytes", cacheEnv, "memory budget in bytes of the result cache (least recently used evicted first); 0 turns it off")
	fs.IntVar(&cfg.ResultCacheBytes, "cache-bytes", cfg.ResultCacheBytes, "former name of -result-cache-bytes")
	str(&cfg.PprofAddr, "pprof-addr", "OHX_PPROF_ADDR", "loopback address (like 127.0.0.1:6060) serving CPU and heap profiles at /debug/pprof/ (default off)")
	str(&cfg.WithingsClientID, "withings-client-id", "OHX_WITHINGS_CLIENT_ID", "Withings OAuth client id (Withings is offered only when set)")
	secret(&cfg.WithingsClientSecret, "withings-client-secret", "OHX_WITHINGS_CLIENT_SECRET", "Withings OAuth client secret")
	str(&cfg.WithingsRedirectURL, "withings-redirect-url", "OHX_WITHINGS_REDIRECT_URL", "Withings redirect URL (default ORIGIN/connect/withings/callback)")
	str(&cfg.WithingsAPIURL, "withings-api-url", "OHX_WITHINGS_API_URL", "Withings API base URL")
	str(&cfg.WithingsAuthURL, "withings-auth-url", "OHX_WITHINGS_AUTH_URL", "Withings consent page URL")
	str(&cfg.WithingsKinds, "withings-kinds", "OHX_WITHINGS_KINDS", "comma-separated data kinds to read from Withings (default: all that map to FHIR)")
	num(&cfg.WithingsRate, "withings-rate", "OHX_WITHINGS_RATE", "Withings requests per minute for the whole application")
	str(&cfg.GoogleHealthClientID, "googlehealth-client-id", "OHX_GOOGLEHEALTH_CLIENT_ID", "Google Health API OAuth client id (Fitbit devices through Google; offered only when set)")
	secret(&cfg.GoogleHealthClientSecret, "googlehealth-client-secret", "OHX_GOOGLEHEALTH_CLIENT_SECRET", "Google Health API OAuth client secret")
	str(&cfg.GoogleHealthRedirectURL, "googlehealth-redirect-url", "OHX_GOOGLEHEALTH_REDIRECT_URL", "Google Health redirect URL (default ORIGIN/connect/googlehealth/callback)")
	secret(&cfg.GoogleHealthWebhookSecret, "googlehealth-webhook-secret", "OHX_GOOGLEHEALTH_WEBHOOK_SECRET", "the Authorization header value the Google Health subscriber sends (notifications are refused when empty)")
	str(&cfg.GoogleHealthAPIURL, "googlehealth-api-url", "OHX_GOOGLEHEALTH_API_URL", "Google Health API base URL")
	str(&cfg.GoogleHealthAuthURL, "googlehealth-auth-url", "OHX_GOOGLEHEALTH_AUTH_URL", "Google OAuth consent page URL")
	str(&cfg.GoogleHealthTokenURL, "googlehealth-token-url", "OHX_GOOGLEHEALTH_TOKEN_URL", "Google OAuth token endpoint URL")
	str(&cfg.GoogleHealthRevokeURL, "googlehealth-revoke-url", "OHX_GOOGLEHEALTH_REVOKE_URL", "Google OAuth token revocation endpoint URL")
	str(&cfg.GoogleHealthKinds, "googlehealth-kinds", "OHX_GOOGLEHEALTH_KINDS", "comma-separated data kinds to read from the Google Health API (default: all that map to FHIR)")
	str(&cfg.FitbitClientID, "fitbit-client-id", "OHX_FITBIT_CLIENT_ID", "legacy Fitbit Web API OAuth client id (offered only when set)")
	secret(&cfg.FitbitClientSecret, "fitbit-client-secret", "OHX_FITBIT_CLIENT_SECRET", "legacy Fitbit Web API OAuth client secret (also signs notifications)")
	str(&cfg.FitbitRedirectURL, "fitbit-redirect-url", "OHX_FITBIT_REDIRECT_URL", "Fitbit redirect URL (default ORIGIN/connect/fitbit/callback)")
	secret(&cfg.FitbitVerificationCode, "fitbit-verification-code", "OHX_FITBIT_VERIFICATION_CODE", "Fitbit subscriber verification code (verification fails when empty)")
	str(&cfg.FitbitSubscriberID, "fitbit-subscriber-id", "OHX_FITBIT_SUBSCRIBER_ID", "Fitbit subscriber id of the subscriptions ohx creates (default: the app's default subscriber)")
	str(&cfg.FitbitAPIURL, "fitbit-api-url", "OHX_FITBIT_API_URL", "Fitbit Web API base URL")
	str(&cfg.FitbitAuthURL, "fitbit-auth-url", "OHX_FITBIT_AUTH_URL", "Fitbit consent page URL")
	str(&cfg.FitbitKinds, "fitbit-kinds", "OHX_FITBIT_KINDS", "comma-separated data kinds to read from Fitbit (default: all that map to FHIR)")
	num(&cfg.FitbitRate, "fitbit-rate", "OHX_FITBIT_RATE", "legacy Fitbit Web API requests per user and hour")
	dur(&cfg.ReadThroughBudget, "readthrough-budget", "OHX_READTHROUGH_BUDGET", "longest a patient's Observation search waits for the vendor sync of a window not synced yet (it is answered from the store with a warning after); 0 turns read-through off")
	num(&cfg.BackfillDays, "backfill-days", "OHX_BACKFILL_DAYS", "days of history read after a patient connects")
	dur(&cfg.ReconcileInterval, "reconcile-interval", "OHX_RECONCILE_INTERVAL", "period of the reconciliation of every connection (a re-read of recent days and a webhook subscription repair); 0 turns it off")
	num(&cfg.ReconcileDays, "reconcile-days", "OHX_RECONCILE_DAYS", "days each reconciliation reads again to catch missed webhooks; 0 reads incrementally from each data kind's sync position instead")
	dur(&cfg.DeviceSyncInterval, "device-sync-interval", "OHX_DEVICE_SYNC_INTERVAL", "period of the re-sync of every connection's devices (battery levels); 0 turns it off")
	dur(&cfg.TokenRefreshAhead, "token-refresh-ahead", "OHX_TOKEN_REFRESH_AHEAD", "vendor access tokens expiring within this time are refreshed ahead (looked for every third of it); 0 refreshes only when a sync needs the token")
	str(&cfg.ConnectRedirects, "connect-redirects", "OHX_CONNECT_REDIRECTS", "comma-separated deep links the connect flow may end on")
	publishFlags(&cfg, str, secret)
	if len(errs) > 0 {
		return cfg, fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	// Errors name what the user set: the flag when it was given, else the variable.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	setting := func(env string) string {
		if f := flagOf[env]; given[f] {
			return "-" + f
		}
		return env
	}
	cfg.MaxBodyBytes = int64(maxBody)
	if cfg.BaseURL == "" {
		port := cfg.Addr[strings.LastIndexByte(cfg.Addr, ':')+1:]
		cfg.BaseURL = "http://localhost:" + port + "/fhir"
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if u, err := url.Parse(cfg.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("config: %s %q must be an absolute http(s) URL", setting("OHX_BASE_URL"), cfg.BaseURL)
	}
	ns, err := fhir.ParseNamespace(namespace)
	if err != nil {
		return cfg, fmt.Errorf("config: %s %q: %w", setting("OHX_IDENTIFIER_NAMESPACE"), namespace, err)
	}
	cfg.IdentifierNamespace = ns
	if cfg.Auth != "on" && cfg.Auth != "off" {
		return cfg, fmt.Errorf("config: %s must be on or off", setting("OHX_AUTH"))
	}
	if cfg.HistoryVersions < 0 {
		return cfg, fmt.Errorf("config: %s must not be negative", setting("OHX_HISTORY_VERSIONS"))
	}
	if cfg.QueueSync != "full" && cfg.QueueSync != "normal" {
		return cfg, fmt.Errorf("config: %s must be full or normal", setting("OHX_QUEUE_SYNC"))
	}
	if cfg.RevocationCache < 0 {
		return cfg, fmt.Errorf("config: %s must not be negative", setting("OHX_REVOCATION_CACHE"))
	}
	if cfg.ResultCacheBytes < 0 {
		return cfg, fmt.Errorf("config: %s must not be negative", setting(cacheEnv))
	}
	if cfg.ResultCache != "on" && cfg.ResultCache != "off" {
		return cfg, fmt.Errorf("config: %s must be on or off", setting("OHX_RESULT_CACHE"))
	}
	// The search waits within its request: a budget as long as the request would answer with a
	// timeout instead of the stored data and the warning.
	if cfg.ReadThroughBudget < 0 || (cfg.RequestTimeout > 0 && cfg.ReadThroughBudget >= cfg.RequestTimeout) {
		return cfg, fmt.Errorf("config: %s is %v: need 0 (off) or a positive duration shorter than %s (%v)",
			setting("OHX_READTHROUGH_BUDGET"), cfg.ReadThroughBudget, setting("OHX_REQUEST_TIMEOUT"), cfg.RequestTimeout)
	}
	if cfg.PprofAddr != "" && !loopback(cfg.PprofAddr) {
		// Profiles show the process's internals (goroutine stacks, command line): never on a
		// network interface.
		return cfg, fmt.Errorf("config: %s %q must be a loopback address like 127.0.0.1:6060", setting("OHX_PPROF_ADDR"), cfg.PprofAddr)
	}
	// The vendor clients allow a burst of 10 requests and spread the rest over the period; a
	// budget no larger than the burst would leave nothing to spread.
	if cfg.WithingsRate <= 10 {
		return cfg, fmt.Errorf("config: %s is %d: need more than 10 requests per minute", setting("OHX_WITHINGS_RATE"), cfg.WithingsRate)
	}
	if cfg.FitbitRate <= 10 {
		return cfg, fmt.Errorf("config: %s is %d: need more than 10 requests per hour", setting("OHX_FITBIT_RATE"), cfg.FitbitRate)
	}
	// Passes are looked for every minute: a shorter period would be a period of a minute.
	for _, d := range []struct {
		env string
		v   time.Duration
	}{{"OHX_RECONCILE_INTERVAL", cfg.ReconcileInterval}, {"OHX_DEVICE_SYNC_INTERVAL", cfg.DeviceSyncInterval}} {
		if d.v != 0 && d.v < time.Minute {
			return cfg, fmt.Errorf("config: %s is %v: need 0 (off) or at least 1m", setting(d.env), d.v)
		}
	}
	if cfg.ReconcileDays < 0 {
		return cfg, fmt.Errorf("config: %s must not be negative", setting("OHX_RECONCILE_DAYS"))
	}
	// Every use of a token refreshes it within 5 minutes of its expiry anyway; a margin that
	// short would never refresh ahead.
	if cfg.TokenRefreshAhead != 0 && cfg.TokenRefreshAhead < 10*time.Minute {
		return cfg, fmt.Errorf("config: %s is %v: need 0 (off) or at least 10m", setting("OHX_TOKEN_REFRESH_AHEAD"), cfg.TokenRefreshAhead)
	}
	if err := checkPublish(&cfg, setting); err != nil {
		return cfg, err
	}
	if cfg.DefaultCount < 1 || cfg.MaxCount < cfg.DefaultCount {
		return cfg, fmt.Errorf("config: %s is %d and %s %d: need 1 <= the default page size <= the largest", setting("OHX_DEFAULT_COUNT"), cfg.DefaultCount, setting("OHX_MAX_COUNT"), cfg.MaxCount)
	}
	return cfg, nil
}

func newLogger(cfg Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("config: OHX_LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("config: OHX_LOG_FORMAT must be json or text")
}

// secretFlag is a string flag whose value is never shown: flag's -h prints a flag's current
// value as its default, which for these is a secret taken from the environment.
type secretFlag struct{ p *string }

func (f secretFlag) String() string { return "" }

func (f secretFlag) Set(v string) error {
	*f.p = v
	return nil
}

// commaList splits a comma-separated setting, dropping blanks.
func commaList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// loopback reports whether addr (host:port) listens on a loopback interface only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
