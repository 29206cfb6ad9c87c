package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbitsim"
	"github.com/openhealthexchange/ohx/providers/googlehealth/googlehealthsim"
	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/withings/withingssim"
)

// simulator is what the demo needs of a vendor simulator (providers/*/…sim).
type simulator interface {
	Handler() http.Handler
	Env(baseURL string) map[string]string
	Push(ctx context.Context) (int, error)
	Served(p *sim.Person) map[fhir.SampleKind]int
}

// demoMarker marks a data directory the demo created, so that a later demo may wipe it (and
// never a directory it did not create).
const demoMarker = ".ohx-demo"

// demoMRNSystem is the identifier system of the demo's medical record numbers: HL7's example
// OID ("Good Health Clinic", https://hl7.org/fhir/R5/datatypes-examples.html), which no real
// hospital uses.
const demoMRNSystem = "urn:oid:2.16.840.1.113883.19.5"

// demoFitbitRate is the simulated Fitbit's quota of requests per user and hour.
const demoFitbitRate = 20000

// demoOptions are the demo command's flags.
type demoOptions struct {
	seed        int64
	days        int
	pushEvery   time.Duration
	addr        string
	dataDir     string
	manifest    string
	controlAddr string
}

// demoVendor is one simulated vendor: its ohx provider name, display name and simulator.
type demoVendor struct {
	provider, display string
	sim               simulator
	srv               *http.Server
	url               string
}

// demoPatient is one Patient of the demo and the vendor account connected to it.
type demoPatient struct {
	person   *sim.Person
	mrn, id  string
	vendor   *demoVendor // nil: not connected (the one the user connects in a browser)
	observed int         // Observations stored after the backfill
}

// runDemo implements `ohx demo`: simulated Withings, Google Health and legacy Fitbit servers on
// loopback ports serving generated data, ohx on a fresh embedded store pointed at them,
// patients registered and connected through the real connect flow, pushes on a timer, and a
// guided start printed once the backfill is stored.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ohx demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.Int64Var(&o.seed, "seed", 1, "seed of the generated data: one seed, one data set")
	fs.IntVar(&o.days, "days", 90, "days of history per simulated person")
	fs.DurationVar(&o.pushEvery, "push-every", 30*time.Second, "how often the simulated vendors record a new measurement and push its webhook (0: only on POST /push)")
	addr := getenv("OHX_ADDR")
	if addr == "" {
		// Loopback by default: the demo prints a sign-in, and its consent pages live on
		// loopback ports anyway.
		addr = "127.0.0.1:8080"
	}
	fs.StringVar(&o.addr, "addr", addr, "listen address of ohx (OHX_ADDR); port 0 picks a free one")
	fs.StringVar(&o.dataDir, "data-dir", "", "store directory, created fresh (default: a temporary directory removed on exit)")
	fs.StringVar(&o.manifest, "manifest", "", "also write what the demo set up (URLs, patients, counts) as JSON to this file")
	fs.StringVar(&o.controlAddr, "control-addr", "127.0.0.1:0", "loopback address of the demo's control endpoint (POST /push pushes now, GET /served counts what the simulators serve)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see ohx demo -h)", fs.Args())
	}
	if o.days < 1 || o.days > 730 {
		return fmt.Errorf("-days %d: want 1 to 730", o.days)
	}
	if o.pushEvery < 0 || o.pushEvery > 0 && o.pushEvery < time.Second {
		return fmt.Errorf("-push-every %s: want 1s or more, or 0 (pushes only on POST /push)", o.pushEvery)
	}
	if !loopback(o.controlAddr) {
		return fmt.Errorf("-control-addr %q: want a loopback address like 127.0.0.1:0 (its endpoints need no token)", o.controlAddr)
	}
	dir, cleanup, err := demoDataDir(o.dataDir)
	defer cleanup()
	if err != nil {
		return err
	}
	addr, err = freePort(o.addr)
	if err != nil {
		return err
	}
	d, err := newDemo(o, dir, addr, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	return d.run(ctx, getenv, stdout)
}

