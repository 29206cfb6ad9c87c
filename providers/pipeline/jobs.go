package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Handler runs one job of the type it is registered for. Jobs are idempotent: running one twice
// writes nothing new, since a job whose lease is lost (a slow runner, a crash) runs again. An
// error fails the run: it is retried with backoff, or dead-lettered when it matches
// Permanent (or providers.ErrNotConnected, providers.ErrConsentRevoked, a permanent
// *providers.UpstreamError) or the attempts are used up. The context ends when the runner stops
// or loses the job's lease.
type Handler func(ctx context.Context, j store.Job) error

// Handle registers the handler of job type typ. It panics if typ is empty, h is nil or typ has a
// handler already (like http.ServeMux: a wiring mistake, found at start).
func (r *Runner) Handle(typ string, h Handler) {
	if typ == "" || h == nil {
		panic("pipeline: Handle needs a job type and a handler")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[typ]; dup {
		panic(fmt.Sprintf("pipeline: a handler for job type %q is registered already", typ))
	}
	r.handlers[typ] = h
}

// Enqueue stores a job durably (see store.Jobs.EnqueueJob for coalescing by key).
func (r *Runner) Enqueue(ctx context.Context, j store.Job) (id string, coalesced bool, err error) {
	id, coalesced, err = r.st.EnqueueJob(ctx, j, r.now())
	if err != nil {
		return "", false, fmt.Errorf("pipeline: enqueue %s: %w", j.Type, err)
	}
	return id, coalesced, nil
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as a failure that retrying cannot fix: the job becomes a dead letter at
// once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// isPermanent reports failures that retrying cannot fix.
func isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var ue *providers.UpstreamError
	if errors.As(err, &ue) && ue.Kind == providers.KindPermanent {
		return true
	}
	return errors.Is(err, providers.ErrConsentRevoked) || errors.Is(err, providers.ErrNotConnected)
}

// jobError is the text a failed run records in the job (what an operator sees on a dead
// letter): the classified summary for vendor and connection failures (vendor text never), else
// the error itself, shortened. Errors of ohx's own handlers carry no tokens or PHI.
func jobError(err error) string {
	if s, ok := classified(err); ok {
		return s
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// publicError is the text recorded on a connection (GET /connect/status shows it to the EHR or
// the patient): the classified summary, or a fixed text, since anything else (a store error, an
// internal one) may name internals; the log has the error.
func publicError(err error) string {
	if s, ok := classified(err); ok {
		return s
	}
	return "sync failed"
}

// classified is the public summary of a known kind of failure.
func classified(err error) (string, bool) {
	var ue *providers.UpstreamError
	switch {
	case errors.As(err, &ue):
		return fmt.Sprintf("vendor %s error (status %d)", ue.Kind, ue.Status), true
	case errors.Is(err, providers.ErrConsentRevoked):
		return "the vendor refused the tokens: the patient must connect again", true
	case errors.Is(err, providers.ErrNotConnected):
		return "not connected to the provider", true
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out", true
	}
	return "", false
}

// backoff is the wait before the retry after the attempt-th failed run: 30 s doubling per
// attempt, capped at 1 h, with ±20 % jitter so that retries do not synchronise; at least a
// vendor's Retry-After.
func backoff(attempt int, err error) time.Duration {
	d := time.Duration(math.Min(float64(30*time.Second)*math.Pow(2, float64(attempt-1)), float64(time.Hour)))
	d = time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
	var ue *providers.UpstreamError
	if errors.As(err, &ue) && ue.RetryAfter > d {
		d = ue.RetryAfter
	}
	// Other handlers' errors may carry a server's Retry-After too (publishing to an EHR).
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > d {
		d = ra.RetryAfter()
	}
	return d
}

// Process runs one job with its type's handler, without a lease (tests, tools). An unknown type
// is a permanent failure.
func (r *Runner) Process(ctx context.Context, j store.Job) error {
	r.mu.RLock()
	h, ok := r.handlers[j.Type]
	r.mu.RUnlock()
	if !ok {
		return Permanent(fmt.Errorf("no handler for job type %q", j.Type))
	}
	return h(ctx, j)
}

// Run migrates the queue of an earlier version (Migrate), then processes jobs and runs the
// upkeep passes (Upkeep) until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	if n, err := r.Migrate(ctx); err != nil {
		r.log.Error("migrating the old job queue", "migrated", n, "err", err)
	} else if n > 0 {
		r.log.Info("migrated the old job queue", "jobs", n)
	}
	go r.runUpkeep(ctx)
	r.rt.running.Add(1) // read-through waits only for runners that run
	defer r.rt.running.Add(-1)
	wake := r.rt.wakeCh()
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	// Each worker slot takes the next due job as soon as it is free: a slow job (a vendor that
	// throttles, a switched-off API timing out) holds only its own slot, never the others.
	busy := make(chan struct{}, r.cfg.Workers)
	freed := make(chan struct{}, r.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if free := r.cfg.Workers - len(busy); free > 0 {
			jobs, err := r.st.ClaimJobs(ctx, r.owner, free, r.cfg.Lease, r.now())
			if err != nil && ctx.Err() == nil {
				r.log.Error("job queue", "err", fmt.Errorf("pipeline: claim jobs: %w", err))
			}
			for _, j := range jobs {
				busy <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.runJob(ctx, j)
					<-busy
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
			}
			if len(jobs) == free {
				continue // more may be due
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-freed:
		case <-wake: // read-through queued a job a search waits for
		}
	}
}

// RunOnce claims the due jobs (up to Workers) and runs them; it returns how many ran.
func (r *Runner) RunOnce(ctx context.Context) (int, error) {
	jobs, err := r.st.ClaimJobs(ctx, r.owner, r.cfg.Workers, r.cfg.Lease, r.now())
	if err != nil {
		return 0, fmt.Errorf("pipeline: claim jobs: %w", err)
	}
	done := make(chan struct{}, len(jobs))
	for _, j := range jobs {
		go func() {
			defer func() { done <- struct{}{} }()
			r.runJob(ctx, j)
		}()
	}
	for range jobs {
		<-done
	}
	return len(jobs), nil
}

// runJob runs a claimed job while renewing its lease, then completes or fails it.
func (r *Runner) runJob(ctx context.Context, j store.Job) {
	log := r.log.With("job", j.ID, "type", j.Type, "attempt", j.Attempt+1)
	start := time.Now()
	waited := r.now().Sub(j.NotBefore) // due since NotBefore, in the runner's clock
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		r.keepLease(jctx, j, log, stop, cancel)
	}()
	err := r.Process(jctx, j)
	close(stop)
	<-kept
	if errors.Is(context.Cause(jctx), store.ErrLeaseLost) {
		// Another runner took the job over (this one was too slow to renew): whatever it
		// recorded wins, and the job's writes are idempotent.
		log.Warn("job lease lost", "err", err)
		r.jobEnded(j, waited, start, outcomeLost)
		return
	}
	// The bookkeeping outlives a shutdown that began while the job ran: a finished job whose
	// completion is lost runs again.
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer bcancel()
	if err == nil {
		if err := r.st.CompleteJob(bctx, j.ID, r.owner); err != nil {
			log.Error("finishing job", "err", err)
			return
		}
		log.Info("job done", "dur_ms", time.Since(start).Milliseconds())
		r.jobEnded(j, waited, start, outcomeDone)
		return
	}
	if ctx.Err() != nil {
		return // shutting down: the lease expires and the job runs again
	}
	attempt := j.Attempt + 1
	now := r.now()
	f := store.JobFailure{Error: jobError(err), At: now, Dead: isPermanent(err) || attempt >= r.cfg.MaxAttempts}
	if !f.Dead {
		f.RetryAt = now.Add(backoff(attempt, err))
	}
	if ferr := r.st.FailJob(bctx, j.ID, r.owner, f); ferr != nil {
		log.Error("recording job failure", "err", ferr, "cause", err)
		return
	}
	if f.Dead {
		log.Error("job dead-lettered", "err", err)
		r.jobEnded(j, waited, start, outcomeDead)
	} else {
		log.Warn("job failed, will retry", "err", err, "retry_at", f.RetryAt)
		r.jobEnded(j, waited, start, outcomeRetry)
	}
}

// keepLease renews the job's lease every Lease/3 until stop closes; a lost lease cancels the
// job's context with store.ErrLeaseLost.
func (r *Runner) keepLease(ctx context.Context, j store.Job, log *slog.Logger, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	t := time.NewTicker(r.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.st.RenewJob(ctx, j.ID, r.owner, r.cfg.Lease, r.now())
		if errors.Is(err, store.ErrLeaseLost) {
			cancel(store.ErrLeaseLost)
			return
		}
		if err != nil && ctx.Err() == nil {
			// Keep running: the next renewal may succeed, and if the lease expires meanwhile
			// and another runner claims the job, the renewal after says so.
			log.Warn("renewing a job lease failed", "err", err)
		}
	}
}

// workKey is the queue key of a runner job: equal for jobs doing the same work.
func workKey(typ string, w Work) string {
	var b strings.Builder
	b.WriteString(w.Provider)
	b.WriteByte(0)
	b.WriteString(w.Patient)
	b.WriteByte(0)
	for i, k := range w.Kinds {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(k))
	}
	b.WriteByte(0)
	if !w.Start.IsZero() {
		b.WriteString(w.Start.UTC().Format(time.RFC3339Nano))
	}
	b.WriteByte(0)
	if !w.End.IsZero() {
		b.WriteString(w.End.UTC().Format(time.RFC3339Nano))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return typ + ":" + hex.EncodeToString(sum[:16])
}
