package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store/seal"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// The webhook scenarios measure how fast `ohx serve` acknowledges Withings notifications, and
// that none is lost. This process is an open-loop load generator (whSenders): notification i is
// due at start + i/rate whatever the answers to the earlier ones, as a vendor's servers send
// them, and its latency is measured from that due time, so that a send delayed by a slow
// answer to an earlier one counts (no coordinated omission). Every notification is distinct and validly authenticated (the
// callback URL's secret path segment, derived from OHX_SECRET_KEY as ohx derives it), for one of
// the connected patients and one day: each must become a job of its own. The server's runner
// syncs the queued jobs from a fake Withings in this process meanwhile, at the rate limit
// -webhook-vendor-rate, writing -webhook-page measure groups per call: the acknowledgements are
// measured while the runner drains. The second scenario first queues -webhook-backlog earlier
// distinct notifications (a vendor's retry storm after an outage).
//
// Lost is the number of acknowledged (2xx) notifications whose work is neither a job in the
// store once the server has stopped nor was fetched from the fake vendor after it was sent.

// webhookRun is one webhook scenario's figures (bench/results.json "webhooks").
type webhookRun struct {
	Name       string  `json:"name"`
	Rate       int     `json:"rate_per_s"`
	Seconds    float64 `json:"seconds"`
	Backlog    int     `json:"backlog"`
	QueueSync  string  `json:"queue_sync"`
	Sent       int     `json:"sent"`
	Acked      int     `json:"acknowledged"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// Late counts the notifications the generator sent more than 1 ms after their slot: the
	// generator fell behind (its clock, its scheduling) or every sender was busy waiting for
	// earlier answers. LateP99ms and LateMaxms are how late the sends were; MaxBusy is the most
	// senders waiting for answers at once (when it reaches -webhook-senders, sends queue).
	Late int `json:"late_sends"`
	// GenLate counts the notifications the generator's clock itself handed to the senders more
	// than 1 ms after their slot (the generator's own lateness, whatever the server does).
	GenLate    int     `json:"generator_late"`
	GenLateP99 float64 `json:"generator_late_p99_ms"`
	LateP99ms  float64 `json:"send_late_p99_ms"`
	LateMaxms  float64 `json:"send_late_max_ms"`
	MaxBusy    int     `json:"max_busy_senders"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"`
	// P99Settled is the p99 of the notifications due after the first settleTime of the load,
	// P99BySecond the p99 of each second's: where the tail comes from (the server's first
	// requests and the runner's first jobs, a stall). The target is judged on the whole run.
	P99Settled  float64   `json:"p99_after_first_3s_ms"`
	P99BySecond []float64 `json:"p99_by_second_ms"`
	Lost        int       `json:"lost"`
	Pending     int       `json:"jobs_pending_after"`
	VendorCalls int64     `json:"vendor_calls"`
	PeakRSS     int64     `json:"peak_rss_bytes"`
	P99Goal     float64   `json:"p99_goal_ms"`
}

// webhookScenarios are the slugs -only accepts for these scenarios ("webhook" runs both).
var webhookScenarios = []string{"webhook-empty", "webhook-backlog"}

// wantWebhook reports whether -only selects the webhook scenario slug.
func wantWebhook(only map[string]bool, slug string) bool {
	return only == nil || only["webhook"] || only[slug]
}

// onlyWebhook reports whether -only selects webhook scenarios and nothing that needs the data set.
func onlyWebhook(only map[string]bool) bool {
	if len(only) == 0 {
		return false
	}
	for o := range only {
		if o != "webhook" && !slices.Contains(webhookScenarios, o) && o != "pipeline" {
			return false
		}
	}
	return true
}

// whConfig are the webhook scenarios' settings (flags -webhook-…).
type whConfig struct {
	rate       int
	duration   time.Duration
	backlog    int
	patients   int
	page       int // measure groups per vendor call
	vendorRate int // the server's OHX_WITHINGS_RATE
	queueSync  string
	senders    int // the generator's pre-started senders, each with its own connection
}

