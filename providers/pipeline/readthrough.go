package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// PriorityReadThrough is the priority of the fetch jobs read-through queues: a search is waiting
// for them, so they come before the webhooks' fetches.
const PriorityReadThrough = 200

// ReadThroughConfig configures a ReadThrough. Zero values take the defaults given per field.
type ReadThroughConfig struct {
	// Budget is the longest a search waits for the syncs it started (default 3 s). What is not
	// synced by then is answered from the store with a warning; the jobs go on.
	Budget time.Duration
	// TTL is how long an attempt is remembered (default 30 s): a search of the same window
	// within it starts nothing new, waiting for the attempt still running or answering at once
	// with the outcome of the one that ended; and a connection whose vendor failed (throttled,
	// down) is not asked again within it.
	TTL time.Duration
	// Tolerance is how stale the newest data may be (default 10 min): a gap in the coverage that
	// lies wholly within the last Tolerance before now is not read through. Webhooks and the
	// reconciliation bring the newest data; without a tolerance every search ending now would
	// call the vendor for the minutes since the last sync.
	Tolerance time.Duration
	// MaxAge bounds how far back a search reads through (default 365 days, or the runner's
	// Config.Backfill if longer). A search without a start reads from the connection's backfill
	// horizon (its creation less Config.Backfill), the oldest data ohx syncs on its own.
	MaxAge time.Duration
	// MaxPieces bounds the windows of one kind read for one search (default 4): a coverage more
	// fragmented than that is read as one window over all its gaps. It also bounds how many
	// read-through jobs of one connection run at once: a search beyond that waits for none and
	// is answered with a warning.
	MaxPieces int
	// Entries bounds the attempts remembered (default 10000; the least recently used go first).
	Entries int
	// Poll is how often a waiting search looks at its job in the store (default 100 ms), which
	// is how it learns that a job run by another instance sharing the store has ended. A job
	// run by this process's Runner is signalled at once.
	Poll time.Duration
	// Metrics, if set, receives ohx_readthrough_total{provider,outcome}.
	Metrics prometheus.Registerer
}

// ReadThrough fills a patient's uncovered windows from the vendors before a search answers them
// (https://hl7.org/fhir/R5/search.html leaves a server free to consult other sources; ohx is a
// facade over the vendors). The syncs are the runner's own durable TypeFetch jobs, queued at
// PriorityReadThrough and coalesced by key with the same work queued already, so a search
// never calls a vendor itself and every call goes through the adapters' rate-limited clients.
// It is safe for concurrent use.
type ReadThrough struct {
	r   *Runner
	cfg ReadThroughConfig
	// peek returns a connection without decrypting its token.
	peek func(ctx context.Context, provider, patient string) (*providers.Connection, error)

	mu       sync.Mutex
	attempts *simplelru.LRU[attemptKey, *attempt] // guarded by mu
	failed   *simplelru.LRU[connID, failure]      // guarded by mu
	inflight map[connID]int                       // running attempts per connection; guarded by mu

	outcomes *prometheus.CounterVec
}

// Read-through outcomes (ohx_readthrough_total{outcome}), one per provider and search.
const (
	rtCovered   = "covered"   // nothing was missing
	rtFilled    = "filled"    // the missing windows were synced within the budget
	rtPending   = "pending"   // the budget ran out (or the connection has enough running)
	rtThrottled = "throttled" // the vendor throttled
	rtReauth    = "reauth"    // the connection needs the patient to connect again
	rtFailed    = "failed"    // the vendor was down or refused, or the sync failed otherwise
)

type connID struct{ provider, patient string }

// attemptKey names one kind's part of a search: the connection, the kind and the window as the
// search gave it (a zero bound: open), so that repeating the search finds it although "now"
// has moved.
type attemptKey struct {
	conn       connID
	kind       fhir.SampleKind
	start, end int64 // Unix microseconds; 0: open
}

// attempt is one read-through job and what became of it. done is closed when the outcome is
// known: err nil (synced) or its cause.
type attempt struct {
	job     string
	started time.Time
	start   time.Time // the window the job reads
	end     time.Time
	done    chan struct{}
	err     error // set before done is closed
}

