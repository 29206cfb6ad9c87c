package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/store"
)

// jobMetrics are the runner's job latency histograms, the queue collector and the count of
// withdrawn Observations: the operator's view of the pipeline on /metrics, next to
// ohx_jobs_total (runner.go).
type jobMetrics struct {
	wait *prometheus.HistogramVec // type, outcome: from due (NotBefore) to the start of the run
	run  *prometheus.HistogramVec // type, outcome: the run itself, bookkeeping included
	// withdrawn counts, by provider, the Observations marked entered-in-error because the
	// vendor's complete answer for their window no longer held them (withdrawn.go).
	withdrawn *prometheus.CounterVec
}

// Job outcomes of ohx_jobs_total and the latency histograms.
const (
	outcomeDone  = "done"  // completed
	outcomeRetry = "retry" // failed, retried later
	outcomeDead  = "dead"  // failed for good: a dead letter
	outcomeLost  = "lost"  // the lease went to another runner while it ran
)

// newJobMetrics builds the histograms and registers them, with a queue collector over st, on
// reg (nil: not registered).
func newJobMetrics(reg prometheus.Registerer, st QueueReader, now func() time.Time, log *slog.Logger) *jobMetrics {
	m := &jobMetrics{
		// Waits range from milliseconds (a webhook fetch on an idle runner) to hours (a backlog
		// under a vendor's rate limit).
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ohx_job_wait_seconds",
			Help:    "Time from when a job became due to the start of its run, by type and outcome of the run.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 12), // 5 ms … ~6 h
		}, []string{"type", "outcome"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ohx_job_run_seconds",
			Help:    "Run time of a job, by type and outcome (done, retry, dead, lost).",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 12), // 5 ms … ~15 min
		}, []string{"type", "outcome"}),
		withdrawn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_observations_withdrawn_total",
			Help: "Observations marked entered-in-error because the vendor no longer holds their record, by provider.",
		}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.wait, m.run, m.withdrawn, newQueueCollector(st, now, log))
	}
	return m
}

// jobEnded counts a run of j that began start (wall clock) after waiting waited, and ended with
// outcome.
func (r *Runner) jobEnded(j store.Job, waited time.Duration, start time.Time, outcome string) {
	r.jobs.WithLabelValues(j.Type, outcome).Inc()
	if r.jm == nil {
		return
	}
	r.jm.wait.WithLabelValues(j.Type, outcome).Observe(max(waited, 0).Seconds())
	r.jm.run.WithLabelValues(j.Type, outcome).Observe(time.Since(start).Seconds())
}

// QueueReader is what the queue's figures are read from (every store.Jobs).
type QueueReader interface {
	// JobStats counts the jobs by state at now (store.Jobs.JobStats).
	JobStats(ctx context.Context, now time.Time) (store.JobStats, error)
	// PendingJobs lists up to limit pending jobs in claim order (store.Jobs.PendingJobs).
	PendingJobs(ctx context.Context, limit int) ([]store.Job, error)
}

// QueueHeadScan is how many jobs at the head of the queue ReadQueue looks at for the oldest due
// job: the cost of a reading is one count and one read of that many index entries, whatever the
// queue's length.
const QueueHeadScan = 100

// QueueState is the job queue at one moment.
type QueueState struct {
	store.JobStats
	// OldestDue is the job that has waited longest since it became due among the first
	// QueueHeadScan jobs in claim order (jobs whose lease has not expired are not due); nil if
	// none of them is due. Within a priority the claim order is the order in which jobs became
	// due, so this is the oldest due job of the highest priorities queued, the ones that run
	// next; it is a lower bound of the oldest due job of the whole queue.
	OldestDue *store.Job
	// OldestDueAge is how long OldestDue has been due at the time of the reading.
	OldestDueAge time.Duration
}

// ReadQueue reads the queue's counts and its oldest due job at now.
func ReadQueue(ctx context.Context, st QueueReader, now time.Time) (QueueState, error) {
	stats, err := st.JobStats(ctx, now)
	if err != nil {
		return QueueState{}, fmt.Errorf("pipeline: read queue: %w", err)
	}
	head, err := st.PendingJobs(ctx, QueueHeadScan)
	if err != nil {
		return QueueState{}, fmt.Errorf("pipeline: read queue: %w", err)
	}
	qs := QueueState{JobStats: stats}
	for i := range head {
		j := &head[i]
		due := j.NotBefore
		if j.Owner != "" {
			if j.LeaseUntil.After(now) {
				continue // running
			}
			due = j.LeaseUntil // abandoned: due again since its lease expired
		}
		if due.After(now) {
			continue
		}
		if age := now.Sub(due); qs.OldestDue == nil || age > qs.OldestDueAge {
			qs.OldestDue, qs.OldestDueAge = j, age
		}
	}
	return qs, nil
}

// queueCollector exports the queue's figures at scrape time. A reading costs a count over the
// jobs and a read of QueueHeadScan index entries; readings are reused for queueReadEvery, so
// that several scrapers (a Prometheus pair, an operator's curl) cost one reading between them,
// and bounded by queueReadTimeout, so that a slow store never stalls /metrics.
type queueCollector struct {
	st  QueueReader
	now func() time.Time
	log *slog.Logger

	jobs, oldest *prometheus.Desc

	mu     sync.Mutex
	readAt time.Time // wall clock of the last reading; zero: none
	last   QueueState
	ok     bool
}

const (
	queueReadEvery   = 5 * time.Second
	queueReadTimeout = 2 * time.Second
)

func newQueueCollector(st QueueReader, now func() time.Time, log *slog.Logger) *queueCollector {
	return &queueCollector{st: st, now: now, log: log,
		jobs: prometheus.NewDesc("ohx_job_queue_jobs", "Jobs in the queue by state (waiting: due or scheduled; running: leased; dead: dead letters).",
			[]string{"state"}, nil),
		oldest: prometheus.NewDesc("ohx_job_queue_oldest_due_seconds",
			"How long the oldest due job at the head of the queue (its first 100 jobs in claim order) has been due; 0 when none is due.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
}

// Collect implements prometheus.Collector. A failed reading exports nothing (the series go
// stale) rather than failing the whole scrape.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readAt.IsZero() || time.Since(c.readAt) >= queueReadEvery {
		ctx, cancel := context.WithTimeout(context.Background(), queueReadTimeout)
		qs, err := ReadQueue(ctx, c.st, c.now())
		cancel()
		c.readAt = time.Now()
		c.last, c.ok = qs, err == nil
		if err != nil {
			c.log.Warn("reading the job queue for metrics", "err", err)
		}
	}
	if !c.ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(c.last.Waiting), "waiting")
	ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(c.last.Running), "running")
	ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(c.last.Dead), "dead")
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, c.last.OldestDueAge.Seconds())
}
