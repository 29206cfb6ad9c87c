// Command ohxbench is the load benchmark behind `make bench`: it loads a store with synthetic
// Observations (timing the write path), serves it with the real ohx API on loopback, and measures
// the same requests against a bare net/http handler that serves the identical response bytes, in
// the same run, with the same load generator (vegeta). It prints each throughput and the ratio
// each scenario has a target for (the ratio to bare, printed).
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/api/smart/authserver"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ohxbench:", err)
		os.Exit(1)
	}
}

type config struct {
	dir      string
	patients int
	perPat   int
	duration time.Duration
	workers  int
	batch    int
	targets  int
	rounds   int
	token    string // access token sent with every request
}

func run() error {
	var cfg config
	flag.StringVar(&cfg.dir, "dir", ".bench", "data directory (reused between runs when the data set matches)")
	flag.IntVar(&cfg.patients, "patients", 10000, "number of patients")
	flag.IntVar(&cfg.perPat, "per-patient", 100, "Observations per patient (half body weight, half heart rate)")
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "length of each measured attack")
	flag.IntVar(&cfg.workers, "workers", 8, "concurrent connections of the load generator")
	flag.IntVar(&cfg.batch, "batch", 5000, "Observations per bulk upsert while loading")
	flag.IntVar(&cfg.targets, "targets", 2000, "distinct random requests per scenario")
	flag.IntVar(&cfg.rounds, "rounds", 2, "alternating baseline/ohx rounds per scenario")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	pipelineGroups := flag.Int("pipeline-groups", 10000, "Withings measure groups (6 measures each) for the sync pipeline benchmark; 0 skips it")
	flag.Parse()
	ctx := context.Background()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *pipelineGroups > 0 {
		if err := benchPipeline(ctx, *pipelineGroups); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
	}
	total := cfg.patients * cfg.perPat
	dataDir := filepath.Join(cfg.dir, fmt.Sprintf("sqlite-%dx%d", cfg.patients, cfg.perPat))
	fresh := false
	if _, err := os.Stat(filepath.Join(dataDir, "complete")); err != nil {
		os.RemoveAll(dataDir)
		fresh = true
	}
	st, err := sqlite.Open(ctx, dataDir, sqlite.Options{}, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if fresh {
		if err := load(ctx, st, cfg); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dataDir, "complete"), nil, 0o600); err != nil {
			return err
		}
	} else {
		fmt.Printf("load: reusing %d Observations in %s\n", total, dataDir)
	}

	if err := printPlan(ctx, st); err != nil {
		return err
	}
	// Every ohx request carries a SMART Backend Services token from the built-in authorization
	// server and is verified as in production (signature, claims, scopes, revocation check).
	auth, token, err := setupAuth(ctx, st)
	if err != nil {
		return err
	}
	// Two ohx servers on the same store: without the result cache (every search runs against the
	// store) and with it (the polling scenario).
	base, err := startOhx(st, -1, auth)
	if err != nil {
		return err
	}
	cachedBase, err := startOhx(st, 0, auth)
	if err != nil {
		return err
	}
	cfg.token = token

	rng := mrand.New(mrand.NewPCG(1, 2))
	var searchURLs, readURLs []string
	for range cfg.targets {
		p := rng.IntN(cfg.patients)
		searchURLs = append(searchURLs, fmt.Sprintf("/fhir/Observation?patient=p%d&code=http://loinc.org|29463-7&date=ge2026-01-01&_sort=-date&_count=50", p))
		readURLs = append(readURLs, fmt.Sprintf("/fhir/Observation/o-%d-%d", p, rng.IntN(cfg.perPat)))
	}
	scenarios := []struct {
		name, target string
		base         string
		urls         []string
	}{
		{"search (patient+code+date, _count=50, random patients)", "≥ 30 %", base, searchURLs},
		{"same search repeated (EHR polling, result cache on)", "≥ 70 %", cachedBase, searchURLs[:1]},
		{"read by id (result cache off)", "≥ 70 %", base, readURLs},
		{"read by id (result cache on, 2,000 ids re-read)", "≥ 70 %", cachedBase, readURLs},
	}
	fmt.Printf("\n%-55s %12s %12s %8s %10s %10s  %s\n", "scenario", "bare req/s", "ohx req/s", "ratio", "ohx p50", "ohx p99", "target")
	for _, sc := range scenarios {
		bodies := map[string][]byte{}
		for _, u := range sc.urls {
			b, err := fetch(sc.base+u, cfg.token)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			bodies[u] = b
		}
		bare, bareURL, err := startBare(bodies)
		if err != nil {
			return err
		}
		var bt, ot []float64
		var om *vegeta.Metrics
		for range cfg.rounds {
			bm := attack(bareURL, sc.urls, cfg)
			m := attack(sc.base, sc.urls, cfg)
			if bm.Success < 1 || m.Success < 1 {
				return fmt.Errorf("%s: errors during the attack (bare %.3f, ohx %.3f success): %v", sc.name, bm.Success, m.Success, m.Errors)
			}
			bt, ot, om = append(bt, bm.Throughput), append(ot, m.Throughput), m
		}
		bare.Close()
		b, o := mean(bt), mean(ot)
		fmt.Printf("%-55s %12.0f %12.0f %7.1f%% %10s %10s  %s\n", sc.name, b, o, 100*o/b,
			om.Latencies.P50.Round(time.Microsecond), om.Latencies.P99.Round(time.Microsecond), sc.target)
	}
	rss, hwm := memory()
	fmt.Printf("\nprocess memory (store + server + load generator): RSS %s, peak %s\n", rss, hwm)
	return nil
}