// failure is a connection's recent vendor failure.
type failure struct {
	until time.Time
	err   error
}

// ReadThrough returns the runner's read-through. Call it once: every ReadThrough keeps its own
// attempts.
func (r *Runner) ReadThrough(cfg ReadThroughConfig) *ReadThrough {
	if cfg.Budget <= 0 {
		cfg.Budget = 3 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 10 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 365 * 24 * time.Hour
	}
	if cfg.MaxPieces <= 0 {
		cfg.MaxPieces = 4
	}
	if cfg.Entries <= 0 {
		cfg.Entries = 10000
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	rt := &ReadThrough{r: r, cfg: cfg, inflight: map[connID]int{},
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_readthrough_total",
			Help: "Searches that needed a patient's data from a provider, by provider and outcome (covered, filled, pending, throttled, reauth, failed).",
		}, []string{"provider", "outcome"}),
	}
	rt.attempts, _ = simplelru.NewLRU[attemptKey, *attempt](cfg.Entries, nil)
	rt.failed, _ = simplelru.NewLRU[connID, failure](cfg.Entries, nil)
	rt.peek = r.vault.Get
	if p, ok := r.vault.(interface {
		Peek(ctx context.Context, provider, patient string) (*providers.Connection, error)
	}); ok {
		rt.peek = p.Peek // no token decrypted on the search path
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(rt.outcomes)
	}
	return rt
}

// Fill makes sure that the patient's data of the kinds (none: every kind) in [start, end) (a
// zero bound: open) is synced from every provider the patient is connected to, before a search
// of it is answered. Per connection it finds the parts of the window no sync has covered yet
// (store.Coverage), queues a fetch of exactly those (one job per window, its kinds together)
// and waits for them up to the budget. Each window it could not fill is returned as a
// *providers.UncoveredError naming the provider, the window and the cause: the vendor
// throttled or failed, the budget ran out (providers.ErrSyncPending: the job goes on), or the
// connection needs the patient to connect again (providers.ErrConsentRevoked, nothing queued).
//
// Fill reads through only for a stored, live Patient with a connection that is not revoked; the
// caller must have checked that the searcher may see the patient. err is a failure to find out
// (the store): the search then answers what is stored.
func (rt *ReadThrough) Fill(ctx context.Context, patient string, kinds []fhir.SampleKind, start, end time.Time) (warnings []error, err error) {
	if !fhir.ValidID(patient) {
		return nil, nil
	}
	now := rt.r.now()
	if end.IsZero() || end.After(now) {
		end = now
	}
	if !start.IsZero() && !start.Before(end) {
		return nil, nil
	}
	var conns []*providers.Connection
	for _, name := range rt.r.reg.Names() {
		c, err := rt.peek(ctx, name, patient)
		if errors.Is(err, providers.ErrNotConnected) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pipeline: read-through: %w", err)
		}
		if c.Status == providers.StatusRevoked {
			continue
		}
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return nil, nil
	}
	// A connection is no licence to read through for an id: the patient must be stored.
	if _, err := rt.r.st.Read(ctx, "Patient", patient); errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("pipeline: read-through: %w", err)
	}
	deadline := time.Now().Add(rt.cfg.Budget)
	type pending struct {
		provider string
		as       []*attempt
	}
	var waits []pending
	for _, c := range conns {
		p, ok := rt.r.reg.Get(c.Provider)
		if !ok {
			continue
		}
		as, warn, err := rt.start(ctx, p, c, kinds, start, end, now)
		if err != nil {
			return warnings, err
		}
		warnings = append(warnings, warn...)
		if len(as) == 0 {
			if len(warn) > 0 {
				continue
			}
			rt.outcomes.WithLabelValues(c.Provider, rtCovered).Inc()
			continue
		}
		waits = append(waits, pending{provider: c.Provider, as: as})
	}
	if len(waits) > 0 {
		rt.r.rt.nudge()
		if rt.r.rt.running.Load() == 0 {
			// No Run loop in this process: nothing here will run the jobs soon, so the search
			// does not wait (another instance sharing the store, or a later start, runs them).
			deadline = time.Now()
		}
	}
	for _, w := range waits {
		outcome := rtFilled
		for _, a := range w.as {
			if err := a.wait(ctx, deadline); err != nil {
				warnings = append(warnings, &providers.UncoveredError{Provider: w.provider, Start: a.start, End: a.end, Err: err})
				outcome = outcomeOf(err)
			}
		}
		rt.outcomes.WithLabelValues(w.provider, outcome).Inc()
	}
	return warnings, nil
}

