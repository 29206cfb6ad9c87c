package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// scenario is one kind of request, measured against bare and ohx.
type scenario struct {
	Name   string
	Slug   string
	URIs   []string
	Accept string
	// Ratio is the least ohx/bare throughput ratio wanted (0: reported only); P99 the most
	// latency wanted at the 99th percentile (0: reported only).
	Ratio float64
	P99   time.Duration
}

type phase struct {
	name      string
	cache     bool
	scenarios []scenario
}

func phases(cfg config) []phase {
	rng := mrand.New(mrand.NewPCG(1, 2))
	pat := func() int { return rng.IntN(cfg.patients) }
	// The search EHRs poll: one patient's newest Observations of one code since a date.
	hot := func(code string) string {
		return fmt.Sprintf("/fhir/Observation?patient=p%d&code=http://loinc.org|%s&date=ge2026-01-01&_sort=-date&_count=50", pat(), code)
	}
	var search, searchR4, readMany, lastn, chained, searchCached []string
	for range cfg.targets {
		search = append(search, hot("29463-7"))
		searchR4 = append(searchR4, hot("29463-7"))
		readMany = append(readMany, fmt.Sprintf("/fhir/Observation/o-%d-%d", pat(), rng.IntN(cfg.perPat)))
		lastn = append(lastn, fmt.Sprintf("/fhir/Observation/$lastn?patient=p%d&category=vital-signs&max=3", pat()))
		chained = append(chained, fmt.Sprintf("/fhir/Observation?patient.identifier=%s|mrn-%d&code=http://loinc.org|8867-4&_count=20", url.QueryEscape(mrnSystem), pat()))
		searchCached = append(searchCached, hot("8867-4"))
	}
	const r4 = "application/fhir+json; fhirVersion=4.0"
	return []phase{
		{name: "result cache off", scenarios: []scenario{
			{Name: "search patient+code+date, _count=50, random patients", Slug: "search", URIs: search, Ratio: 0.30, P99: 10 * time.Millisecond},
			{Name: "read by id, many ids", Slug: "read-many", URIs: readMany, Ratio: 0.70, P99: 10 * time.Millisecond},
			{Name: "read by id, one id", Slug: "read-one", URIs: readMany[:1], Ratio: 0.70},
			{Name: "search as R4 (Accept fhirVersion=4.0)", Slug: "search-r4", URIs: searchR4, Accept: r4},
			{Name: "$lastn max=3, random patients", Slug: "lastn", URIs: lastn},
			{Name: "chained patient.identifier search", Slug: "chained", URIs: chained},
			{Name: "/fhir/metadata", Slug: "metadata", URIs: []string{"/fhir/metadata"}},
		}},
		{name: "result cache on", cache: true, scenarios: []scenario{
			{Name: "same search repeated (EHR polling)", Slug: "search-repeated", URIs: search[:1], Ratio: 0.70},
			{Name: "search, random patients (fills the cache)", Slug: "search-cached", URIs: searchCached},
		}},
	}
}