// printPlan shows SQLite's plan for the benchmark's search on the loaded data.
func printPlan(ctx context.Context, st *sqlite.Store) error {
	const raw = "patient=p42&code=http://loinc.org|29463-7&date=ge2026-01-01&_sort=-date&_count=50"
	pairs, _ := search.ParseRawQuery(raw)
	q, _, err := search.DefaultRegistry().Parse("Observation", pairs, search.Options{})
	if err != nil {
		return err
	}
	stmt, args, err := st.SQL(q)
	if err != nil {
		return err
	}
	rows, err := st.DB().QueryContext(ctx, "EXPLAIN QUERY PLAN "+stmt, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Printf("\nquery plan for Observation?%s:\n", raw)
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return err
		}
		fmt.Println("  " + detail)
	}
	return rows.Err()
}

// benchBase is the FHIR base URL of both ohx servers: token audiences must name it.
const benchBase = "http://ohx.bench/fhir"

// setupAuth starts the built-in authorization server on the store, registers a backend client
// and returns the verifier and one access token obtained with a signed client assertion.
func setupAuth(ctx context.Context, st *sqlite.Store) (api.Authenticator, string, error) {
	// The benchmark's data set is reused between runs, so its key material must be stable; it
	// protects nothing but synthetic data.
	secret := []byte("ohxbench: synthetic data only, not a secret key")
	as, err := authserver.NewServer(ctx, authserver.Config{Issuer: "http://ohx.bench/auth", FHIRBaseURL: benchBase, SecretKey: secret}, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	pub, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "bench", ALG: jwkset.AlgES384, USE: jwkset.UseSig}})
	if err != nil {
		return nil, "", err
	}
	jwks, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
	id := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, err := as.AddClient(ctx, authserver.Client{ID: id, Type: authserver.ClientBackend, Scopes: []string{"system/*.rs"}, JWKS: jwks}); err != nil {
		return nil, "", err
	}
	now := time.Now()
	a := jwt.NewWithClaims(jwt.SigningMethodES384, jwt.RegisteredClaims{Issuer: id, Subject: id, Audience: jwt.ClaimStrings{as.Endpoints().Token},
		ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: fmt.Sprint(now.UnixNano())})
	a.Header["kid"] = "bench"
	assertion, err := a.SignedString(key)
	if err != nil {
		return nil, "", err
	}
	tr, err := as.IssueBackendToken(ctx, assertion, "system/*.rs")
	if err != nil {
		return nil, "", err
	}
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: as.Endpoints().Issuer, Audience: benchBase, Keyfunc: as.Keyfunc(),
		RequireTyp: true, Revoked: as.Revoked, RevokedCacheTTL: 30 * time.Second})
	return v, tr.AccessToken, err
}

// startOhx serves the real API on loopback; cacheBytes < 0 turns the result cache off, 0 is
// the default budget.
func startOhx(st *sqlite.Store, cacheBytes int64, auth api.Authenticator) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	key := make([]byte, 32)
	rand.Read(key)
	srv, err := api.New(api.Config{BaseURL: benchBase, CursorKey: key, CacheBytes: cacheBytes, Auth: auth}, st,
		search.DefaultRegistry(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return "", err
	}
	go http.Serve(ln, srv.Handler())
	return "http://" + ln.Addr().String(), nil
}