// outcomeOf is the metric outcome of a read-through failure.
func outcomeOf(err error) string {
	switch {
	case errors.Is(err, providers.ErrSyncPending):
		return rtPending
	case errors.Is(err, providers.ErrConsentRevoked) || errors.Is(err, providers.ErrNotConnected):
		return rtReauth
	case providers.KindOf(err) == providers.KindThrottled:
		return rtThrottled
	}
	return rtFailed
}

// start finds what one connection is missing of the search and starts (or joins) the attempts
// that read it. A connection that cannot be read now (needs re-authorisation, failed recently,
// has enough running) gives warnings instead, and no attempts.
func (rt *ReadThrough) start(ctx context.Context, p providers.Provider, c *providers.Connection, kinds []fhir.SampleKind, start, end, now time.Time) ([]*attempt, []error, error) {
	ks := coveredKinds(kinds, p.Kinds())
	if len(ks) == 0 {
		return nil, nil, nil
	}
	from := start
	if from.IsZero() {
		from = c.Created.Add(-rt.r.cfg.Backfill) // the backfill horizon
	}
	if oldest := now.Add(-max(rt.cfg.MaxAge, rt.r.cfg.Backfill)); from.Before(oldest) {
		from = oldest
	}
	if !from.Before(end) {
		return nil, nil, nil
	}
	covs, err := rt.r.st.Coverage(ctx, c.Provider, c.PatientID)
	if err != nil {
		return nil, nil, fmt.Errorf("pipeline: read-through: %w", err)
	}
	byKind := map[fhir.SampleKind]store.Coverage{}
	for _, cv := range covs {
		byKind[fhir.SampleKind(cv.Kind)] = cv
	}
	gaps := map[fhir.SampleKind][]store.Interval{}
	for _, k := range ks {
		if g := rt.gaps(byKind[k], from, end, now); len(g) > 0 {
			gaps[k] = g
		}
	}
	if len(gaps) == 0 {
		return nil, nil, nil
	}
	id := connID{c.Provider, c.PatientID}
	if c.Status != providers.StatusActive {
		// Nothing can be fetched until the patient connects again: say so, queue nothing.
		rt.outcomes.WithLabelValues(c.Provider, rtReauth).Inc()
		s, e := hull(gaps)
		return nil, []error{&providers.UncoveredError{Provider: c.Provider, Start: s, End: e, Err: providers.ErrConsentRevoked}}, nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if f, ok := rt.failed.Get(id); ok {
		if now.Before(f.until) {
			rt.outcomes.WithLabelValues(c.Provider, outcomeOf(f.err)).Inc()
			s, e := hull(gaps)
			return nil, []error{&providers.UncoveredError{Provider: c.Provider, Start: s, End: e, Err: f.err}}, nil
		}
		rt.failed.Remove(id)
	}
	// Kinds already being read for the same search join that attempt; the others are grouped
	// by their gaps, one job per gap with every kind that misses it.
	var out []*attempt
	type group struct {
		iv    store.Interval
		kinds []fhir.SampleKind
	}
	var groups []*group
	for _, k := range slices.Sorted(maps.Keys(gaps)) {
		key := attemptKey{conn: id, kind: k, start: micros(start), end: micros(zeroIfNow(end, now))}
		if a, ok := rt.attempts.Get(key); ok && now.Sub(a.started) < rt.cfg.TTL {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
			continue
		}
		for _, iv := range gaps[k] {
			i := slices.IndexFunc(groups, func(g *group) bool { return g.iv == iv })
			if i < 0 {
				groups = append(groups, &group{iv: iv})
				i = len(groups) - 1
			}
			groups[i].kinds = append(groups[i].kinds, k)
		}
	}
	var deferred []error
	for _, g := range groups {
		if rt.inflight[id] >= rt.cfg.MaxPieces {
			deferred = append(deferred, &providers.UncoveredError{Provider: c.Provider, Start: g.iv.Start, End: g.iv.End, Err: providers.ErrSyncPending})
			continue
		}
		j := Work{Provider: c.Provider, Patient: c.PatientID, Kinds: g.kinds, Start: g.iv.Start, End: g.iv.End}.Job(TypeFetch)
		j.Priority = PriorityReadThrough
		jobID, coalesced, err := rt.r.Enqueue(ctx, j)
		if err != nil {
			return nil, nil, fmt.Errorf("pipeline: read-through: %w", err)
		}
		// The failed runs so far of the job, to tell a failure of this run from earlier ones
		// when another process runs it: none for a new job.
		runs := 0
		if coalesced {
			runs = -1 // learnt at the first look
			if pj, err := rt.r.st.GetJob(ctx, jobID); err == nil {
				runs = pj.Attempt
			}
		}
		a := &attempt{job: jobID, started: now, start: g.iv.Start, end: g.iv.End, done: make(chan struct{})}
		for _, k := range g.kinds {
			key := attemptKey{conn: id, kind: k, start: micros(start), end: micros(zeroIfNow(end, now))}
			if prev, ok := rt.attempts.Get(key); ok && now.Sub(prev.started) < rt.cfg.TTL {
				continue // a kind with several gaps keeps the first attempt as its key's
			}
			rt.attempts.Add(key, a)
		}
		rt.inflight[id]++
		out = append(out, a)
		go rt.watch(id, a, runs)
	}
	if len(deferred) > 0 && len(out) == 0 {
		rt.outcomes.WithLabelValues(c.Provider, rtPending).Inc()
	}
	return out, deferred, nil
}

// gaps returns the parts of [from, end) that cov does not cover, ignoring one that lies wholly
// within the tolerance before now. Coverage is the intervals fetched completely and, when the
// kind has an incremental cursor, everything from the end of its latest interval up to the
// cursor: the incremental syncs since that window read every record changed since, and a
// measurement taken after the window was changed after it too. More than MaxPieces gaps are
// read as the one window from the first gap's start to the last one's end.
func (rt *ReadThrough) gaps(cov store.Coverage, from, end, now time.Time) []store.Interval {
	c := store.Coverage{Intervals: slices.Clone(cov.Intervals)}
	if t, ok := parseCursor(cov.Cursor); ok && len(c.Intervals) > 0 {
		last := c.Intervals[len(c.Intervals)-1].End
		c.Add(last, t)
	}
	var out []store.Interval
	at := from
	for _, iv := range c.Intervals {
		if !iv.End.After(at) {
			continue
		}
		if !iv.Start.Before(end) {
			break
		}
		if iv.Start.After(at) {
			out = append(out, store.Interval{Start: at, End: iv.Start})
		}
		at = iv.End
	}
	if at.Before(end) {
		out = append(out, store.Interval{Start: at, End: end})
	}
	recent := now.Add(-rt.cfg.Tolerance)
	out = slices.DeleteFunc(out, func(iv store.Interval) bool { return !iv.Start.Before(recent) })
	if len(out) > rt.cfg.MaxPieces {
		out = []store.Interval{{Start: out[0].Start, End: out[len(out)-1].End}}
	}
	return out
}

// watch waits for the attempt's job to end and records the outcome: the runner's signal when
// it runs the job in this process, else the store (the job gone: done; failed: its recorded
// error). It gives up after the TTL: the job has been running too long for any search to wait
// for it, and the attempt is pending.
func (rt *ReadThrough) watch(id connID, a *attempt, first int) {
	ch, cancel := rt.r.rt.subscribe(a.job)
	defer cancel()
	ctx, stop := context.WithTimeout(context.Background(), rt.cfg.TTL)
	defer stop()
	t := time.NewTicker(rt.cfg.Poll)
	defer t.Stop()
	var err error
loop:
	for {
		select {
		case err = <-ch:
			break loop
		case <-ctx.Done():
			err = providers.ErrSyncPending
			break loop
		case <-t.C:
		}
		j, gerr := rt.r.st.GetJob(ctx, a.job)
		switch {
		case errors.Is(gerr, store.ErrNotFound):
			err = nil // completed (by any runner sharing the store)
			break loop
		case gerr != nil:
			continue
		case first < 0:
			first = j.Attempt
			if j.Dead {
				err = &jobFailedError{text: j.LastError}
				break loop
			}
		case j.Dead || j.Attempt > first:
			err = &jobFailedError{text: j.LastError}
			break loop
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrLeaseLost) {
		err = providers.ErrSyncPending // the runner stopped or lost the job: it runs again
	}
	rt.mu.Lock()
	rt.inflight[id]--
	if rt.inflight[id] <= 0 {
		delete(rt.inflight, id)
	}
	if err != nil && !errors.Is(err, providers.ErrSyncPending) {
		// The vendor failed: leave it alone for a while, answering what is stored.
		rt.failed.Add(id, failure{until: rt.r.now().Add(rt.cfg.TTL), err: err})
	}
	rt.mu.Unlock()
	a.err = err
	close(a.done)
}

// wait waits for the attempt's outcome until deadline or ctx ends; either gives
// providers.ErrSyncPending.
func (a *attempt) wait(ctx context.Context, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-a.done:
		return a.err
	case <-t.C:
	case <-ctx.Done():
	}
	return providers.ErrSyncPending
}

// jobFailedError is the failure of a job another process ran, as the store recorded it (the
// public text of the classified failure: jobError).
type jobFailedError struct{ text string }

func (e *jobFailedError) Error() string { return "sync failed: " + e.text }

// hull is the smallest window holding every gap.
func hull(gaps map[fhir.SampleKind][]store.Interval) (start, end time.Time) {
	for _, ivs := range gaps {
		for _, iv := range ivs {
			if start.IsZero() || iv.Start.Before(start) {
				start = iv.Start
			}
			if iv.End.After(end) {
				end = iv.End
			}
		}
	}
	return start, end
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// zeroIfNow keeps an end the search left open (clamped to now) open in attempt keys.
func zeroIfNow(end, now time.Time) time.Time {
	if end.Equal(now) {
		return time.Time{}
	}
	return end
}

// rtHooks is the runner's side of read-through: the searches waiting for fetch jobs, signalled
// when this process runs one, and the nudge that makes Run claim a queued job at once instead
// of at its next poll.
type rtHooks struct {
	mu      sync.Mutex
	waiting map[string][]chan error // by job id; guarded by mu
	wake    chan struct{}           // guarded by mu (made on first use)
	running atomic.Int32            // Run loops of the runner
}

// subscribe returns a channel that receives the outcome of the next run of job id in this
// process, and the function that stops the subscription.
func (h *rtHooks) subscribe(id string) (<-chan error, func()) {
	ch := make(chan error, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiting == nil {
		h.waiting = map[string][]chan error{}
	}
	h.waiting[id] = append(h.waiting[id], ch)
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.waiting[id] = slices.DeleteFunc(h.waiting[id], func(c chan error) bool { return c == ch })
		if len(h.waiting[id]) == 0 {
			delete(h.waiting, id)
		}
	}
}

// signal hands the outcome of a run of job id to its subscribers.
func (h *rtHooks) signal(id string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.waiting[id] {
		select {
		case ch <- err:
		default:
		}
	}
	delete(h.waiting, id)
}

// wakeCh is the channel Run listens on for nudges.
func (h *rtHooks) wakeCh() chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{}, 1)
	}
	return h.wake
}

// nudge makes a Run loop of this process look for due jobs now.
func (h *rtHooks) nudge() {
	select {
	case h.wakeCh() <- struct{}{}:
	default:
	}
}

// signalDone wraps a handler so that searches waiting for the job learn its outcome as soon as
// it ends (before the runner records it in the store: the coverage is written by then).
func (r *Runner) signalDone(h Handler) Handler {
	return func(ctx context.Context, j store.Job) error {
		err := h(ctx, j)
		r.rt.signal(j.ID, err)
		return err
	}
}
