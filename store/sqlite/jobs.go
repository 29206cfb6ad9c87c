package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// The job queue is the jobs table of queue.db (queue.go). Every write runs in the queue's
// immediate write transaction, which holds the queue file's write lock from BEGIN: a read and the write that
// depends on it see and exclude every other writer, other handles and processes on the file
// included. So claims, coalescing and lease checks need no optimistic retries.
//
// A claim reads the due jobs through jobs_ready (priority DESC, ready_at, created) WHERE
// dead = 0, one priority at a time: the highest priority present, then the next lower one, each
// found with a one-entry index seek, and within a priority the jobs with ready_at <= now in
// claim order, a range read stopped after the jobs still wanted. A single scan of the index in
// ORDER BY order would walk every job not yet due of a priority whose due jobs are fewer than
// max (scheduled syncs, backoffs); this reads at most max jobs plus one entry per priority level
// present in the queue.

var (
	_ store.Jobs      = (*Store)(nil)
	_ store.Coverages = (*Store)(nil)
)

// micros stores a time as Unix µs, 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros, in UTC.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const jobCols = `id, type, key, priority, not_before, payload, attempt, last_error, created, owner, lease_until, rerun, dead, failed_at`

// scanJob reads one row of jobCols.
func scanJob(rows *sql.Rows) (store.Job, error) {
	var j store.Job
	var nb, created, lease, failed int64
	var rerun, dead int
	var payload []byte
	if err := rows.Scan(&j.ID, &j.Type, &j.Key, &j.Priority, &nb, &payload, &j.Attempt, &j.LastError, &created, &j.Owner, &lease, &rerun, &dead, &failed); err != nil {
		return store.Job{}, err
	}
	if len(payload) > 0 {
		j.Payload = payload
	}
	j.NotBefore, j.Created, j.LeaseUntil, j.FailedAt = fromMicros(nb), fromMicros(created), fromMicros(lease), fromMicros(failed)
	j.Rerun, j.Dead = rerun != 0, dead != 0
	return j, nil
}

// collectJobs reads every row of jobCols and closes rows.
func collectJobs(rows *sql.Rows) ([]store.Job, error) {
	defer rows.Close()
	var out []store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, rows.Close()
}

// affected returns the rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// EnqueueJob implements store.Jobs: the job is group-committed with the enqueues running at
// the same time (queue.go), and the call returns once that commit is done.
func (s *Store) EnqueueJob(ctx context.Context, j store.Job, now time.Time) (string, bool, error) {
	if j.Type == "" {
		return "", false, errors.New("sqlite: enqueue job: no type")
	}
	if j.Created.IsZero() {
		j.Created = now
	}
	if j.NotBefore.IsZero() {
		j.NotBefore = now
	}
	r := &enqueueReq{j: j, now: now}
	if err := s.q.enqueue(ctx, r); err != nil {
		return "", false, fmt.Errorf("sqlite: enqueue job %s: %w", j.Type, err)
	}
	return r.id, r.coalesced, nil
}

