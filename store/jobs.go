package store

import (
	"context"
	"errors"
	"slices"
	"time"
)

// ErrLeaseLost means the caller no longer holds the job's lease: it expired and another worker
// claimed the job, or the job was completed, failed or never existed. The caller must stop
// writing on the job's behalf. Stores wrap it; match it with errors.Is.
var ErrLeaseLost = errors.New("job lease lost")

// Job is one unit of durable background work (a vendor sync, a webhook subscription). The store
// keeps it from EnqueueJob until CompleteJob, or as a dead letter after a final FailJob: an
// accepted job is never dropped.
//
// A job is pending from EnqueueJob until CompleteJob or a final FailJob: waiting (no owner) or
// running (leased to Owner until LeaseUntil). A running job whose lease has expired is
// abandoned: ClaimJobs takes it over and JobStats counts it as waiting, but until it is taken
// over its owner still holds it and EnqueueJob treats it as running. Stores keep a job's times
// at microsecond precision (Precision) and return them in UTC.
type Job struct {
	// ID is assigned by EnqueueJob when empty (a new id per job, never reused). An ID the caller
	// chooses must not be that of a stored job (EnqueueJob returns ErrDuplicate).
	ID string
	// Type names the handler that runs the job.
	Type string
	// Key, if set, is the job's idempotency key: at most one pending job holds a key, and an
	// EnqueueJob with the key of a pending job coalesces into it (see Jobs.EnqueueJob).
	Key string
	// Priority orders due jobs: higher first.
	Priority int
	// NotBefore is the earliest time the job may run. EnqueueJob sets a zero NotBefore to its
	// now (at once), so that due jobs of one priority run in the order they became due.
	NotBefore time.Time
	// Payload is the handler's own description of the work (JSON), opaque to the store. An
	// empty payload may come back nil.
	Payload []byte
	// Attempt counts the failed runs so far; LastError is the last failure's public text.
	Attempt   int
	LastError string
	// Created is when the job was first enqueued (set by EnqueueJob when zero).
	Created time.Time
	// Owner and LeaseUntil describe the current lease (zero when the job waits). An owner holds
	// the lease until it completes or fails the job or another owner claims it: a lease that
	// expired and was not yet taken over can still be renewed, completed or failed.
	Owner      string
	LeaseUntil time.Time
	// Rerun marks a running job that was enqueued again while it ran: CompleteJob puts it back
	// in the queue once instead of removing it, so data announced mid-run is fetched too. Its
	// NotBefore is then the time of that enqueue (the first one, if several), when the requeued
	// job becomes due. ClaimJobs clears the mark: the run it starts covers every enqueue before.
	Rerun bool
	// Dead is set on dead letters (DeadJobs); FailedAt is when the job became one (zero on
	// pending jobs).
	Dead     bool
	FailedAt time.Time
}

// JobFailure is what FailJob records.
type JobFailure struct {
	// Error is the failure's public text (never tokens, PHI or raw vendor text).
	Error string
	// RetryAt is when the job may run again (zero: at once, at At or the store's clock). Ignored
	// when Dead is set.
	RetryAt time.Time
	// Dead moves the job to the dead letters: retrying cannot help, or the attempts are used up.
	Dead bool
	// At is when the run failed (zero: the store's clock); it becomes a dead letter's FailedAt.
	At time.Time
}

// JobStats counts the jobs by state.
type JobStats struct {
	// Waiting jobs are due or scheduled; Running ones hold an unexpired lease; Dead are dead letters.
	Waiting, Running, Dead int
}

// Jobs is the durable job queue. Claims are atomic across every store handle on one database
// (several ohx processes may share a MongoDB): no job is leased to two owners at once. All
// times are the caller's clock, passed in, so that leases and backoff are testable. Owners
// must be unique per worker (a random id per process, say): the store tells leases apart by
// owner alone.
type Jobs interface {
	// EnqueueJob stores j durably before returning. If j.Key is empty, or no pending (waiting
	// or running) job holds j.Key, a new job is stored and coalesced is false. Otherwise nothing
	// new is stored, coalesced is true and id is the pending job's: a waiting job keeps its
	// place, takes the earlier of the two NotBefore times and the higher priority; a running job
	// is marked Rerun (and takes the higher priority, for its requeued run). The payload of a
	// coalesced enqueue is dropped: jobs sharing a key must describe the same work. A dead
	// letter holds no key: a new job is stored. j.Type is required; Attempt, LastError, Owner,
	// LeaseUntil, Rerun, Dead and FailedAt are ignored; zero Created and NotBefore become now.
	EnqueueJob(ctx context.Context, j Job, now time.Time) (id string, coalesced bool, err error)
	// ClaimJobs leases up to max due jobs to owner until now+lease: jobs that are ready at or
	// before now — waiting jobs whose NotBefore has come, and running jobs whose lease expired
	// (an abandoned job is taken over) — highest Priority first, then earliest ready time
	// (NotBefore for a waiting job, LeaseUntil for an abandoned one), then earliest Created,
	// then ID. The claimed jobs are returned in that order with Owner and LeaseUntil set and
	// Rerun cleared. It must not list the whole queue: an index gives the due jobs in claim
	// order. owner must not be empty and lease must be at least Precision. Jobs claimed before
	// an error are handed back (a best effort), not returned.
	ClaimJobs(ctx context.Context, owner string, max int, lease time.Duration, now time.Time) ([]Job, error)
	// RenewJob extends owner's lease on the job to now+lease (lease at least Precision: a renew
	// never releases the lease). ErrLeaseLost if owner does not
	// hold it.
	RenewJob(ctx context.Context, id, owner string, lease time.Duration, now time.Time) error
	// CompleteJob removes a finished job, or, if it is marked Rerun, puts it back in the queue
	// (due at once: at the NotBefore the Rerun mark set; Attempt 0, LastError and Rerun cleared).
	// ErrLeaseLost if owner does not hold it.
	CompleteJob(ctx context.Context, id, owner string) error
	// FailJob records a failed run: Attempt is incremented, LastError set and the lease
	// released; the job waits until f.RetryAt (NotBefore), or becomes a dead letter when f.Dead.
	// A Rerun mark is kept until the retry is claimed (the retry covers it). ErrLeaseLost if
	// owner does not hold it.
	FailJob(ctx context.Context, id, owner string, f JobFailure) error
	// GetJob returns a pending job or a dead letter by id, or ErrNotFound.
	GetJob(ctx context.Context, id string) (Job, error)
	// PendingJobs lists up to limit waiting and running jobs in claim order (running jobs by
	// LeaseUntil, as ClaimJobs would order them once their leases expire).
	PendingJobs(ctx context.Context, limit int) ([]Job, error)
	// DeadJobs lists up to limit dead letters, most recently failed first (by FailedAt, then ID).
	DeadJobs(ctx context.Context, limit int) ([]Job, error)
	// RetryDeadJob puts a dead letter back in the queue (due at once: NotBefore now; Attempt 0,
	// FailedAt cleared, LastError kept). ErrNotFound if there is no such dead letter;
	// ErrDuplicate if a pending job holds its key.
	RetryDeadJob(ctx context.Context, id string, now time.Time) error
	// DiscardDeadJob removes a dead letter for good: an operator has looked at it and decided
	// that its work is not to be done. ErrNotFound if there is no dead letter with the id; a
	// pending (waiting or running) job is never removed, so a dead letter retried meanwhile
	// is ErrNotFound too.
	DiscardDeadJob(ctx context.Context, id string) error
	// JobStats counts the jobs by state at now.
	JobStats(ctx context.Context, now time.Time) (JobStats, error)
}

