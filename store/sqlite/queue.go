package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// The job queue lives in a database file of its own, queue.db next to ohx.db: its own WAL, its
// own write lock and its own writer connection. A webhook's acknowledgement waits for the commit
// of its job, and in one file that commit would queue behind the sync pipeline's bulk upserts,
// which hold the single writer for a whole batch of resources (SQLite allows one writer per
// database file: https://www.sqlite.org/lockingv3.html, https://www.sqlite.org/wal.html#concurrency).
// Sync coverage stays in ohx.db: it is written by the jobs, not on the acknowledgement path.
//
// Enqueues are group-committed (enqueueGroup): concurrent EnqueueJob calls are written in one
// transaction and each returns once the commit that holds its job is done, so a burst of
// notifications costs one commit (and, with synchronous=FULL, one fsync) per group instead of
// one per notification.

// queueFile is the queue's database file in the data directory.
const queueFile = "queue.db"

// Queue durability (Options.QueueSync). The acknowledgement requirement is that a notification
// answered 2xx survives the process being killed (kill -9): QueueSyncNormal meets it, the WAL
// frames are written to the OS before the commit returns. QueueSyncFull adds power-loss
// durability at one fsync per group commit. On the 2-core bench machine (ext4 on virtio) an
// fsync alone is 0.24 ms p50, 0.44 ms p99, and with the runner idle `full` acknowledged 1,000
// notifications/s at p99 5.95 ms (2.33 ms with 20,000 queued), `normal` at p99 4.50 ms; while
// the runner writes 12,000 Observations/s into ohx.db on the same file system, a queue fsync
// also waits for the journal to flush ohx.db's data and `full` had 10× as many group commits
// over 5 ms as `normal`. `ohx serve` defaults to `full` (cmd/ohx/config.go), the stronger
// promise; `normal` gives the lower tail and still meets the kill -9 requirement. What a power
// loss costs with `normal`: the last acknowledged notifications, which a vendor does not
// redeliver; the next reconciliation re-reads their data.
const (
	// QueueSyncFull syncs the queue's WAL at every commit: an acknowledged job survives a
	// power loss or an OS crash too (https://www.sqlite.org/pragma.html#pragma_synchronous).
	QueueSyncFull = "full"
	// QueueSyncNormal syncs at checkpoints only: an acknowledged job survives the process being
	// killed (the WAL is in the OS's page cache), not a power loss.
	QueueSyncNormal = "normal"
)

// queue is the job queue's database: one writer connection behind wtx, a small read pool, the
// group committer of enqueues and the background checkpointer.
type queue struct {
	w, r *sql.DB
	ck   *sql.DB // the checkpointer's connection (see checkpointer)
	wal  string  // the WAL file's path
	// pageSize is the file's page size in bytes (a WAL frame holds one page).
	pageSize int64
	wstmts   *stmtCache
	rstmts   *stmtCache
	wtx      chan struct{}
	log      *slog.Logger

	// enq is buffered (maxGroup): an enqueue hands its job over without waiting for the
	// committer to take it, and parks once, for its commit, instead of twice; under CPU
	// contention each wake-up can wait for a P (the webhook bench's scheduler-latency profile).
	enq  chan *enqueueReq
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
	// groups counts the enqueue transactions committed (tests: group commit happens).
	groups, grouped int64
	gmu             sync.Mutex
}

// queueMigrations are the queue file's schema (see migrations for the rules). The table is the
// jobs table ohx.db had (migration 4 there), whose rows openQueue moves here.
var queueMigrations = []string{
	`CREATE TABLE jobs (id TEXT NOT NULL PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL, priority INTEGER NOT NULL,
		not_before INTEGER NOT NULL, ready_at INTEGER NOT NULL, payload BLOB NOT NULL, attempt INTEGER NOT NULL,
		last_error TEXT NOT NULL, created INTEGER NOT NULL, owner TEXT NOT NULL, lease_until INTEGER NOT NULL,
		rerun INTEGER NOT NULL, dead INTEGER NOT NULL, failed_at INTEGER NOT NULL) WITHOUT ROWID;
	CREATE INDEX jobs_ready ON jobs (priority DESC, ready_at, created) WHERE dead = 0;
	CREATE UNIQUE INDEX jobs_key ON jobs (key) WHERE key <> '' AND dead = 0;
	CREATE INDEX jobs_dead ON jobs (failed_at DESC) WHERE dead = 1;`,
}