// benchWebhooks runs the selected webhook scenarios.
func benchWebhooks(ctx context.Context, cfg config, wc whConfig) ([]webhookRun, error) {
	var out []webhookRun
	for _, sc := range []struct {
		slug    string
		backlog int
	}{{"webhook-empty", 0}, {"webhook-backlog", wc.backlog}} {
		if !wantWebhook(cfg.only, sc.slug) {
			continue
		}
		r, err := runWebhook(ctx, cfg, wc, sc.slug, sc.backlog)
		if err != nil {
			return out, fmt.Errorf("%s: %w", sc.slug, err)
		}
		fmt.Printf("%s: %d/s for %s, backlog %d: p50 %.2f ms, p99 %.2f ms (%.2f ms after the first %s), max %.2f ms; %d sent (%d handed to a sender more than 1 ms late, generator lateness p99 %.2f ms; %d sent more than 1 ms late, send lateness p99 %.2f ms, max %.2f ms, at most %d senders busy), %d acknowledged, %d errors, %d lost, %d jobs left, %d vendor calls\n",
			r.Name, r.Rate, time.Duration(r.Seconds*float64(time.Second)), r.Backlog, r.P50ms, r.P99ms, r.P99Settled, settleTime, r.Maxms, r.Sent, r.GenLate, r.GenLateP99, r.Late, r.LateP99ms, r.LateMaxms, r.MaxBusy, r.Acked, r.Errors, r.Lost, r.Pending, r.VendorCalls)
		out = append(out, r)
	}
	return out, nil
}

// whNote is one notification the generator sent.
type whNote struct {
	user     int
	day      int64         // Unix seconds of the UTC midnight of its day
	at       int64         // startdate = enddate
	slot     time.Time     // when it was due to be sent
	sent     time.Time     // when its sender began the request
	lateBy   time.Duration // sent - slot
	handedBy time.Duration // how late the generator's clock handed it to the senders
	lat      time.Duration // from slot to the answer's end: a late send counts in its latency
	acked    bool
	errText  string
	measured bool
}

