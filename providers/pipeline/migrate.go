package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// Record kinds of the queue earlier versions kept in store.Records.
const (
	oldKindJob   = "job"       // a waiting or running job
	oldKindLease = "job-lease" // a running job's lease
	oldKindDead  = "job-dead"  // a dead letter
)

// oldJob is a job as earlier versions stored it.
type oldJob struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Provider  string    `json:"provider"`
	Patient   string    `json:"patient"`
	Start     time.Time `json:"start,omitzero"`
	End       time.Time `json:"end,omitzero"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	Created   time.Time `json:"created"`
}

// Migrate moves the jobs of the queue earlier versions kept in store.Records to the store's job
// queue, so that an upgrade loses no queued work, and deletes the records. It returns how many
// jobs it moved. A job is enqueued before its record is deleted, under its old id: a migration
// interrupted between the two finds the job queued already and only deletes the record.
//
// The old "sync" job (everything since the connection's cursor) becomes an incremental fetch.
// Old dead letters are queued again: the store writes dead letters only through a failed run,
// and one that still cannot succeed is dead-lettered again after one run.
func (r *Runner) Migrate(ctx context.Context) (int, error) {
	n := 0
	for _, kind := range []string{oldKindJob, oldKindDead} {
		recs, err := r.st.ListRecords(ctx, kind)
		if err != nil {
			return n, fmt.Errorf("pipeline: migrate: list %s records: %w", kind, err)
		}
		for _, rec := range recs {
			var o oldJob
			if err := json.Unmarshal(rec.Doc, &o); err != nil {
				return n, fmt.Errorf("pipeline: migrate: decode %s record %s: %w", kind, rec.ID, err)
			}
			typ := o.Type
			if typ == "sync" {
				typ = TypeFetch
			}
			j := Work{Provider: o.Provider, Patient: o.Patient, Start: o.Start, End: o.End}.Job(typ)
			j.ID, j.Created, j.NotBefore = rec.ID, o.Created, o.NotBefore
			if _, _, err := r.st.EnqueueJob(ctx, j, r.now()); err != nil && !errors.Is(err, store.ErrDuplicate) {
				return n, fmt.Errorf("pipeline: migrate job %s: %w", rec.ID, err)
			}
			if err := r.st.DeleteRecord(ctx, kind, rec.ID); err != nil {
				return n, fmt.Errorf("pipeline: migrate job %s: delete record: %w", rec.ID, err)
			}
			n++
		}
	}
	leases, err := r.st.ListRecords(ctx, oldKindLease)
	if err != nil {
		return n, fmt.Errorf("pipeline: migrate: list leases: %w", err)
	}
	for _, rec := range leases {
		if err := r.st.DeleteRecord(ctx, oldKindLease, rec.ID); err != nil {
			return n, fmt.Errorf("pipeline: migrate: delete lease %s: %w", rec.ID, err)
		}
	}
	return n, nil
}
