// Command ohxbench is `make bench`: it measures ohx as an operator runs it. The `ohx` binary
// serves a generated data set as its own process; a bare net/http handler, also a process of
// its own, serves the very bytes ohx answered each request with; this process is the load
// generator (a closed loop per connection, like wrk), alternating rounds against the two over
// loopback with the same requests and connections. It prints, per scenario, the throughput of both, the ratio, ohx's latency,
// errors and the server's peak RSS, and writes the figures to bench/results.json. It fails
// when a request fails or the server's RSS exceeds its budget.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		if err := runBare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "ohxbench bare:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "ohxbench:", err)
		os.Exit(1)
	}
}

type config struct {
	ohx            string // the ohx binary
	dir            string
	out            string
	patients       int
	perPat         int
	batch          int
	duration       time.Duration
	workers        int
	targets        int
	rounds         int
	pipelineGroups int
	// pipelineLatency is how long the pipeline's fake Withings takes to answer a call.
	pipelineLatency time.Duration
	maxRSS          int64
	profile         bool
	fresh           bool
	logLevel        string
	serverEnv       []string // extra KEY=VALUE settings of the server's environment
	only            map[string]bool
	webhook         whConfig
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context) error {
	var cfg config
	quick := flag.Bool("quick", false, "a small data set and short rounds (make bench-quick)")
	flag.StringVar(&cfg.ohx, "ohx", "bin/ohx", "the ohx binary to measure")
	flag.StringVar(&cfg.dir, "dir", ".bench", "where data sets are generated and reused, and the server's log is kept")
	flag.StringVar(&cfg.out, "out", "bench", "directory of results.json and the profiles")
	flag.IntVar(&cfg.patients, "patients", 10000, "patients in the data set")
	flag.IntVar(&cfg.perPat, "per-patient", 100, "Observations per patient (body weight and heart rate alternate)")
	flag.IntVar(&cfg.batch, "batch", 1000, "Observations per bulk upsert while generating (a sync job writes a vendor page, 500–3,000, per transaction)")
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "length of each measured round")
	flag.IntVar(&cfg.workers, "connections", 8, "connections of the load generator")
	flag.IntVar(&cfg.targets, "targets", 2000, "distinct random requests per scenario")
	flag.IntVar(&cfg.rounds, "rounds", 2, "alternating bare/ohx rounds per scenario")
	flag.IntVar(&cfg.pipelineGroups, "pipeline-groups", 10000, "Withings measure groups (6 measures each) for the sync pipeline figure; 0 skips it")
	flag.DurationVar(&cfg.pipelineLatency, "pipeline-vendor-latency", 0, "how long the pipeline's fake Withings takes to answer each call (a real vendor's round trip, e.g. 150ms; default 0: ohx's own cost alone)")
	maxRSS := flag.Int("max-rss-mb", 200, "the server's RSS budget in MB: exceeding it fails the benchmark")
	flag.BoolVar(&cfg.profile, "profile", false, "write CPU profiles of the server per scenario and heap profiles per phase to -out")
	flag.BoolVar(&cfg.fresh, "fresh", false, "generate the data set again even if one exists")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "the server's OHX_LOG_LEVEL (info logs every request, as in production)")
	flag.Var((*listFlag)(&cfg.serverEnv), "env", "KEY=VALUE added to the server's environment (repeatable), e.g. -env GOGC=200")
	flag.IntVar(&cfg.webhook.rate, "webhook-rate", 1000, "Withings notifications per second of the webhook scenarios (open loop)")
	flag.DurationVar(&cfg.webhook.duration, "webhook-duration", 30*time.Second, "length of the webhook scenarios' measured load")
	flag.IntVar(&cfg.webhook.backlog, "webhook-backlog", 20000, "distinct notifications queued before the load of the webhook-backlog scenario")
	flag.IntVar(&cfg.webhook.patients, "webhook-patients", 1000, "connected Withings patients of the webhook scenarios")
	flag.IntVar(&cfg.webhook.page, "webhook-page", 100, "measure groups (6 measures each) the fake Withings answers per call while the runner drains")
	flag.IntVar(&cfg.webhook.vendorRate, "webhook-vendor-rate", 120, "the server's OHX_WITHINGS_RATE (requests per minute) in the webhook scenarios: Withings' app limit and the server's default; 1200 drains ten times faster than Withings allows (a stress variant)")
	flag.IntVar(&cfg.webhook.senders, "webhook-senders", 128, "the webhook load generator's senders, each with its own keep-alive connection (more than rate × the slowest answer's seconds, or sends queue)")
	flag.StringVar(&cfg.webhook.queueSync, "webhook-queue-sync", "", "the server's OHX_QUEUE_SYNC in the webhook scenarios (default: the server's default)")
	only := flag.String("only", "", "comma-separated scenario slugs to run (default all), e.g. search,read-many")
	flag.Parse()
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, o := range strings.Split(*only, ",") {
			cfg.only[strings.TrimSpace(o)] = true
		}
	}
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("patients", func() { cfg.patients = 500 })
		def("duration", func() { cfg.duration = 2 * time.Second })
		def("targets", func() { cfg.targets = 500 })
		def("pipeline-groups", func() { cfg.pipelineGroups = 2000 })
		def("webhook-duration", func() { cfg.webhook.duration = 5 * time.Second })
		def("webhook-backlog", func() { cfg.webhook.backlog = 5000 })
	}
	cfg.maxRSS = int64(*maxRSS) << 20
	if cfg.targets < 1 || cfg.rounds < 1 || cfg.workers < 1 || cfg.patients < 1 || cfg.perPat < 1 || cfg.batch < 1 {
		return fmt.Errorf("-targets, -rounds, -connections, -patients, -per-patient and -batch must be at least 1")
	}
	if _, err := os.Stat(cfg.ohx); err != nil {
		return fmt.Errorf("the ohx binary %s: %w (make build)", cfg.ohx, err)
	}
	for _, d := range []string{cfg.dir, cfg.out} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	res := results{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadBefore: loadavg(), Connections: cfg.workers,
		RoundSeconds: cfg.duration.Seconds(), Rounds: cfg.rounds, RSSLimit: cfg.maxRSS}
	fmt.Printf("ohxbench: %d CPUs, load average %s\n", res.CPUs, res.LoadBefore)

	if cfg.pipelineGroups > 0 && (cfg.only == nil || cfg.only["pipeline"]) {
		p, err := benchPipeline(ctx, cfg)
		if err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		res.Pipeline = p
	}
	if cfg.webhook.rate > 0 && cfg.webhook.duration > 0 && (wantWebhook(cfg.only, webhookScenarios[0]) || wantWebhook(cfg.only, webhookScenarios[1])) {
		ws, err := benchWebhooks(ctx, cfg, cfg.webhook)
		res.Webhooks = ws
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
	}
	if onlyWebhook(cfg.only) {
		// -only webhook: the scenarios make their own stores, the data set is not needed.
		return res.writeWebhooks(cfg.out)
	}
	if onlyPipeline(cfg.only) {
		// -only pipeline: the figure needs no data set and no server.
		return res.writePipeline(cfg.out)
	}
	ds, err := ensureDataset(ctx, cfg)
	if err != nil {
		return fmt.Errorf("data set: %w", err)
	}
	res.Dataset = ds
	fmt.Printf("data set: %.1f MB on disk, %.0f bytes per Observation\n", float64(ds.DiskBytes)/1e6, ds.BytesPerObs)

	// Phase 1 measures the store path (result cache off), phase 2 the cache: a polled search,
	// and unique searches that fill it to its byte budget.
	for _, ph := range phases(cfg) {
		if err := runPhase(ctx, cfg, ds, ph, &res); err != nil {
			return err
		}
	}
	res.LoadAfter = loadavg()
	res.Finished = time.Now().UTC()
	res.print()
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	path := filepath.Join(cfg.out, "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s; load average before %s, after %s\n", path, res.LoadBefore, res.LoadAfter)
	return res.verdict()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