// openQueue opens (creating if needed) queue.db in dir and moves into it the jobs that main's
// jobs table still holds (a store written before the queue had its own file).
func openQueue(ctx context.Context, dir string, main *sql.DB, durability string, log *slog.Logger) (*queue, error) {
	switch durability {
	case "":
		durability = QueueSyncFull
	case QueueSyncFull, QueueSyncNormal:
	default:
		return nil, fmt.Errorf("sqlite: queue sync %q: want %q or %q", durability, QueueSyncFull, QueueSyncNormal)
	}
	path := filepath.Join(dir, queueFile)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	err = migrateWith(ctx, db, queueMigrations)
	if err == nil {
		_, err = db.ExecContext(ctx, "PRAGMA journal_mode=WAL")
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: queue: %w", err)
	}
	base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=synchronous(" + durability + ")&_pragma=journal_mode(WAL)&_pragma=mmap_size(0)"
	// The writer never checkpoints (wal_autocheckpoint 0): by default the commit that takes the
	// WAL past 1,000 pages copies them all into the database file and syncs it before it returns
	// (https://www.sqlite.org/wal.html#automatic_checkpoint), and the enqueues of that group,
	// webhook acknowledgements among them, waited tens of milliseconds for it. The checkpointer
	// does it on its own connection instead (see checkpointer).
	w, err := sql.Open("sqlite", base+"&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open queue writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open queue readers: %w", err)
	}
	r.SetMaxOpenConns(2)
	r.SetMaxIdleConns(2)
	r.SetConnMaxLifetime(0)
	ck, err := sql.Open("sqlite", base)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open queue checkpointer: %w", err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxLifetime(0)
	var pageSize int64
	if err := w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		errors.Join(w.Close(), r.Close(), ck.Close())
		return nil, fmt.Errorf("sqlite: queue: read page size: %w", err)
	}
	q := &queue{w: w, r: r, ck: ck, pageSize: pageSize, wal: path + "-wal", wstmts: newStmtCache(w), rstmts: newStmtCache(r), wtx: make(chan struct{}, 1), log: log,
		enq: make(chan *enqueueReq, maxGroup), stop: make(chan struct{})}
	if err := q.adopt(ctx, main); err != nil {
		q.close()
		return nil, err
	}
	q.done.Add(2)
	go q.committer()
	go q.checkpointer()
	return q, nil
}

// queueCheckpointEvery is how often the queue's checkpointer runs; past queueWALRestart bytes
// of WAL it makes the WAL start over, past a WAL file of queueWALLimit it also waits for
// readers (see checkpointer).
//
// A restart holds the committer out for its pass, which its two syncs make 1.3 to 4.6 ms long
// on the bench machine while ohx.db is written too: every enqueue arriving meanwhile waits
// that long. At 1,000 notifications/s the queue appends ~4,300 frames (4 KiB pages) a second,
// so a restart at 4 MiB came every 0.3 s and held up about 1 % of the acknowledgements, their
// p99 on its own; at 32 MiB it comes every 2 s. Measured (`webhook-empty`, OHX_QUEUE_SYNC=normal,
// runner nearly idle): p99 after the first 3 s 4.3 ms with 4 MiB, 2.8 ms with 32 MiB. The WAL
// file stays near that size on disk, which is all it costs.
const (
	queueCheckpointEvery = 100 * time.Millisecond
	queueWALRestart      = 32 << 20
	queueWALLimit        = 64 << 20
)

// checkpointer copies the queue's committed WAL pages into queue.db until the queue closes. A
// PASSIVE checkpoint takes no lock a writer needs and waits for nobody
// (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html): group commits go on while it copies
// and syncs. The WAL starts over at its beginning only when a write transaction begins with
// the whole WAL copied (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files),
// which commits a millisecond apart seldom leave time for: the frames appended during a
// checkpoint are left for the next. So once the WAL holds more than queueWALRestart, a second pass
// copies them holding wtx, which keeps the committer out for that short pass (the frames of
// ~0.1 s and two syncs; the queue's own lock, not SQLite's busy handler, whose sleeps are 1 to
// 100 ms): the next commit then overwrites the WAL from its start, in blocks the file already
// has. Should a reader hold an old snapshot throughout, past queueWALLimit a TRUNCATE
// checkpoint waits for it (and makes the writer wait, through its busy handler): a stall that
// bounds the file.
func (q *queue) checkpointer() {
	defer q.done.Done()
	t := time.NewTicker(queueCheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		}
		if err := q.checkpoint(); err != nil {
			q.log.Warn("queue wal checkpoint", "err", err)
		}
	}
}

