// Package pipeline is the sync pipeline: durable jobs (device sync, backfill, incremental sync,
// webhook subscription) that fetch from a vendor through its adapter, map samples to FHIR with
// the one mapper in package fhir, and upsert the resources idempotently.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// JobType names what a job does.
type JobType string

// Job types.
const (
	JobDeviceSync JobType = "device-sync" // devices → Device + DeviceAssociation
	JobBackfill   JobType = "backfill"    // a time window of every enabled kind
	JobSync       JobType = "sync"        // everything changed since the connection's cursor
	JobSubscribe  JobType = "subscribe"   // register the vendor webhook subscription
)

// Job is one unit of durable work. Jobs are idempotent: running one twice writes nothing new.
type Job struct {
	ID        string    `json:"id"`
	Type      JobType   `json:"type"`
	Provider  string    `json:"provider"`
	Patient   string    `json:"patient"`
	Start     time.Time `json:"start,omitzero"` // backfill window
	End       time.Time `json:"end,omitzero"`
	Attempt   int       `json:"attempt"`
	NotBefore time.Time `json:"notBefore,omitzero"` // not run before this time (backoff)
	Created   time.Time `json:"created"`
	LastErr   string    `json:"lastError,omitempty"`
}

// Record kinds of the queue in store.Records.
const (
	kindJob   = "job"
	kindLease = "job-lease"
	kindDead  = "job-dead"
)

// Queue is a durable job queue over store.Records: a job is written before anyone is told it
// exists, workers lease jobs with an atomic create (so two workers never run one job at once),
// failures are retried with exponential backoff and jitter, and after MaxAttempts a job is kept
// as a dead letter, never dropped.
type Queue struct {
	rec         Records
	lease       time.Duration
	maxAttempts int
	now         func() time.Time
}

// Records is the part of store.Records the queue uses.
type Records interface {
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	GetRecord(ctx context.Context, kind, id string) ([]byte, error)
	DeleteRecord(ctx context.Context, kind, id string) error
	ListRecords(ctx context.Context, kind string) ([]store.Record, error)
}

// NewQueue returns a queue; lease is how long a worker owns a job (default 5 min) and
// maxAttempts how many failures make a dead letter (default 8).
func NewQueue(rec Records, lease time.Duration, maxAttempts int) *Queue {
	if lease <= 0 {
		lease = 5 * time.Minute
	}
	if maxAttempts <= 0 {
		maxAttempts = 8
	}
	return &Queue{rec: rec, lease: lease, maxAttempts: maxAttempts, now: time.Now}
}

func newJobID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Enqueue stores a job durably.
func (q *Queue) Enqueue(ctx context.Context, j Job) (Job, error) {
	if j.ID == "" {
		j.ID = newJobID()
	}
	if j.Created.IsZero() {
		j.Created = q.now().UTC()
	}
	b, err := json.Marshal(j)
	if err != nil {
		return j, fmt.Errorf("pipeline: encode job: %w", err)
	}
	if err := q.rec.PutRecord(ctx, kindJob, j.ID, b, time.Time{}); err != nil {
		return j, fmt.Errorf("pipeline: enqueue %s: %w", j.Type, err)
	}
	return j, nil
}

// Claim leases up to max due jobs for this worker.
func (q *Queue) Claim(ctx context.Context, max int) ([]Job, error) {
	recs, err := q.rec.ListRecords(ctx, kindJob)
	if err != nil {
		return nil, fmt.Errorf("pipeline: list jobs: %w", err)
	}
	now := q.now()
	var out []Job
	for _, r := range recs {
		if len(out) >= max {
			break
		}
		var j Job
		if err := json.Unmarshal(r.Doc, &j); err != nil {
			return nil, fmt.Errorf("pipeline: decode job %s: %w", r.ID, err)
		}
		if j.NotBefore.After(now) {
			continue
		}
		err := q.rec.CreateRecord(ctx, kindLease, j.ID, nil, now.Add(q.lease))
		if errors.Is(err, store.ErrDuplicate) {
			continue // another worker has it
		}
		if err != nil {
			return nil, fmt.Errorf("pipeline: lease job %s: %w", j.ID, err)
		}
		out = append(out, j)
	}
	return out, nil
}

// Done removes a finished job.
func (q *Queue) Done(ctx context.Context, j Job) error {
	if err := q.rec.DeleteRecord(ctx, kindJob, j.ID); err != nil {
		return fmt.Errorf("pipeline: finish job %s: %w", j.ID, err)
	}
	return q.rec.DeleteRecord(ctx, kindLease, j.ID)
}

// Fail records a failed attempt: the job is retried after an exponential backoff with jitter,
// or, once it has failed maxAttempts times (or permanent is set), moved to the dead letters.
// It reports whether the job was dead-lettered.
func (q *Queue) Fail(ctx context.Context, j Job, cause error, permanent bool) (dead bool, err error) {
	j.Attempt++
	j.LastErr = cause.Error()
	if permanent || j.Attempt >= q.maxAttempts {
		b, _ := json.Marshal(j)
		if err := q.rec.PutRecord(ctx, kindDead, j.ID, b, time.Time{}); err != nil {
			return false, fmt.Errorf("pipeline: dead-letter job %s: %w", j.ID, err)
		}
		return true, q.Done(ctx, j)
	}
	// 30 s, 1 min, 2 min, … capped at 1 h, with ±20 % jitter so retries do not synchronise.
	d := time.Duration(math.Min(float64(30*time.Second)*math.Pow(2, float64(j.Attempt-1)), float64(time.Hour)))
	d = time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
	j.NotBefore = q.now().Add(d).UTC()
	b, err := json.Marshal(j)
	if err != nil {
		return false, fmt.Errorf("pipeline: encode job: %w", err)
	}
	if err := q.rec.PutRecord(ctx, kindJob, j.ID, b, time.Time{}); err != nil {
		return false, fmt.Errorf("pipeline: reschedule job %s: %w", j.ID, err)
	}
	return false, q.rec.DeleteRecord(ctx, kindLease, j.ID)
}

// Dead lists the dead letters.
func (q *Queue) Dead(ctx context.Context) ([]Job, error) {
	return q.list(ctx, kindDead)
}

// Pending lists the jobs waiting or running.
func (q *Queue) Pending(ctx context.Context) ([]Job, error) {
	return q.list(ctx, kindJob)
}

func (q *Queue) list(ctx context.Context, kind string) ([]Job, error) {
	recs, err := q.rec.ListRecords(ctx, kind)
	if err != nil {
		return nil, fmt.Errorf("pipeline: list %s: %w", kind, err)
	}
	out := make([]Job, 0, len(recs))
	for _, r := range recs {
		var j Job
		if err := json.Unmarshal(r.Doc, &j); err != nil {
			return nil, fmt.Errorf("pipeline: decode %s %s: %w", kind, r.ID, err)
		}
		out = append(out, j)
	}
	return out, nil
}