func runWebhook(ctx context.Context, cfg config, wc whConfig, name string, backlog int) (webhookRun, error) {
	// More Ps than cores: the generator's clock goroutine then waits for the OS scheduler, which
	// runs a thread that wakes up within a few ms (https://docs.kernel.org/scheduler/sched-design-CFS.html),
	// rather than for one of two Ps held by senders and the fake vendor for up to the Go
	// scheduler's 10 ms time slice (https://go.dev/src/runtime/proc.go, forcePreemptNS).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(8, 4*runtime.NumCPU())))
	run := webhookRun{Name: name, Rate: wc.rate, Seconds: wc.duration.Seconds(), Backlog: backlog, QueueSync: wc.queueSync, P99Goal: 5}
	dir := filepath.Join(cfg.dir, name)
	if err := os.RemoveAll(dir); err != nil {
		return run, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := whConnect(ctx, dir, key, wc.patients); err != nil {
		return run, fmt.Errorf("connect patients: %w", err)
	}
	fake := newWhVendor(wc.page)
	defer fake.srv.Close()

	scfg := cfg
	scfg.serverEnv = append(slices.Clone(cfg.serverEnv),
		"OHX_SECRET_KEY="+base64.StdEncoding.EncodeToString(key),
		"OHX_WITHINGS_CLIENT_ID=bench", "OHX_WITHINGS_CLIENT_SECRET=bench-secret",
		"OHX_WITHINGS_API_URL="+fake.srv.URL, "OHX_WITHINGS_RATE="+strconv.Itoa(wc.vendorRate),
		"OHX_IDENTIFIER_NAMESPACE=https://ohxbench.example",
	)
	if wc.queueSync != "" {
		scfg.serverEnv = append(scfg.serverEnv, "OHX_QUEUE_SYNC="+wc.queueSync)
	}
	srv, err := startOhx(ctx, scfg, dir, false)
	if err != nil {
		return run, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Stop()
		}
	}()
	hook := srv.origin + "/webhooks/withings/" + hex.EncodeToString(seal.Derive(key, "ohx webhook withings")[:16])
	gen, err := newWhSenders(ctx, hook, wc.senders)
	if err != nil {
		return run, err
	}
	defer gen.close()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	// Notification i of the measured load is for patient i mod P on day 1 + (i/P) mod 30 before
	// today; the backlog's are on days 31 and on, so that none coalesces with another.
	mk := func(i, firstDay int) *whNote {
		u := i % wc.patients
		d := today.AddDate(0, 0, -(firstDay + i/wc.patients)).Unix()
		return &whNote{user: u, day: d, at: d + int64((i*7919)%86400)}
	}
	var notes []*whNote
	if backlog > 0 {
		fmt.Printf("%s: queueing %d earlier notifications\n", name, backlog)
		bl := make([]*whNote, backlog)
		for i := range bl {
			bl[i] = mk(i, 31)
		}
		gen.closedLoop(bl, 32)
		notes = append(notes, bl...)
	}
	total := int(float64(wc.rate) * wc.duration.Seconds())
	if total > wc.patients*30 {
		return run, fmt.Errorf("%d notifications need more than 30 days of %d patients: raise -webhook-patients", total, wc.patients)
	}
	measured := make([]*whNote, total)
	for i := range measured {
		measured[i] = mk(i, 1)
		measured[i].measured = true
	}
	fmt.Printf("%s: %d notifications at %d/s from %d senders\n", name, total, wc.rate, wc.senders)
	var prof chan error
	if cfg.profile && srv.pprof != "" {
		// The server's CPU profile of the measured load (go tool pprof bin/ohx FILE).
		prof = make(chan error, 1)
		secs := max(int(wc.duration.Seconds()), 1)
		go func() {
			prof <- srv.save(ctx, fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(cfg.out, "cpu-"+name+".pprof"))
		}()
	}
	gen.openLoop(measured, wc.rate)
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Printf("%s: %v\n", name, err)
		}
	}
	notes = append(notes, measured...)
	run.PeakRSS, err = srv.Stop()
	stopped = true
	if err != nil {
		return run, err
	}
	run.VendorCalls = fake.calls.Load()

	var lat, lateBy, handedBy []time.Duration
	for _, n := range measured {
		run.Sent++
		lateBy = append(lateBy, n.lateBy)
		handedBy = append(handedBy, n.handedBy)
		if n.handedBy > time.Millisecond {
			run.GenLate++
		}
		if n.lateBy > time.Millisecond {
			run.Late++
		}
		if !n.acked {
			run.Errors++
			if run.FirstError == "" {
				run.FirstError = n.errText
			}
			continue
		}
		run.Acked++
		lat = append(lat, n.lat)
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	p99 := func(ls []time.Duration) float64 {
		slices.Sort(ls)
		return ms(ls[(len(ls)*99)/100])
	}
	// Notification i of the measured load is due i/rate seconds after the load began.
	var settled []time.Duration
	var second []time.Duration
	for i, n := range measured {
		if i > 0 && i%wc.rate == 0 && len(second) > 0 {
			run.P99BySecond = append(run.P99BySecond, p99(second))
			second = second[:0]
		}
		if !n.acked {
			continue
		}
		second = append(second, n.lat)
		if i >= int(settleTime.Seconds()*float64(wc.rate)) {
			settled = append(settled, n.lat)
		}
	}
	if len(second) > 0 {
		run.P99BySecond = append(run.P99BySecond, p99(second))
	}
	if len(settled) > 0 {
		run.P99Settled = p99(settled)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		run.P50ms, run.P99ms, run.Maxms = ms(lat[len(lat)/2]), ms(lat[(len(lat)*99)/100]), ms(lat[len(lat)-1])
	}
	if len(lateBy) > 0 {
		slices.Sort(lateBy)
		run.LateP99ms, run.LateMaxms = ms(lateBy[(len(lateBy)*99)/100]), ms(lateBy[len(lateBy)-1])
		slices.Sort(handedBy)
		run.GenLateP99 = ms(handedBy[(len(handedBy)*99)/100])
	}
	run.MaxBusy = int(gen.maxBusy.Load())
	pending, err := whPending(ctx, dir)
	if err != nil {
		return run, fmt.Errorf("read the queue after the run: %w", err)
	}
	run.Pending = len(pending)
	for _, n := range notes {
		if !n.acked {
			continue
		}
		k := whKey{n.user, n.day}
		if pending[k] || fake.fetchedAfter(k, n.sent) {
			continue
		}
		run.Lost++
	}
	return run, nil
}