// ClaimJobs implements store.Jobs (see the comment at the top of the file for the reads).
func (s *Store) ClaimJobs(ctx context.Context, owner string, max int, lease time.Duration, now time.Time) ([]store.Job, error) {
	if owner == "" || lease < store.Precision {
		// A lease shorter than the stored precision would end the instant it starts: the job
		// would be claimable again at once.
		return nil, fmt.Errorf("sqlite: claim jobs: owner %q, lease %s: need an owner and a lease of at least %s", owner, lease, store.Precision)
	}
	if max <= 0 {
		return nil, ctx.Err()
	}
	until := micros(now.Add(lease))
	var out []store.Job
	err := s.q.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		ids, err := s.dueJobs(ctx, tx, max, micros(now))
		if err != nil {
			return err
		}
		for _, id := range ids {
			rows, err := s.q.txQuery(ctx, tx, `UPDATE jobs SET owner = ?, lease_until = ?, ready_at = ?, rerun = 0 WHERE id = ? RETURNING `+jobCols,
				owner, until, until, id)
			if err != nil {
				return err
			}
			js, err := collectJobs(rows)
			if err != nil {
				return err
			}
			out = append(out, js...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim jobs: %w", err)
	}
	return out, nil
}

// Statements of dueJobs; jobs_test.go checks that each is an index seek or range read.
const (
	sqlNextPriority = `SELECT priority FROM jobs WHERE dead = 0 AND priority <= ? ORDER BY priority DESC LIMIT 1`
	sqlDueAt        = `SELECT id FROM jobs WHERE dead = 0 AND priority = ? AND ready_at <= ? ORDER BY ready_at, created, id LIMIT ?`
)

// dueJobs returns the ids of up to max jobs ready at now, in claim order.
func (s *Store) dueJobs(ctx context.Context, tx *sql.Tx, max int, now int64) ([]string, error) {
	var ids []string
	for bound := int64(math.MaxInt64); len(ids) < max; {
		rows, err := s.q.txQuery(ctx, tx, sqlNextPriority, bound)
		if err != nil {
			return nil, err
		}
		var prio int64
		found := rows.Next()
		if found {
			err = rows.Scan(&prio)
		}
		if err := errors.Join(err, rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
		if !found {
			break
		}
		rows, err = s.q.txQuery(ctx, tx, sqlDueAt, prio, now, max-len(ids))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			ids = append(ids, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
		if prio == math.MinInt64 {
			break
		}
		bound = prio - 1
	}
	return ids, nil
}

// leaseLost is the error of a lease operation that matched no job.
func leaseLost(op, id string) error {
	return fmt.Errorf("sqlite: %s job %s: %w", op, id, store.ErrLeaseLost)
}

// RenewJob implements store.Jobs.
func (s *Store) RenewJob(ctx context.Context, id, owner string, lease time.Duration, now time.Time) error {
	if owner == "" {
		return leaseLost("renew", id)
	}
	if lease < store.Precision {
		return fmt.Errorf("sqlite: renew job %s: lease %s: need at least %s", id, lease, store.Precision)
	}
	until := micros(now.Add(lease))
	return s.q.tx(ctx, func(tx *sql.Tx) error {
		n, err := affected(s.q.txExec(ctx, tx, `UPDATE jobs SET lease_until = ?, ready_at = ? WHERE id = ? AND owner = ? AND dead = 0`, until, until, id, owner))
		if err != nil {
			return fmt.Errorf("sqlite: renew job %s: %w", id, err)
		}
		if n == 0 {
			return leaseLost("renew", id)
		}
		return nil
	})
}

// CompleteJob implements store.Jobs.
func (s *Store) CompleteJob(ctx context.Context, id, owner string) error {
	if owner == "" {
		return leaseLost("complete", id)
	}
	return s.q.tx(ctx, func(tx *sql.Tx) error {
		n, err := affected(s.q.txExec(ctx, tx, `DELETE FROM jobs WHERE id = ? AND owner = ? AND dead = 0 AND rerun = 0`, id, owner))
		if err == nil && n == 0 {
			n, err = affected(s.q.txExec(ctx, tx, `UPDATE jobs SET owner = '', lease_until = 0, ready_at = not_before, attempt = 0, last_error = '', rerun = 0
				WHERE id = ? AND owner = ? AND dead = 0 AND rerun = 1`, id, owner))
		}
		if err != nil {
			return fmt.Errorf("sqlite: complete job %s: %w", id, err)
		}
		if n == 0 {
			return leaseLost("complete", id)
		}
		return nil
	})
}

// FailJob implements store.Jobs.
func (s *Store) FailJob(ctx context.Context, id, owner string, f store.JobFailure) error {
	if owner == "" {
		return leaseLost("fail", id)
	}
	return s.q.tx(ctx, func(tx *sql.Tx) error {
		var n int64
		var err error
		if f.Dead {
			at := f.At
			if at.IsZero() {
				at = time.Now()
			}
			n, err = affected(s.q.txExec(ctx, tx, `UPDATE jobs SET attempt = attempt + 1, last_error = ?, owner = '', lease_until = 0, dead = 1, failed_at = ?
				WHERE id = ? AND owner = ? AND dead = 0`, f.Error, micros(at), id, owner))
		} else {
			retry := micros(retryAt(f))
			n, err = affected(s.q.txExec(ctx, tx, `UPDATE jobs SET attempt = attempt + 1, last_error = ?, owner = '', lease_until = 0, not_before = ?, ready_at = ?
				WHERE id = ? AND owner = ? AND dead = 0`, f.Error, retry, retry, id, owner))
		}
		if err != nil {
			return fmt.Errorf("sqlite: fail job %s: %w", id, err)
		}
		if n == 0 {
			return leaseLost("fail", id)
		}
		return nil
	})
}

// GetJob implements store.Jobs.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	rows, err := s.q.query(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?`, id)
	if err != nil {
		return store.Job{}, fmt.Errorf("sqlite: get job %s: %w", id, err)
	}
	js, err := collectJobs(rows)
	if err != nil {
		return store.Job{}, fmt.Errorf("sqlite: get job %s: %w", id, err)
	}
	if len(js) == 0 {
		return store.Job{}, fmt.Errorf("sqlite: get job %s: %w", id, store.ErrNotFound)
	}
	return js[0], nil
}

// Statements of the job lists; jobs_test.go checks that they read jobs_ready and jobs_dead in
// order.
const (
	sqlPendingJobs = `SELECT ` + jobCols + ` FROM jobs WHERE dead = 0 ORDER BY priority DESC, ready_at, created, id LIMIT ?`
	sqlDeadJobs    = `SELECT ` + jobCols + ` FROM jobs WHERE dead = 1 ORDER BY failed_at DESC, id LIMIT ?`
)

// PendingJobs implements store.Jobs.
func (s *Store) PendingJobs(ctx context.Context, limit int) ([]store.Job, error) {
	return s.listJobs(ctx, "pending", sqlPendingJobs, limit)
}

// DeadJobs implements store.Jobs.
func (s *Store) DeadJobs(ctx context.Context, limit int) ([]store.Job, error) {
	return s.listJobs(ctx, "dead", sqlDeadJobs, limit)
}

func (s *Store) listJobs(ctx context.Context, what, query string, limit int) ([]store.Job, error) {
	if limit <= 0 {
		return nil, ctx.Err()
	}
	rows, err := s.q.query(ctx, query, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list %s jobs: %w", what, err)
	}
	js, err := collectJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list %s jobs: %w", what, err)
	}
	return js, nil
}

// RetryDeadJob implements store.Jobs.
func (s *Store) RetryDeadJob(ctx context.Context, id string, now time.Time) error {
	err := s.q.tx(ctx, func(tx *sql.Tx) error {
		rows, err := s.q.txQuery(ctx, tx, `SELECT key FROM jobs WHERE id = ? AND dead = 1`, id)
		if err != nil {
			return err
		}
		var key string
		found := rows.Next()
		if found {
			err = rows.Scan(&key)
		}
		if err := errors.Join(err, rows.Err(), rows.Close()); err != nil {
			return err
		}
		if !found {
			return store.ErrNotFound
		}
		if key != "" {
			rows, err := s.q.txQuery(ctx, tx, `SELECT id FROM jobs WHERE key = ? AND key <> '' AND dead = 0`, key)
			if err != nil {
				return err
			}
			held := rows.Next()
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
			if held {
				return fmt.Errorf("a pending job holds its key: %w", store.ErrDuplicate)
			}
		}
		nb := micros(now)
		_, err = s.q.txExec(ctx, tx, `UPDATE jobs SET dead = 0, failed_at = 0, attempt = 0, owner = '', lease_until = 0, rerun = 0,
			not_before = ?, ready_at = ? WHERE id = ?`, nb, nb, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: retry dead job %s: %w", id, err)
	}
	return nil
}

// JobStats implements store.Jobs. It counts in one pass over the table: an operator's view,
// not a hot path.
func (s *Store) JobStats(ctx context.Context, now time.Time) (store.JobStats, error) {
	rows, err := s.q.query(ctx, `SELECT coalesce(sum(dead = 0 AND (owner = '' OR lease_until <= ?1)), 0),
		coalesce(sum(dead = 0 AND owner <> '' AND lease_until > ?1), 0), coalesce(sum(dead = 1), 0) FROM jobs`, micros(now))
	if err != nil {
		return store.JobStats{}, fmt.Errorf("sqlite: job stats: %w", err)
	}
	defer rows.Close()
	var st store.JobStats
	if rows.Next() {
		err = rows.Scan(&st.Waiting, &st.Running, &st.Dead)
	}
	if err := errors.Join(err, rows.Err()); err != nil {
		return store.JobStats{}, fmt.Errorf("sqlite: job stats: %w", err)
	}
	return st, nil
}

// intervalsJSON encodes intervals as [[start, end], …] in Unix µs.
func intervalsJSON(ivs []store.Interval) ([]byte, error) {
	pairs := make([][2]int64, len(ivs))
	for i, iv := range ivs {
		pairs[i] = [2]int64{iv.Start.UnixMicro(), iv.End.UnixMicro()}
	}
	return json.Marshal(pairs)
}

func parseIntervals(b []byte) ([]store.Interval, error) {
	var pairs [][2]int64
	if err := json.Unmarshal(b, &pairs); err != nil {
		return nil, err
	}
	out := make([]store.Interval, len(pairs))
	for i, p := range pairs {
		out[i] = store.Interval{Start: time.UnixMicro(p[0]).UTC(), End: time.UnixMicro(p[1]).UTC()}
	}
	return out, nil
}

// scanCoverage reads provider, patient, kind, intervals, cursor, updated.
func scanCoverage(rows *sql.Rows) (store.Coverage, error) {
	var c store.Coverage
	var ivs []byte
	var updated int64
	if err := rows.Scan(&c.Provider, &c.Patient, &c.Kind, &ivs, &c.Cursor, &updated); err != nil {
		return store.Coverage{}, err
	}
	var err error
	if c.Intervals, err = parseIntervals(ivs); err != nil {
		return store.Coverage{}, err
	}
	c.Updated = fromMicros(updated)
	return c, nil
}

// Coverage implements store.Coverages.
func (s *Store) Coverage(ctx context.Context, provider, patient string) ([]store.Coverage, error) {
	rows, err := s.query(ctx, `SELECT provider, patient, kind, intervals, cursor, updated FROM coverage WHERE provider = ? AND patient = ? ORDER BY kind`, provider, patient)
	if err != nil {
		return nil, fmt.Errorf("sqlite: coverage: %w", err)
	}
	defer rows.Close()
	out := []store.Coverage{}
	for rows.Next() {
		c, err := scanCoverage(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: coverage: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: coverage: %w", err)
	}
	return out, nil
}

// UpdateCoverage implements store.Coverages: read, fn and write are one write transaction, so
// fn runs once.
func (s *Store) UpdateCoverage(ctx context.Context, k store.CoverageKey, now time.Time, fn func(*store.Coverage) error) (store.Coverage, error) {
	var out store.Coverage
	var fnErr error
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := s.txQuery(ctx, tx, `SELECT provider, patient, kind, intervals, cursor, updated FROM coverage WHERE provider = ? AND patient = ? AND kind = ?`,
			k.Provider, k.Patient, k.Kind)
		if err != nil {
			return err
		}
		c := store.Coverage{CoverageKey: k}
		if rows.Next() {
			c, err = scanCoverage(rows)
		}
		if err := errors.Join(err, rows.Err(), rows.Close()); err != nil {
			return err
		}
		if fnErr = fn(&c); fnErr != nil {
			return fnErr
		}
		c.CoverageKey, c.Updated = k, now
		c = c.Normalized()
		ivs, err := intervalsJSON(c.Intervals)
		if err != nil {
			return err
		}
		if _, err := s.txExec(ctx, tx, `INSERT INTO coverage (provider, patient, kind, intervals, cursor, updated) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (provider, patient, kind) DO UPDATE SET intervals = excluded.intervals, cursor = excluded.cursor, updated = excluded.updated`,
			k.Provider, k.Patient, k.Kind, ivs, c.Cursor, micros(c.Updated)); err != nil {
			return err
		}
		out = c
		return nil
	})
	if fnErr != nil {
		return store.Coverage{}, fnErr
	}
	if err != nil {
		return store.Coverage{}, fmt.Errorf("sqlite: update coverage %s/%s/%s: %w", k.Provider, k.Patient, k.Kind, err)
	}
	return out, nil
}

// DeleteCoverage implements store.Coverages.
func (s *Store) DeleteCoverage(ctx context.Context, provider, patient string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, `DELETE FROM coverage WHERE provider = ? AND patient = ?`, provider, patient); err != nil {
			return fmt.Errorf("sqlite: delete coverage: %w", err)
		}
		return nil
	})
}

// retryAt is when a failed job may run again: f.RetryAt, or at once (f.At, else the store's
// clock) when it is zero — never the zero time, which would put the job ahead of every job that
// became due before it.
func retryAt(f store.JobFailure) time.Time {
	switch {
	case !f.RetryAt.IsZero():
		return f.RetryAt
	case !f.At.IsZero():
		return f.At
	}
	return time.Now()
}