// demo is a running demo.
type demo struct {
	o        demoOptions
	dir      string
	addr     string
	origin   string
	world    *sim.World
	vendors  []*demoVendor
	patients []*demoPatient
	login    struct{ username, password string }
	log      *slog.Logger
	logFile  *os.File
	stderr   io.Writer
	http     *http.Client
	getenv   func(string) string // the server's settings: the demo's over the shell's
}

// newDemo generates the world and starts the three simulators on loopback ports.
func newDemo(o demoOptions, dir, addr string, stderr io.Writer) (_ *demo, err error) {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost" // listening on every interface: the browser's name for this machine
	}
	d := &demo{o: o, dir: dir, addr: addr, origin: "http://" + net.JoinHostPort(host, port), stderr: stderr,
		http: &http.Client{Timeout: 30 * time.Second}}
	f, err := os.OpenFile(filepath.Join(dir, "ohx.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("demo log: %w", err)
	}
	d.logFile = f
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	// The whole log goes to the file, warnings and errors also to the terminal: the guided start
	// stays readable.
	d.log = slog.New(slog.NewMultiHandler(slog.NewTextHandler(f, nil),
		slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	world, err := sim.New(o.seed, 6, o.days, time.Now())
	if err != nil {
		return nil, err
	}
	d.world = world
	secret := func() string {
		b := make([]byte, 16)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	pp := world.People
	// Two Withings accounts connected, one (the last person's) left for the user to connect in a
	// browser; two Google Health accounts; one legacy Fitbit account.
	withingsPeople, googlePeople, fitbitPeople := []*sim.Person{pp[0], pp[3], pp[5]}, []*sim.Person{pp[1], pp[4]}, []*sim.Person{pp[2]}
	listen := func() (net.Listener, string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", fmt.Errorf("simulator: %w", err)
		}
		return ln, "http://" + ln.Addr().String(), nil
	}
	simLog := d.log.With("component", "simulator")
	// Each simulator accepts only ohx's callback as redirect URI, as a vendor's console would.
	callback := func(provider string) []string { return []string{d.origin + "/connect/" + provider + "/callback"} }
	w, err := withingssim.New(withingssim.Config{World: world, People: withingsPeople, ClientID: "ohx-demo-withings",
		ClientSecret: secret(), Log: simLog, HTTPClient: d.http, RedirectURIs: callback("withings")})
	if err != nil {
		return nil, fmt.Errorf("withings simulator: %w", err)
	}
	g, err := googlehealthsim.New(googlehealthsim.Config{World: world, People: googlePeople,
		ClientID: "ohx-demo.apps.googleusercontent.com", ClientSecret: secret(), Log: simLog, HTTPClient: d.http,
		RedirectURIs: callback("googlehealth"),
		WebhookURL:   d.origin + "/webhooks/googlehealth", WebhookAuthorization: "Bearer " + secret()})
	if err != nil {
		return nil, fmt.Errorf("google health simulator: %w", err)
	}
	fb, err := fitbitsim.New(fitbitsim.Config{World: world, People: fitbitPeople, ClientID: "23DEMO", ClientSecret: secret(),
		RedirectURIs: callback("fitbit"),
		Log:          simLog, HTTPClient: d.http, SubscriberURL: d.origin + "/webhooks/fitbit", VerificationCode: secret(), SubscriberID: "ohx-demo",
		// Fitbit's 150 requests per user and hour would stretch the backfill (about 35 requests)
		// over minutes and throttle a demo that pushes every 30 s (about 7 requests a push): the
		// simulated quota, and ohx's budget for it (OHX_FITBIT_RATE), are larger.
		HourlyLimit: demoFitbitRate})
	if err != nil {
		return nil, fmt.Errorf("fitbit simulator: %w", err)
	}
	for _, v := range []*demoVendor{{provider: "withings", display: "Withings", sim: w}, {provider: "googlehealth", display: "Google Health (Fitbit)", sim: g},
		{provider: "fitbit", display: "Fitbit (legacy Web API)", sim: fb}} {
		ln, u, err := listen()
		if err != nil {
			return nil, err
		}
		v.url = u
		v.srv = &http.Server{Handler: v.sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go v.srv.Serve(ln)
		d.vendors = append(d.vendors, v)
	}
	byKey := map[string]*demoVendor{}
	for _, p := range withingsPeople[:2] {
		byKey[p.Key] = d.vendors[0]
	}
	for _, p := range googlePeople {
		byKey[p.Key] = d.vendors[1]
	}
	for _, p := range fitbitPeople {
		byKey[p.Key] = d.vendors[2]
	}
	for i, p := range pp {
		d.patients = append(d.patients, &demoPatient{person: p, mrn: fmt.Sprintf("DEMO-%04d", i+1), vendor: byKey[p.Key]})
	}
	return d, nil
}

// close stops the simulators and closes the log.
func (d *demo) close() {
	for _, v := range d.vendors {
		if v.srv != nil {
			v.srv.Close()
		}
	}
	if d.logFile != nil {
		d.logFile.Close()
	}
}

// demoPassThrough are the shell's settings the demo's server takes over: how it logs and where
// its profiles are served. Every other OHX_… variable of the shell (a production deployment's
// vendor credentials, redirect URLs, kinds, rates, a MongoDB URI) is ignored: the demo's server
// is configured for its simulators only.
var demoPassThrough = map[string]bool{"OHX_LOG_FORMAT": true, "OHX_PPROF_ADDR": true}

// run serves ohx, sets the demo up, prints the guided start and pushes until ctx ends. It
// returns only after the server and the push loop have stopped.
func (d *demo) run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	env := map[string]string{
		"OHX_ADDR":          d.addr,
		"OHX_DATA_DIR":      d.dir,
		"OHX_BACKFILL_DAYS": fmt.Sprint(d.o.days + 2), // the whole history, whatever the zones
		"OHX_LOG_LEVEL":     "info",
		"OHX_FITBIT_RATE":   fmt.Sprint(demoFitbitRate),
		"OHX_BASE_URL":      d.origin + "/fhir", // the simulators push to this origin
	}
	for _, v := range d.vendors {
		for k, val := range v.sim.Env(v.url) {
			env[k] = val
		}
	}
	demoEnv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if demoPassThrough[k] {
			return getenv(k)
		}
		return ""
	}
	d.getenv = demoEnv
	cfg, err := parseConfig("ohx demo", nil, demoEnv, d.stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	served := make(chan error, 1)
	// The server's whole log goes to the file, its warnings and errors also to the terminal.
	go func() { served <- serve(ctx, cfg, io.MultiWriter(d.logFile, warnings{d.stderr}), ready) }()
	var pushing sync.WaitGroup
	stopped := func(err error) error {
		cancel()
		pushing.Wait()
		if serr := <-served; err == nil && serr != nil {
			err = fmt.Errorf("ohx: %w", serr)
		}
		return err
	}
	select {
	case <-ready:
	case err := <-served:
		cancel()
		if err == nil || errors.Is(err, context.Canceled) {
			return nil // interrupted while starting: a clean stop
		}
		return fmt.Errorf("ohx: %w", err)
	}
	if err := d.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return stopped(nil) // interrupted while setting up: a clean stop
		}
		return stopped(err)
	}
	control, controlURL, err := d.serveControl(ctx)
	if err != nil {
		return stopped(err)
	}
	defer control.Close()
	m := d.manifest(ctx, cfg.BaseURL, controlURL)
	d.printGuide(stdout, m)
	// The manifest comes last and whole (renamed into place): whoever waits for it finds the
	// demo ready and the guide printed.
	if err := writeJSONFile(filepath.Join(d.dir, "demo.json"), m); err != nil {
		return stopped(err)
	}
	if d.o.manifest != "" {
		if err := writeJSONFile(d.o.manifest, m); err != nil {
			return stopped(err)
		}
	}
	pushing.Go(func() { d.pushLoop(ctx, stdout) })
	select {
	case err := <-served:
		served <- err // stopped reads it again
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nohx demo: stopping")
	}
	return stopped(nil)
}

