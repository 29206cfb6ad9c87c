package main

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// results is bench/results.json.
type results struct {
	Started      time.Time    `json:"started"`
	Finished     time.Time    `json:"finished"`
	CPUs         int          `json:"cpus"`
	LoadBefore   string       `json:"loadavg_before"`
	LoadAfter    string       `json:"loadavg_after"`
	Connections  int          `json:"connections"`
	RoundSeconds float64      `json:"round_seconds"`
	Rounds       int          `json:"rounds"`
	Dataset      *dataset     `json:"dataset"`
	Pipeline     *pipelineRun `json:"pipeline,omitempty"`
	Webhooks     []webhookRun `json:"webhooks,omitempty"`
	Scenarios    []outcome    `json:"scenarios"`
	Servers      []serverRun  `json:"servers"`
	RSSLimit     int64        `json:"server_rss_limit_bytes"`
}

// serverRun is one `ohx serve` process of a phase.
type serverRun struct {
	Phase   string `json:"phase"`
	PeakRSS int64  `json:"peak_rss_bytes"`
}

type pipelineRun struct {
	Observations int     `json:"observations"`
	Seconds      float64 `json:"seconds"`
	Rate         float64 `json:"obs_per_s"`
	// CPUSeconds is the CPU time the benchmark process used during the timed backfill.
	CPUSeconds float64 `json:"cpu_seconds"`
	// ResyncSeconds is the same backfill run again with nothing changed (nothing written).
	ResyncSeconds float64 `json:"resync_seconds"`
	VendorCalls   int64   `json:"vendor_calls"`
}

func (r *results) peakRSS() int64 {
	var p int64
	for _, s := range r.Servers {
		p = max(p, s.PeakRSS)
	}
	return p
}

func (r *results) print() {
	fmt.Printf("\n%d Observations, %d connections, %d × %s rounds per side; ratio = ohx / bare req/s\n",
		r.Dataset.Observations, r.Connections, r.Rounds, time.Duration(r.RoundSeconds*float64(time.Second)))
	fmt.Printf("%-52s %10s %10s %7s %8s %8s %8s %6s  %s\n", "scenario", "bare/s", "ohx/s", "ratio", "p50 ms", "p99 ms", "bare p99", "errors", "target")
	for _, o := range r.Scenarios {
		var goal []string
		if o.RatioGoal > 0 {
			goal = append(goal, fmt.Sprintf("ratio ≥ %.2f %s", o.RatioGoal, mark(o.Ratio >= o.RatioGoal)))
		}
		if o.P99Goal > 0 {
			goal = append(goal, fmt.Sprintf("p99 ≤ %.0f ms %s", o.P99Goal, mark(o.P99ms <= o.P99Goal)))
		}
		fmt.Printf("%-52s %10.0f %10.0f %7.2f %8.2f %8.2f %8.2f %6d  %s\n", o.Name, o.BareRPS, o.OhxRPS, o.Ratio, o.P50ms, o.P99ms, o.BareP99ms, o.Errors, strings.Join(goal, ", "))
	}
	for _, s := range r.Servers {
		fmt.Printf("ohx serve peak RSS (%s): %.1f MB\n", s.Phase, float64(s.PeakRSS)/(1<<20))
	}
	fmt.Printf("server RSS over the whole benchmark: %.1f MB (budget %d MB) %s\n", float64(r.peakRSS())/(1<<20), r.RSSLimit>>20, mark(r.peakRSS() <= r.RSSLimit))
	d := r.Dataset
	fmt.Printf("disk: %.0f bytes per Observation (%.1f MB for %d)\n", d.BytesPerObs, float64(d.DiskBytes)/1e6, d.Observations)
	if len(d.Ingest) > 0 {
		fmt.Printf("ingest (bulk upsert, time order): %.0f Observations/s; slowest tenth / fastest %.2f (target ≥ 0.80) %s; WAL peak %.1f MB%s\n",
			d.IngestRate, d.FlatRatio, mark(d.FlatRatio >= 0.8), float64(d.MaxWAL)/1e6, map[bool]string{true: " (from the run that generated the data set)"}[d.Reused])
	}
	r.printWebhooks()
	if p := r.Pipeline; p != nil {
		fmt.Printf("sync pipeline (Withings JSON → FHIR → stored, in this process): %.0f Observations/s (target ≥ 20,000) %s\n", p.Rate, mark(p.Rate >= 20000))
	}
}

func mark(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// verdict fails the run on any failed request or on a server over its memory budget; missed
// speed targets are printed, not fatal (a shared machine makes them noisy).
func (r *results) verdict() error {
	var errs []error
	for _, o := range r.Scenarios {
		if o.Errors > 0 {
			errs = append(errs, fmt.Errorf("%s: %d failed requests, first: %s", o.Name, o.Errors, o.FirstError))
		}
	}
	errs = append(errs, r.webhookVerdict()...)
	if p := r.peakRSS(); p > r.RSSLimit {
		errs = append(errs, fmt.Errorf("the server's peak RSS %.1f MB exceeds the budget of %d MB", float64(p)/(1<<20), r.RSSLimit>>20))
	}
	return errors.Join(errs...)
}
