package providers

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the resilient clients. Every client registers the same collectors (labelled by
// provider), so several clients can share one registry.
type metrics struct {
	calls     *prometheus.CounterVec   // logical Calls: provider, endpoint, outcome (ok|cached|error)
	errors    *prometheus.CounterVec   // failed logical Calls: provider, endpoint, kind
	requests  *prometheus.CounterVec   // HTTP attempts sent to the vendor: provider, endpoint, outcome
	duration  *prometheus.HistogramVec // HTTP attempt latency: provider, endpoint
	retries   *prometheus.CounterVec   // provider, endpoint
	throttled *prometheus.CounterVec   // throttled vendor answers: provider, scope (app|user)
	breaker   *prometheus.GaugeVec     // provider: 0 closed, 1 half-open, 2 open
	cacheHits *prometheus.CounterVec   // provider, endpoint (answers from the cache or a shared in-flight call)
	cacheMiss *prometheus.CounterVec   // provider, endpoint
	responses *prometheus.CounterVec   // HTTP attempts by the vendor's status: provider, status (statusLabel)
}

const metricsNamespace, metricsSubsystem = "ohx", "provider"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	}
	m := &metrics{
		calls:    counter("calls_total", "Logical vendor calls by outcome (ok, cached, error).", "provider", "endpoint", "outcome"),
		errors:   counter("errors_total", "Failed logical vendor calls by error kind (auth, throttled, transient, permanent, breaker_open, canceled).", "provider", "endpoint", "kind"),
		requests: counter("requests_total", "HTTP requests sent to the vendor (attempts, retries included) by outcome.", "provider", "endpoint", "outcome"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "request_duration_seconds",
			Help: "Latency of HTTP requests to the vendor.", Buckets: prometheus.DefBuckets,
		}, []string{"provider", "endpoint"}),
		retries:   counter("retries_total", "Retried vendor requests.", "provider", "endpoint"),
		throttled: counter("throttled_total", "Throttled vendor answers (HTTP 429, Withings 601), by the limiter bucket they slowed down.", "provider", "scope"),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("breaker_state",
			"Circuit breaker state per vendor: 0 closed, 1 half-open, 2 open.")), []string{"provider"}),
		cacheHits: counter("cache_hits_total", "Calls answered from the response cache or by an identical call in flight.", "provider", "endpoint"),
		cacheMiss: counter("cache_misses_total", "Cacheable calls that went to the vendor.", "provider", "endpoint"),
		responses: counter("responses_total", "HTTP requests sent to the vendor by the vendor's answer: ok, the failure's status "+
			"(an HTTP status such as 429 or 503, or a status in the vendor's envelope such as Withings 601), or none when no answer came.", "provider", "status"),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.calls, err = register(reg, m.calls); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.throttled, err = register(reg, m.throttled); err != nil {
		return nil, err
	}
	if m.breaker, err = register(reg, m.breaker); err != nil {
		return nil, err
	}
	if m.cacheHits, err = register(reg, m.cacheHits); err != nil {
		return nil, err
	}
	if m.cacheMiss, err = register(reg, m.cacheMiss); err != nil {
		return nil, err
	}
	if m.responses, err = register(reg, m.responses); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector another client registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// statusLabel is the status label of one attempt's outcome: "ok", the vendor's status of a
// failure (UpstreamError.Status: the HTTP status, or the status of the vendor's envelope such
// as Withings 601 inside an HTTP 200), "none" when no answer came (a network error, an attempt
// timeout, a cancelled call), or "other" for a failure without a status. Statuses are a small
// set per vendor, so the label's values stay bounded.
func statusLabel(err error) string {
	if err == nil {
		return "ok"
	}
	var ue *UpstreamError
	if errors.As(err, &ue) {
		if ue.Status > 0 && ue.Status < 10000 {
			return strconv.Itoa(ue.Status)
		}
		if ue.Status == 0 && ue.Kind == KindTransient {
			return "none"
		}
		return "other"
	}
	return "none"
}