// CoverageKey names one stream of synced data: a patient's data of one kind from one provider.
type CoverageKey struct {
	Provider, Patient, Kind string
}

// Interval is the half-open time range [Start, End).
type Interval struct {
	Start, End time.Time
}

// Precision is the time precision stores keep: job and coverage times are truncated to it.
const Precision = time.Microsecond

// Coverage records what has been synced of one stream: the time ranges fetched completely, and
// the vendor's incremental-sync position.
type Coverage struct {
	CoverageKey
	// Intervals are the ranges fetched completely, sorted, disjoint and not adjacent (Add keeps
	// them so).
	Intervals []Interval
	// Cursor is the vendor's incremental-sync position (an opaque string the adapter chose; ""
	// before the first incremental sync).
	Cursor string
	// Updated is when the coverage last changed.
	Updated time.Time
}

// Add merges [start, end) into the intervals. Empty or inverted ranges are ignored.
func (c *Coverage) Add(start, end time.Time) {
	if !start.Before(end) {
		return
	}
	out := make([]Interval, 0, len(c.Intervals)+1)
	n := Interval{Start: start, End: end}
	placed := false
	for _, iv := range c.Intervals {
		switch {
		case iv.End.Before(n.Start):
			out = append(out, iv)
		case n.End.Before(iv.Start):
			if !placed {
				out = append(out, n)
				placed = true
			}
			out = append(out, iv)
		default: // overlapping or adjacent: merge into n
			if iv.Start.Before(n.Start) {
				n.Start = iv.Start
			}
			if iv.End.After(n.End) {
				n.End = iv.End
			}
		}
	}
	if !placed {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	c.Intervals = out
}

// Normalized returns c as stores keep it: every time in UTC truncated to Precision, the
// intervals merged again (truncation can make two of them touch) and empty ones dropped.
func (c Coverage) Normalized() Coverage {
	n := c
	n.Intervals = nil
	for _, iv := range c.Intervals {
		n.Add(iv.Start.UTC().Truncate(Precision), iv.End.UTC().Truncate(Precision))
	}
	if n.Intervals == nil {
		n.Intervals = []Interval{}
	}
	if !c.Updated.IsZero() {
		n.Updated = c.Updated.UTC().Truncate(Precision)
	}
	return n
}

// Covers reports whether [start, end) lies inside one synced interval.
func (c Coverage) Covers(start, end time.Time) bool {
	for _, iv := range c.Intervals {
		if !start.Before(iv.Start) && !end.After(iv.End) {
			return true
		}
	}
	return false
}

// Coverages stores the sync coverage of every stream.
type Coverages interface {
	// Coverage returns the coverage of every kind of one patient's connection to provider,
	// ordered by kind (none: an empty slice).
	Coverage(ctx context.Context, provider, patient string) ([]Coverage, error)
	// UpdateCoverage changes one stream's coverage atomically: fn gets the stored coverage (the
	// zero Coverage with k set when there is none) and changes it in place; the result is
	// stored Normalized with Updated = now and returned. Concurrent updates of one key through
	// any number of store handles do not lose each other's changes: fn may be called more than
	// once, so it must only change its argument, and it must not call the store (it may run
	// inside the store's write transaction). Changes fn makes to the key are ignored. An error
	// from fn stores nothing and is returned.
	UpdateCoverage(ctx context.Context, k CoverageKey, now time.Time, fn func(*Coverage) error) (Coverage, error)
	// DeleteCoverage forgets every stream of one patient's connection to provider.
	DeleteCoverage(ctx context.Context, provider, patient string) error
}