// checkpoint is one round of the checkpointer. The WAL's length is the frames the PASSIVE pass
// reports (the file keeps its size when the WAL starts over, so the file's size says nothing).
func (q *queue) checkpoint() error {
	if fileSize(q.wal) > queueWALLimit {
		_, err := q.ck.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		return err
	}
	var busy, frames, copied int64
	if err := q.ck.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		return err
	}
	if frames*q.pageSize <= queueWALRestart {
		return nil
	}
	select {
	case q.wtx <- struct{}{}:
	case <-q.stop:
		return nil
	}
	defer func() { <-q.wtx }()
	_, err := q.ck.Exec("PRAGMA wal_checkpoint(PASSIVE)")
	return err
}

// adopt moves the jobs of main's jobs table into the queue, inside main's write transaction:
// a second handle opening the same store at once waits for it and finds the table empty. The
// jobs are committed to the queue before they leave main; a crash between the two commits
// leaves them in both, and the next open copies them again, which inserts nothing (the same
// ids). A job whose key a queued job holds is the same work (see store.Jobs.EnqueueJob): it is
// not copied.
func (q *queue) adopt(ctx context.Context, main *sql.DB) error {
	tx, err := main.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+jobCols+`, ready_at FROM jobs`)
	if err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	type row struct {
		vals [15]any
	}
	var rs []row
	for rows.Next() {
		var r row
		ptrs := make([]any, len(r.vals))
		for i := range r.vals {
			ptrs[i] = &r.vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
		}
		rs = append(rs, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	err = q.tx(ctx, func(qtx *sql.Tx) error {
		for _, r := range rs {
			if _, err := qtx.ExecContext(ctx, `INSERT INTO jobs (`+jobCols+`, ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT DO NOTHING`, r.vals[:]...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM jobs`); err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: queue: adopt jobs: %w", err)
	}
	q.log.Info("moved the job queue to its own file", "jobs", len(rs), "file", queueFile)
	return nil
}

// close stops the committer (enqueues waiting for it fail) and closes the pools.
func (q *queue) close() error {
	q.once.Do(func() { close(q.stop) })
	q.done.Wait()
	// A final checkpoint folds the WAL into the file; a failure is harmless (the WAL is kept).
	if _, err := q.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		q.log.Warn("queue wal checkpoint", "err", err)
	}
	q.wstmts.close()
	q.rstmts.close()
	return errors.Join(q.r.Close(), q.w.Close(), q.ck.Close())
}

// tx runs fn in an immediate write transaction of the queue file.
func (q *queue) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case q.wtx <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sqlite: queue: begin: %w", ctx.Err())
	}
	defer func() { <-q.wtx }()
	tx, err := q.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: queue: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: queue: commit: %w", err)
	}
	if err := q.wstmts.preparePending(ctx); err != nil {
		q.log.Warn("preparing queue statements failed", "err", err)
	}
	return nil
}

// txExec and txQuery run a statement inside tx, prepared once it has been seen.
func (q *queue) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := q.wstmts.cached(query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

func (q *queue) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := q.wstmts.cached(query); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// query runs a cached read statement on the queue's read pool.
func (q *queue) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, release, err := q.rstmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	defer release()
	return st.QueryContext(ctx, args...)
}

// enqueueReq is one EnqueueJob waiting for its group's commit.
type enqueueReq struct {
	ctx  context.Context // the caller's: a request whose caller gave up before its group is dropped
	j    store.Job
	now  time.Time
	done chan struct{}
	// The outcome, set before done closes.
	id        string
	coalesced bool
	err       error
}

// maxGroup bounds the enqueues of one transaction, so that one commit never holds the queue's
// write lock for long.
const maxGroup = 512

// errQueueClosed is the error of an enqueue after Close.
var errQueueClosed = errors.New("sqlite: the store is closed")

// enqueue hands r to the committer and waits for its commit. A caller whose context has ended
// stores nothing; one whose context ends while its group commits returns the context's error
// and its job may still be committed (a job stored twice is coalesced by key or harmless: jobs
// are idempotent).
func (q *queue) enqueue(ctx context.Context, r *enqueueReq) error {
	if err := ctx.Err(); err != nil {
		return err // the channel has room: the select below could hand r over all the same
	}
	r.ctx, r.done = ctx, make(chan struct{})
	select {
	case q.enq <- r:
	case <-q.stop:
		return errQueueClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-q.stop:
		// Closing: r may still be in the channel's buffer, which the committer no longer reads.
		select {
		case <-r.done:
			return r.err
		default:
			return errQueueClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer writes the enqueues in groups until the queue closes: it takes one, gathers every
// other one already waiting (those that arrived during the previous commit), and commits them
// together. Under load each commit thus carries what arrived during the one before; alone, an
// enqueue waits for no one.
func (q *queue) committer() {
	defer q.done.Done()
	group := make([]*enqueueReq, 0, maxGroup)
	for {
		group = group[:0]
		select {
		case r := <-q.enq:
			group = append(group, r)
		case <-q.stop:
			return
		}
	gather:
		for len(group) < maxGroup {
			select {
			case r := <-q.enq:
				group = append(group, r)
			default:
				break gather
			}
		}
		q.writeGroup(group)
		for _, r := range group {
			close(r.done)
		}
	}
}

// writeGroup writes a group in one transaction. If the transaction fails, each enqueue is tried
// again in a transaction of its own, so that one bad job does not fail the others.
func (q *queue) writeGroup(group []*enqueueReq) {
	// The group outlives its callers' contexts: a commit once begun is finished.
	ctx := context.Background()
	group = slices.DeleteFunc(slices.Clone(group), func(r *enqueueReq) bool {
		r.err = r.ctx.Err() // its caller has returned this error: it must not be stored
		return r.err != nil
	})
	if len(group) == 0 {
		return
	}
	err := q.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range group {
			r.id, r.coalesced, r.err = q.enqueueTx(ctx, tx, r.j, r.now)
			if r.err != nil && !errors.Is(r.err, store.ErrDuplicate) {
				return r.err
			}
		}
		return nil
	})
	if err == nil {
		q.gmu.Lock()
		q.groups++
		q.grouped += int64(len(group))
		q.gmu.Unlock()
		return
	}
	if len(group) == 1 {
		group[0].err = err
		return
	}
	for _, r := range group {
		r.err = q.tx(ctx, func(tx *sql.Tx) error {
			var err error
			r.id, r.coalesced, err = q.enqueueTx(ctx, tx, r.j, r.now)
			return err
		})
	}
}

// enqueueTx stores one job (or coalesces it) inside tx; see store.Jobs.EnqueueJob.
func (q *queue) enqueueTx(ctx context.Context, tx *sql.Tx, j store.Job, now time.Time) (string, bool, error) {
	nb := micros(j.NotBefore)
	if j.Key != "" {
		rows, err := q.txQuery(ctx, tx, `SELECT id, owner FROM jobs WHERE key = ? AND key <> '' AND dead = 0`, j.Key)
		if err != nil {
			return "", false, err
		}
		var holder, owner string
		found := rows.Next()
		if found {
			err = rows.Scan(&holder, &owner)
		}
		if err := errors.Join(err, rows.Err(), rows.Close()); err != nil {
			return "", false, err
		}
		if found {
			if owner == "" { // waiting: the earlier NotBefore, the higher priority
				_, err = q.txExec(ctx, tx, `UPDATE jobs SET not_before = min(not_before, ?), ready_at = min(not_before, ?),
					priority = max(priority, ?) WHERE id = ?`, nb, nb, j.Priority, holder)
			} else { // running: run once more when it completes, due from the first such enqueue
				_, err = q.txExec(ctx, tx, `UPDATE jobs SET rerun = 1, not_before = CASE WHEN rerun = 1 THEN not_before ELSE ? END,
					priority = max(priority, ?) WHERE id = ?`, micros(now), j.Priority, holder)
			}
			return holder, true, err
		}
	}
	id := j.ID
	if id == "" {
		id = store.NewID()
	} else {
		rows, err := q.txQuery(ctx, tx, `SELECT 1 FROM jobs WHERE id = ?`, id)
		if err != nil {
			return "", false, err
		}
		taken := rows.Next()
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return "", false, err
		}
		if taken {
			return "", false, fmt.Errorf("job %s: %w", id, store.ErrDuplicate)
		}
	}
	_, err := q.txExec(ctx, tx, `INSERT INTO jobs (`+jobCols+`, ready_at) VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, '', 0, 0, 0, 0, ?)`,
		id, j.Type, j.Key, j.Priority, nb, nonNil(j.Payload), micros(j.Created), nb)
	return id, false, err
}