func load(ctx context.Context, st *sqlite.Store, cfg config) error {
	total := cfg.patients * cfg.perPat
	fmt.Printf("load: writing %d Observations for %d patients in batches of %d (bulk upsert path)...\n", total, cfg.patients, cfg.batch)
	start := time.Now()
	t0 := time.Date(2026, 1, 1, 7, 0, 0, 0, time.UTC)
	batch := make([]fhir.Resource, 0, cfg.batch)
	n := 0
	// Time order, like a live feed: each day touches every patient, so a patient's rows arrive
	// scattered through the file and only a clustered layout keeps them together.
	for i := range cfg.perPat {
		for p := range cfg.patients {
			batch = append(batch, observation(p, i, t0))
			if len(batch) == cap(batch) {
				if _, err := st.Upsert(ctx, batch); err != nil {
					return err
				}
				n += len(batch)
				batch = batch[:0]
				if n%200000 == 0 {
					fmt.Printf("load: %d (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
		}
	}
	if len(batch) > 0 {
		if _, err := st.Upsert(ctx, batch); err != nil {
			return err
		}
		n += len(batch)
	}
	el := time.Since(start)
	fmt.Printf("load: %d Observations in %s = %.0f Observations/s (target ≥ 20,000/s for the whole pipeline)\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

func observation(p, i int, t0 time.Time) *fhir.Observation {
	code, display, unit, ucum := "29463-7", "Body weight", "kg", "kg"
	value := fhir.Decimal(strconv.FormatFloat(60+float64((p*7+i)%400)/10, 'f', 1, 64))
	at := t0.AddDate(0, 0, i/2).Add(time.Duration(p%600) * time.Second)
	if i%2 == 1 {
		code, display, unit, ucum = "8867-4", "Heart rate", "beats/minute", "/min"
		value = fhir.Decimal(strconv.Itoa(55 + (p+i)%40))
	}
	id := fmt.Sprintf("o-%d-%d", p, i)
	return &fhir.Observation{
		Base:       fhir.Base{ResourceType: "Observation", ID: id},
		Identifier: []fhir.Identifier{{System: fhir.IdentifierSystem("bench/measure"), Value: id}},
		Status:     "final",
		Category: []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category",
			Code: "vital-signs", Display: "Vital Signs"}}}},
		Code:              fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: code, Display: display}}},
		Subject:           &fhir.Reference{Reference: "Patient/p" + strconv.Itoa(p)},
		EffectiveDateTime: at.Format("2006-01-02T15:04:05+01:00"),
		Device:            &fhir.Reference{Reference: "Device/d" + strconv.Itoa(p)},
		Value:             fhir.Value{ValueQuantity: &fhir.Quantity{Value: &value, Unit: unit, System: "http://unitsofmeasure.org", Code: ucum}},
	}
}

func fetch(u, token string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", u, res.StatusCode, b)
	}
	return b, err
}

// startBare serves pre-recorded bodies by request URI: the ceiling any FHIR server could reach
// with the same bytes, client and machine.
func startBare(bodies map[string][]byte) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8; fhirVersion=5.0")
		w.Write(b)
	})}
	go s.Serve(ln)
	return s, "http://" + ln.Addr().String(), nil
}

func attack(base string, urls []string, cfg config) *vegeta.Metrics {
	targets := make([]vegeta.Target, len(urls))
	for i, u := range urls {
		// Both servers get the same request, token included; the bare handler ignores it.
		targets[i] = vegeta.Target{Method: "GET", URL: base + u, Header: http.Header{"Authorization": {"Bearer " + cfg.token}}}
	}
	a := vegeta.NewAttacker(vegeta.Workers(uint64(cfg.workers)), vegeta.MaxWorkers(uint64(cfg.workers)), vegeta.KeepAlive(true), vegeta.Connections(cfg.workers))
	var m vegeta.Metrics
	for r := range a.Attack(vegeta.NewStaticTargeter(targets...), vegeta.Rate{Freq: 0}, cfg.duration, "bench") {
		m.Add(r)
	}
	m.Close()
	return &m
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func memory() (rss, hwm string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?", "?"
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		s := string(line)
		if v, ok := strings.CutPrefix(s, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(s, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
	}
	return rss, hwm
}