// warnings passes on the server's warning and error lines (its JSON or text log) to the
// terminal.
type warnings struct{ w io.Writer }

func (f warnings) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"level":"WARN"`)) || bytes.Contains(p, []byte(`"level":"ERROR"`)) ||
		bytes.Contains(p, []byte("level=WARN")) || bytes.Contains(p, []byte("level=ERROR")) {
		if _, err := f.w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// pushLoop pushes on the timer until ctx ends.
func (d *demo) pushLoop(ctx context.Context, stdout io.Writer) {
	if d.o.pushEvery == 0 {
		return
	}
	t := time.NewTicker(d.o.pushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := d.push(ctx)
			line := fmt.Sprintf("%s  the simulated vendors pushed %d notifications", time.Now().Format(time.TimeOnly), n)
			if err != nil && ctx.Err() == nil {
				line += " (" + err.Error() + ")"
			}
			fmt.Fprintln(stdout, line)
		}
	}
}

// push asks every simulator to record a measurement and deliver its notifications.
func (d *demo) push(ctx context.Context) (int, error) {
	var total int
	var errs []error
	for _, v := range d.vendors {
		n, err := v.sim.Push(ctx)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.provider, err))
		}
	}
	return total, errors.Join(errs...)
}

// serveControl serves POST /push on the loopback control address.
func (d *demo) serveControl(ctx context.Context) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", d.o.controlAddr)
	if err != nil {
		return nil, "", fmt.Errorf("control endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /push", func(w http.ResponseWriter, r *http.Request) {
		n, err := d.push(r.Context())
		w.Header().Set("Content-Type", "application/json")
		out := map[string]any{"notifications": n}
		if err != nil {
			out["error"] = err.Error()
			w.WriteHeader(http.StatusBadGateway)
		}
		json.NewEncoder(w).Encode(out)
	})
	// What the simulators serve now, per patient and data kind (their history plus every pushed
	// measurement): the e2e suite compares it with search totals after pushes.
	mux.HandleFunc("GET /served", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]map[fhir.SampleKind]int{}
		for _, p := range d.patients {
			if p.vendor != nil {
				out[p.id] = p.vendor.sim.Served(p.person)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Handler: localOnly(mux), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String(), nil
}

// localOnly guards the control endpoint, which takes no token, against the user's browser: a
// web page may send a cross-site POST to a loopback port, and DNS rebinding may read it under
// another host name (https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Sec-Fetch-Site).
// Only requests that name a loopback host and come from no web origin pass: curl, scripts.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		site := r.Header.Get("Sec-Fetch-Site")
		if !loopback(r.Host) || r.Header.Get("Origin") != "" || site != "" && site != "none" {
			http.Error(w, "the demo's control endpoint answers local scripts only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// demoDataDir returns a fresh store directory and what removes it (never nil, also with an
// error): a new temporary directory, or dir emptied when an earlier demo made it (a directory
// holding anything else is refused).
func demoDataDir(dir string) (string, func(), error) {
	keep := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ohx-demo-")
		if err != nil {
			return "", keep, fmt.Errorf("demo data dir: %w", err)
		}
		remove := func() { os.RemoveAll(tmp) }
		if err := os.WriteFile(filepath.Join(tmp, demoMarker), nil, 0o600); err != nil {
			return "", remove, fmt.Errorf("demo data dir: %w", err)
		}
		return tmp, remove, nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return "", keep, fmt.Errorf("demo data dir: %w", err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return "", keep, fmt.Errorf("-data-dir %s holds files an earlier demo did not create: choose an empty or new directory", dir)
		}
		// The simulators keep their state in memory: an earlier demo's connections would point
		// at vendors that no longer know their tokens, so the demo always starts afresh.
		if err := os.RemoveAll(dir); err != nil {
			return "", keep, fmt.Errorf("demo data dir: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", keep, fmt.Errorf("demo data dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoMarker), nil, 0o600); err != nil {
		return "", keep, fmt.Errorf("demo data dir: %w", err)
	}
	return dir, keep, nil
}

// freePort resolves a port 0 in addr to a free port, so that the base URL the demo prints is
// the one it serves on.
func freePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", addr, err)
	}
	defer ln.Close()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return net.JoinHostPort(host, port), nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