// outcome is one scenario's figures.
type outcome struct {
	Name       string  `json:"name"`
	Slug       string  `json:"slug"`
	Phase      string  `json:"phase"`
	BareRPS    float64 `json:"bare_req_per_s"`
	OhxRPS     float64 `json:"ohx_req_per_s"`
	Ratio      float64 `json:"ratio"`
	RatioGoal  float64 `json:"ratio_target,omitempty"`
	P50ms      float64 `json:"ohx_p50_ms"`
	P99ms      float64 `json:"ohx_p99_ms"`
	P99Goal    float64 `json:"ohx_p99_target_ms,omitempty"`
	BareP99ms  float64 `json:"bare_p99_ms"`
	Requests   int     `json:"ohx_requests"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	BodyBytes  int     `json:"mean_body_bytes"`
}

func runPhase(ctx context.Context, cfg config, ds *dataset, ph phase, res *results) error {
	if cfg.only != nil {
		ph.scenarios = slices.DeleteFunc(ph.scenarios, func(sc scenario) bool { return !cfg.only[sc.Slug] })
		if len(ph.scenarios) == 0 {
			return nil
		}
	}
	fmt.Printf("\n%s: starting ohx serve (OHX_RESULT_CACHE=%s)\n", ph.name, onOff(ph.cache))
	srv, err := startOhx(ctx, cfg, ds.Dir, ph.cache)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Stop()
		}
	}()
	for _, sc := range ph.scenarios {
		// A fresh token per scenario: tokens are short-lived, as in production.
		tok, err := srv.token(ctx, cfg)
		if err != nil {
			return err
		}
		o, err := measure(ctx, cfg, srv, sc, tok)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		o.Phase = ph.name
		res.Scenarios = append(res.Scenarios, o)
		fmt.Printf("  %-52s bare %8.0f/s  ohx %8.0f/s  ratio %.2f  p50 %.2f ms  p99 %.2f ms  errors %d\n",
			o.Name, o.BareRPS, o.OhxRPS, o.Ratio, o.P50ms, o.P99ms, o.Errors)
	}
	if cfg.profile {
		if err := srv.save(ctx, "heap", filepath.Join(cfg.out, "heap-"+slug(ph.name)+".pprof")); err != nil {
			return err
		}
	}
	stopped = true
	peak, err := srv.Stop()
	res.Servers = append(res.Servers, serverRun{Phase: ph.name, PeakRSS: peak})
	fmt.Printf("%s: ohx serve peak RSS %.1f MB\n", ph.name, float64(peak)/(1<<20))
	return err
}

func slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// measure records ohx's answers, serves them from a bare handler and alternates rounds.
func measure(ctx context.Context, cfg config, srv *ohxServer, sc scenario, tok string) (outcome, error) {
	o := outcome{Name: sc.Name, Slug: sc.Slug, RatioGoal: sc.Ratio, P99Goal: ms(sc.P99)}
	bodies := bareBodies{Bodies: map[string][]byte{}}
	total := 0
	for _, u := range sc.URIs {
		body, ct, err := get(ctx, srv.origin+u, tok, sc.Accept)
		if err != nil {
			return o, err
		}
		bodies.Bodies[u], bodies.ContentType = body, ct
		total += len(body)
	}
	o.BodyBytes = total / len(sc.URIs)
	bare, err := startBare(cfg.dir, bodies)
	if err != nil {
		return o, err
	}
	defer bare.Stop()
	var bareRPS, ohxRPS []float64
	var ohxLat, bareLat []time.Duration
	for round := range cfg.rounds {
		b := attack(bare.origin, sc, tok, cfg)
		var prof chan error
		if cfg.profile && round == 0 {
			prof = make(chan error, 1)
			secs := max(int(cfg.duration.Seconds())-1, 1)
			go func() {
				prof <- srv.save(ctx, fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(cfg.out, "cpu-"+sc.Slug+".pprof"))
			}()
		}
		m := attack(srv.origin, sc, tok, cfg)
		if prof != nil {
			if err := <-prof; err != nil {
				return o, err
			}
		}
		bareRPS, ohxRPS = append(bareRPS, b.rps), append(ohxRPS, m.rps)
		bareLat, ohxLat = append(bareLat, b.lat...), append(ohxLat, m.lat...)
		o.Errors += b.errors + m.errors
		o.Requests += len(m.lat) + m.errors
		if o.FirstError == "" {
			o.FirstError = m.firstError + b.firstError
		}
	}
	o.BareRPS, o.OhxRPS = mean(bareRPS), mean(ohxRPS)
	if o.BareRPS > 0 {
		o.Ratio = o.OhxRPS / o.BareRPS
	}
	o.P50ms, o.P99ms, o.BareP99ms = ms(percentile(ohxLat, 0.50)), ms(percentile(ohxLat, 0.99)), ms(percentile(bareLat, 0.99))
	return o, nil
}

// httpClient is the benchmark's client outside the measured rounds: a server that stops
// answering fails the run instead of hanging it.
var httpClient = &http.Client{Timeout: 30 * time.Second}

func get(ctx context.Context, u, tok, accept string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, "", err
	}
	if res.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s: %.300s", u, res.Status, b)
	}
	return b, res.Header.Get("Content-Type"), nil
}

type round struct {
	rps        float64
	lat        []time.Duration
	errors     int
	firstError string
}

// attack is a closed loop over the scenario's requests for one round: each connection sends its
// next request as soon as the previous answer has been read, as wrk does. The generator is kept
// lean (bodies discarded into a reused buffer, latencies into per-connection slices) so that it
// takes as little of the machine as it can from either server.
func attack(origin string, sc scenario, tok string, cfg config) round {
	tr := &http.Transport{MaxIdleConns: cfg.workers, MaxIdleConnsPerHost: cfg.workers, MaxConnsPerHost: cfg.workers,
		DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	reqs := make([]*http.Request, len(sc.URIs))
	for i, u := range sc.URIs {
		reqs[i], _ = http.NewRequest(http.MethodGet, origin+u, nil)
		reqs[i].Header.Set("Authorization", "Bearer "+tok)
		if sc.Accept != "" {
			reqs[i].Header.Set("Accept", sc.Accept)
		}
	}
	var next atomic.Uint64
	type worker struct {
		lat    []time.Duration
		errors int
		first  string
	}
	ws := make([]worker, cfg.workers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(cfg.duration)
	for w := range ws {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			w.lat = make([]time.Duration, 0, 1<<15)
			buf := make([]byte, 64<<10)
			// Each connection sends its own copies: a request is not shared while in flight.
			mine := make([]*http.Request, len(reqs))
			for i, r := range reqs {
				mine[i] = r.Clone(context.Background())
			}
			for t0 := time.Now(); t0.Before(end); t0 = time.Now() {
				req := mine[int(next.Add(1)-1)%len(mine)]
				res, err := client.Do(req)
				if err == nil {
					_, err = io.CopyBuffer(io.Discard, onlyReader{res.Body}, buf)
					res.Body.Close()
					if err == nil && res.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", res.Status)
					}
				}
				if err != nil {
					w.errors++
					if w.first == "" {
						w.first = fmt.Sprintf("%s: %v", req.URL.RequestURI(), err)
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		}(&ws[w])
	}
	wg.Wait()
	el := time.Since(start)
	var r round
	for _, w := range ws {
		r.lat = append(r.lat, w.lat...)
		r.errors += w.errors
		if r.firstError == "" {
			r.firstError = w.first
		}
	}
	r.rps = float64(len(r.lat)) / el.Seconds()
	return r
}

// onlyReader hides the body's WriterTo so that io.CopyBuffer uses the reused buffer.
type onlyReader struct{ io.Reader }

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(int(q*float64(len(d))), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