// settleTime is the start of the load that P99Settled leaves out.
const settleTime = 3 * time.Second

// whUserID is patient u's Withings user id (a number, as Withings' are).
func whUserID(u int) string { return strconv.Itoa(40_000_000 + u) }

// whKey is one patient's day: the work a weight notification announces.
type whKey struct {
	user int
	day  int64
}

// whConnect writes the connections of `patients` patients into a new store in dir, their
// tokens sealed with the key ohx derives from key (as `ohx serve` with OHX_SECRET_KEY does).
func whConnect(ctx context.Context, dir string, key []byte, patients int) error {
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	vk := seal.Derive(key, "ohx vendor token vault")
	sum := sha256.Sum256(vk)
	kid := hex.EncodeToString(sum[:4])
	vault, err := providers.NewVault(st, map[string][]byte{kid: vk}, kid, nil)
	if err != nil {
		return err
	}
	for u := range patients {
		c := &providers.Connection{Provider: "withings", PatientID: fmt.Sprintf("wh%d", u), VendorUserID: whUserID(u),
			Status: providers.StatusActive, Created: time.Now().UTC(),
			Token: &oauth2.Token{AccessToken: "bench-access-" + strconv.Itoa(u), RefreshToken: "bench-refresh", TokenType: "Bearer", Expiry: time.Now().Add(30 * 24 * time.Hour)}}
		if err := vault.Save(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// whPending reads the fetch jobs left in the store: the patient days still to sync.
func whPending(ctx context.Context, dir string) (map[whKey]bool, error) {
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	js, err := st.PendingJobs(ctx, 10_000_000)
	if err != nil {
		return nil, err
	}
	out := map[whKey]bool{}
	for _, j := range js {
		var w struct {
			Patient    string
			Start, End time.Time
		}
		if err := json.Unmarshal(j.Payload, &w); err != nil || !strings.HasPrefix(w.Patient, "wh") {
			continue
		}
		u, err := strconv.Atoi(strings.TrimPrefix(w.Patient, "wh"))
		if err != nil {
			continue
		}
		for d := w.Start.Unix(); d < w.End.Unix(); d += 86400 {
			out[whKey{u, d - d%86400}] = true
		}
	}
	return out, nil
}

// whVendor is the fake Withings the server's runner syncs from: getmeas answers `page` weight
// groups inside the asked window, and it records when each user's day was fetched.
type whVendor struct {
	srv   *httptest.Server
	page  int
	calls atomic.Int64
	mu    sync.Mutex
	last  map[whKey]time.Time // the latest fetch of a patient's day
}

func newWhVendor(page int) *whVendor {
	v := &whVendor{page: page, last: map[whKey]time.Time{}}
	v.srv = httptest.NewServer(http.HandlerFunc(v.serve))
	return v
}

func (v *whVendor) serve(w http.ResponseWriter, r *http.Request) {
	v.calls.Add(1)
	r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	// Each patient's token names it (whConnect): the fetched day is recorded for that patient.
	user, uerr := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer bench-access-"))
	start, _ := strconv.ParseInt(r.PostForm.Get("startdate"), 10, 64)
	end, _ := strconv.ParseInt(r.PostForm.Get("enddate"), 10, 64)
	now := time.Now()
	if r.PostForm.Get("action") != "getmeas" || start == 0 || end <= start {
		fmt.Fprint(w, `{"status":0,"body":{"updatetime":`+strconv.FormatInt(now.Unix(), 10)+`,"timezone":"UTC","more":0,"offset":0,"measuregrps":[]}}`)
		return
	}
	if uerr == nil {
		v.mu.Lock()
		// Withings' enddate is inclusive: the days [startdate, enddate] touches, whole ones only
		// (a notification's day is fetched whole, see pipeline.Bucket).
		for d := start - start%86400; d+86400 <= end+1; d += 86400 {
			if d >= start {
				v.last[whKey{user, d}] = now
			}
		}
		v.mu.Unlock()
	}
	type m = wMeasure
	type grp = wGroup
	gs := make([]grp, 0, v.page)
	step := max((end-start)/int64(v.page+1), 1)
	for i := range v.page {
		t := start + int64(i+1)*step
		if t >= end {
			break
		}
		g := grp{GrpID: t*100 + int64(i), Date: t, Created: t, Modified: t, Category: 1, DeviceID: "scale"}
		for j, typ := range []int{1, 5, 6, 8, 76, 88} {
			g.Measures = append(g.Measures, m{Value: 7000 + i%500 + j, Type: typ, Unit: -2})
		}
		gs = append(gs, g)
	}
	b, _ := json.Marshal(map[string]any{"status": 0, "body": map[string]any{
		"updatetime": now.Unix(), "timezone": "UTC", "more": 0, "offset": 0, "measuregrps": gs}})
	w.Write(b)
}

// fetchedAfter reports whether the patient's day was fetched after t.
func (v *whVendor) fetchedAfter(k whKey, t time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	last, ok := v.last[k]
	return ok && !last.Before(t)
}

// printWebhooks prints the webhook scenarios' figures.
func (r *results) printWebhooks() {
	if len(r.Webhooks) == 0 {
		return
	}
	fmt.Printf("\nwebhook acknowledgement (Withings notifications, open loop, ohx serve draining its queue meanwhile)\n")
	fmt.Printf("%-18s %7s %6s %8s %8s %8s %8s %8s %6s %6s %6s %8s %7s  %s\n", "scenario", "rate/s", "secs", "backlog", "acked", "p50 ms", "p99 ms", "max ms", "errors", "late", "lost", "jobs left", "calls", "target")
	for _, w := range r.Webhooks {
		fmt.Printf("%-18s %7d %6.0f %8d %8d %8.2f %8.2f %8.2f %6d %6d %6d %8d %7d  p99 ≤ %.0f ms %s, lost = 0 %s\n", w.Name, w.Rate, w.Seconds, w.Backlog, w.Acked,
			w.P50ms, w.P99ms, w.Maxms, w.Errors, w.Late, w.Lost, w.Pending, w.VendorCalls, w.P99Goal, mark(w.P99ms <= w.P99Goal), mark(w.Lost == 0))
	}
}

// webhookVerdict fails the run on a lost or refused notification, or an acknowledgement p99
// over its goal.
func (r *results) webhookVerdict() []error {
	var errs []error
	for _, w := range r.Webhooks {
		if w.Lost > 0 {
			errs = append(errs, fmt.Errorf("%s: %d acknowledged notifications lost", w.Name, w.Lost))
		}
		if w.Errors > 0 {
			errs = append(errs, fmt.Errorf("%s: %d notifications not acknowledged, first: %s", w.Name, w.Errors, w.FirstError))
		}
		if w.P99ms > w.P99Goal {
			errs = append(errs, fmt.Errorf("%s: acknowledgement p99 %.2f ms exceeds %.0f ms", w.Name, w.P99ms, w.P99Goal))
		}
	}
	return errs
}

// writeWebhooks prints the figures and writes results.json for a run of webhook scenarios
// only (with the pipeline figure, if it was measured too).
func (r *results) writeWebhooks(out string) error {
	r.Finished = time.Now().UTC()
	r.LoadAfter = loadavg()
	r.printWebhooks()
	if p := r.Pipeline; p != nil {
		fmt.Printf("sync pipeline (Withings JSON → FHIR → stored, in this process): %.0f Observations/s (target ≥ 20,000) %s\n", p.Rate, mark(p.Rate >= 20000))
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	path := filepath.Join(out, "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s; load average before %s, after %s\n", path, r.LoadBefore, r.LoadAfter)
	if len(r.Webhooks) == 0 {
		return errors.New("-only webhook measured nothing (-webhook-rate or -webhook-duration 0)")
	}
	return errors.Join(r.webhookVerdict()...)
}
