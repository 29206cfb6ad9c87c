// Package sqlite is the embedded default store: a single SQLite file (pure Go, no cgo) in WAL mode,
// with index tables laid out so that the hot search — one patient's Observations of one code in a
// date range, newest first — reads only matching rows from a table clustered on exactly that key.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Store is the SQLite implementation of store.Store.
type Store struct {
	w *sql.DB // the single writer connection
	r *sql.DB // read-only pool
	// ck checkpoints the WAL in the background (see checkpointer).
	ck             *sql.DB
	ckStop, ckDone chan struct{}
	// ckMu serialises the checkpoints of this process: SQLite runs one at a time per file and
	// fails a second one at once with SQLITE_BUSY, without its busy handler
	// (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html).
	ckMu sync.Mutex
	wal  walCap
	// wtx is held for the whole of a write transaction, from the WAL check to the note of its
	// growth (tx): the single writer connection alone would let the next writer begin between
	// this one's commit and its note, and several waiting writers pass the check at once.
	wtx chan struct{}
	log *slog.Logger
	reg *search.Registry

	gens    generations
	systems systemCache // resolveSystems
	rstmts  *stmtCache
	wstmts  *stmtCache

	mu      sync.RWMutex
	maxSpan map[string]int64 // per resource type: the longest date range stored (see dateBounds)
	keep    int              // Options.HistoryVersions

	// subqueryChains makes Search leave every chained clause a subquery (see chain.go), so that
	// tests reach that path with few targets.
	subqueryChains bool

	// totalBound is store.TotalBound; tests lower it.
	totalBound int

	// q is the job queue, in a file of its own (queue.go).
	q *queue
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.ChangeTracker = (*Store)(nil)
)

// Options tunes the store.
type Options struct {
	// Readers is the size of the read pool (default GOMAXPROCS: more readers than cores only adds
	// contention).
	Readers int
	// HistoryVersions is how many versions of each resource are kept, the current one included:
	// 0 keeps every version, N prunes older ones when the resource is written.
	HistoryVersions int
	// QueueSync is the job queue's durability: QueueSyncFull (default: an acknowledged job
	// survives a power loss) or QueueSyncNormal (it survives the process being killed).
	QueueSync string
}

// Open opens (creating if needed) the database file ohx.db in dir and migrates its schema.
func Open(ctx context.Context, dir string, opt Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data dir: %w", err)
	}
	path := filepath.Join(dir, "ohx.db")
	if err := initFile(ctx, path); err != nil {
		return nil, err
	}
	// busy_timeout comes first: the driver applies pragmas in order and the others may wait.
	// mmap stays off: every connection would map the whole file and RSS would read in GB.
	base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=journal_mode(WAL)&_pragma=mmap_size(0)"
	// The writer never checkpoints in its commit path (wal_autocheckpoint 0): a background
	// checkpointer on its own connection moves WAL pages into the file, on the other core, and
	// pages rewritten between two checkpoints are copied once instead of once per commit. Only
	// when the WAL nears its limit does the writer checkpoint, before its next transaction
	// (capWAL). journal_size_limit(0): when the WAL starts over at its beginning, the writer truncates the
	// file at that transaction's commit (https://www.sqlite.org/pragma.html#pragma_journal_size_limit),
	// so the file's size is where the WAL ends, which capWAL reads.
	// temp_store(MEMORY): the statement journals of the multi-row INSERTs (batch.go; SQLite keeps
	// one per statement that may fail halfway, https://www.sqlite.org/tempfiles.html#stmtjrnl)
	// stay in memory. In a temporary file they were written a page per page a statement touched:
	// 2.2 GB of the 4.8 GB the benchmark backfill (ohxbench -only pipeline) wrote.
	w, err := sql.Open("sqlite", base+"&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(0)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	// One writer: SQLite serialises writers anyway, and immediate transactions on a single
	// connection never fail with SQLITE_BUSY_SNAPSHOT.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	n := opt.Readers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)&_pragma=cache_size(-8192)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	ck, err := sql.Open("sqlite", base)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	ck.SetMaxOpenConns(1)
	var pageSize int64
	if err := w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		errors.Join(w.Close(), r.Close(), ck.Close())
		return nil, fmt.Errorf("sqlite: read page size: %w", err)
	}
	s := &Store{w: w, r: r, ck: ck, ckStop: make(chan struct{}), ckDone: make(chan struct{}), log: log, reg: search.DefaultRegistry(), maxSpan: map[string]int64{},
		rstmts: newStmtCache(r), wstmts: newStmtCache(w), totalBound: store.TotalBound, wtx: make(chan struct{}, 1)}
	s.keep = max(opt.HistoryVersions, 0)
	s.wal.path = path + "-wal"
	s.wal.limit = pageSize * walLimit
	go s.checkpointer()
	if err := s.loadSpans(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.reindex(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.q, err = openQueue(ctx, dir, w, opt.QueueSync, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// initFile creates the file with 16 KiB pages and migrates it. The page size must be set on a
// plain connection before the first table exists and before any WAL connection opens the file
// (https://www.sqlite.org/pragma.html#pragma_page_size): bigger pages keep a patient's rows of the clustered tables together.
func initFile(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "PRAGMA page_size=16384"); err != nil {
		return fmt.Errorf("sqlite: set page size: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		return err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: enable WAL: %w", err)
	}
	return nil
}

// migrations are applied in order; schema_version records how many ran. Never edit a shipped
// migration: append a new one.
var migrations = []string{
	`CREATE TABLE resources (
		type TEXT NOT NULL,
		id TEXT NOT NULL,
		version INTEGER NOT NULL,
		last_updated INTEGER NOT NULL,
		deleted INTEGER NOT NULL DEFAULT 0,
		patient TEXT NOT NULL DEFAULT '',
		sort_date INTEGER NOT NULL,   -- start of the sort date (Observation.date, Patient.birthdate) or MinTime
		date_lo INTEGER,              -- the date parameter's range, NULL when absent
		date_hi INTEGER,
		json TEXT,
		PRIMARY KEY (type, id)
	) WITHOUT ROWID;
	CREATE INDEX resources_lu ON resources (type, last_updated, id);
	CREATE INDEX resources_sd ON resources (type, sort_date, id);
	CREATE INDEX resources_patient ON resources (type, patient, sort_date, id);
	CREATE TABLE idx_token (type TEXT NOT NULL, col TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, code, system, id)) WITHOUT ROWID;
	CREATE INDEX idx_token_id ON idx_token (type, id);
	CREATE TABLE idx_ref (type TEXT NOT NULL, col TEXT NOT NULL, ref_type TEXT NOT NULL, ref_id TEXT NOT NULL, ref_url TEXT NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, ref_id, ref_type, ref_url, id)) WITHOUT ROWID;
	CREATE INDEX idx_ref_id ON idx_ref (type, id);
	CREATE INDEX idx_ref_url ON idx_ref (type, col, ref_url) WHERE ref_url <> '';
	CREATE TABLE idx_string (type TEXT NOT NULL, col TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, norm, exact, id)) WITHOUT ROWID;
	CREATE INDEX idx_string_id ON idx_string (type, id);
	CREATE TABLE idx_date (type TEXT NOT NULL, col TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, lo, hi, id)) WITHOUT ROWID;
	CREATE INDEX idx_date_id ON idx_date (type, id);
	CREATE TABLE idx_quantity (type TEXT NOT NULL, col TEXT NOT NULL, num REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, num, system, code, unit, id)) WITHOUT ROWID;
	CREATE INDEX idx_quantity_id ON idx_quantity (type, id);
	-- The hot path: an Observation row per code coding, clustered on (patient, code, time) and
	-- carrying the JSON, so a patient + code + date search is one contiguous range scan in date
	-- order that never leaves this table. Its columns are named as in resources so that every
	-- other filter applies unchanged.
	CREATE TABLE obs_clinical (patient TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, sort_date INTEGER NOT NULL, id TEXT NOT NULL,
		version INTEGER NOT NULL, last_updated INTEGER NOT NULL, date_lo INTEGER, date_hi INTEGER, json TEXT NOT NULL,
		PRIMARY KEY (patient, system, code, sort_date, id)) WITHOUT ROWID;
	CREATE INDEX obs_clinical_id ON obs_clinical (id);
	CREATE TABLE date_span (type TEXT PRIMARY KEY, max_span INTEGER NOT NULL) WITHOUT ROWID;`,
	// The small document store (store.Records); expires is Unix µs, 0 = never.
	`CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, expires INTEGER NOT NULL,
		PRIMARY KEY (kind, id)) WITHOUT ROWID;
	CREATE INDEX records_expires ON records (expires) WHERE expires > 0;`,
	// Prior versions of resources (history.go); json NULL is a deletion. A rowid table: copies
	// are appended at its end and only the small index takes random inserts (a table clustered
	// on (type, id, version) would dirty a page of JSON per copied resource in every commit).
	`CREATE TABLE history (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated INTEGER NOT NULL, json TEXT);
	CREATE UNIQUE INDEX history_version ON history (type, id, version);`,
	// The job queue (store.Jobs, jobs.go) and sync coverage (store.Coverages). Times are Unix µs,
	// 0 for none. ready_at is when a pending job can next be claimed: not_before while it waits,
	// lease_until while it is leased, so that jobs_ready hands out the due jobs of a priority in
	// claim order with one range read. jobs_key makes a key unique among pending jobs: dead
	// letters hold none.
	`CREATE TABLE jobs (id TEXT NOT NULL PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL, priority INTEGER NOT NULL,
		not_before INTEGER NOT NULL, ready_at INTEGER NOT NULL, payload BLOB NOT NULL, attempt INTEGER NOT NULL,
		last_error TEXT NOT NULL, created INTEGER NOT NULL, owner TEXT NOT NULL, lease_until INTEGER NOT NULL,
		rerun INTEGER NOT NULL, dead INTEGER NOT NULL, failed_at INTEGER NOT NULL) WITHOUT ROWID;
	CREATE INDEX jobs_ready ON jobs (priority DESC, ready_at, created) WHERE dead = 0;
	CREATE UNIQUE INDEX jobs_key ON jobs (key) WHERE key <> '' AND dead = 0;
	CREATE INDEX jobs_dead ON jobs (failed_at DESC) WHERE dead = 1;
	CREATE TABLE coverage (provider TEXT NOT NULL, patient TEXT NOT NULL, kind TEXT NOT NULL, intervals BLOB NOT NULL,
		cursor TEXT NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (provider, patient, kind)) WITHOUT ROWID;`,
	// An Observation with obs_clinical rows keeps its JSON there (one copy per code coding) and
	// not on its resources row (resources.json NULL):
	// clinical_system and clinical_code are its first code coding, the rest of the key of one of
	// those rows being the resources row's own (see jsonExpr). Rows written before keep their
	// JSON. obs_clinical rows are deleted by their primary key (dropIndex): the index on
	// their id, one more scattered insert per Observation, goes. Adding a column does not
	// rewrite the table (https://www.sqlite.org/lang_altertable.html#altertabaddcol).
	`ALTER TABLE resources ADD COLUMN clinical_system TEXT;
	ALTER TABLE resources ADD COLUMN clinical_code TEXT;
	DROP INDEX obs_clinical_id;`,
	// The index tables lose their (type, id) indexes: dropIndex derives the rows to delete from
	// the stored JSON instead, so that a write makes one B-tree insert per index entry, not two.
	// index_state holds the search.IndexVersion that made the rows; reindex rebuilds them from
	// the JSON when it differs (the first open after this migration, as every later change).
	`DROP INDEX idx_token_id;
	DROP INDEX idx_ref_id;
	DROP INDEX idx_string_id;
	DROP INDEX idx_date_id;
	DROP INDEX idx_quantity_id;
	CREATE TABLE index_state (version INTEGER NOT NULL);`,
	// idx_token and idx_ref key their rows by the resource's sort date before its id. Ids are
	// hashes, so under a key prefix that many resources share (status final, a category, one
	// patient's subject or device) each new row landed on a random page of that prefix's range,
	// and a vendor page of a few thousand Observations dirtied nearly every page of those
	// ranges in each commit. A vendor page covers a span of time, so keyed by time its rows go
	// to a few neighbouring pages. A search seeks a resource's row with the sort date its own
	// row holds (inIndex). The tables are made again, empty, and index_state is cleared, so
	// that reindex fills them from the stored JSON at this open.
	`DROP TABLE idx_token;
	CREATE TABLE idx_token (type TEXT NOT NULL, col TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, sort_date INTEGER NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, code, system, sort_date, id)) WITHOUT ROWID;
	DROP TABLE idx_ref;
	CREATE TABLE idx_ref (type TEXT NOT NULL, col TEXT NOT NULL, ref_type TEXT NOT NULL, ref_id TEXT NOT NULL, ref_url TEXT NOT NULL, sort_date INTEGER NOT NULL, id TEXT NOT NULL,
		PRIMARY KEY (type, col, ref_id, ref_type, ref_url, sort_date, id)) WITHOUT ROWID;
	CREATE INDEX idx_ref_url ON idx_ref (type, col, ref_url) WHERE ref_url <> '';
	DELETE FROM index_state;`,
}

// SchemaVersion is the layout version this code writes (the number of migrations): a data set
// made under another is laid out differently.
func SchemaVersion() int { return len(migrations) }

func migrate(ctx context.Context, db *sql.DB) error { return migrateWith(ctx, db, migrations) }

// migrateWith applies the migrations a file's schema_version has not seen yet.
func migrateWith(ctx context.Context, db *sql.DB, migrations []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("sqlite: database schema version %d is newer than this ohx (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, i+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %d: %w", i+1, err)
		}
	}
	return nil
}

func (s *Store) loadSpans(ctx context.Context) error {
	rows, err := s.r.QueryContext(ctx, `SELECT type, max_span FROM date_span`)
	if err != nil {
		return fmt.Errorf("sqlite: load date spans: %w", err)
	}
	defer rows.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return fmt.Errorf("sqlite: load date spans: %w", err)
		}
		s.maxSpan[t] = n
	}
	return rows.Err()
}

// Close closes both pools.
func (s *Store) Close() error {
	if s.ckDone != nil {
		select {
		case <-s.ckStop:
		default:
			close(s.ckStop)
		}
		if s.ck != nil {
			<-s.ckDone
		}
	}
	var qerr error
	if s.q != nil {
		qerr = s.q.close()
	}
	s.rstmts.close()
	s.wstmts.close()
	return errors.Join(qerr, s.r.Close(), s.w.Close(), s.ck.Close())
}

// DB exposes the read pool for tests that inspect query plans.
func (s *Store) DB() *sql.DB { return s.r }

// checkpointInterval is how often the background checkpointer runs; walLimit (pages) is the
// most the WAL file may hold (see capWAL).
const (
	checkpointInterval = 500 * time.Millisecond
	walLimit           = 16384 // 16 KiB pages: 256 MiB
)

// checkpointer copies committed WAL pages into the database file until Close, on the other core
// while the writer works. PASSIVE never waits for readers or the writer, so under a steady write
// load it never catches up with the end of the WAL, and the WAL only starts over at its
// beginning once a checkpoint has copied all of it (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files):
// capWAL, in the writer's path, bounds the file.
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ckStop:
			s.ckMu.Lock()
			_, err := s.ck.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			s.ckMu.Unlock()
			if err != nil {
				s.log.Warn("final wal checkpoint", "err", err)
			}
			return
		case <-t.C:
		}
		s.ckMu.Lock()
		_, err := s.ck.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		s.ckMu.Unlock()
		if err != nil {
			s.log.Warn("wal checkpoint", "err", err)
		}
	}
}

// walCap is the writer's view of the WAL file's size, which is where the WAL ends (see the
// writer's journal_size_limit).
type walCap struct {
	path  string
	limit int64 // bytes: walLimit pages
	// before is the file's size when the current write transaction began; retryAfter is when
	// capWAL may checkpoint again after a reader blocked one. Both are guarded by Store.wtx.
	before     int64
	retryAfter time.Time
	// checkpoints counts the writer's checkpoints (tests).
	checkpoints atomic.Int64
	mu          sync.Mutex
	// grown holds how much the recent transactions added to the file, next the slot to fill.
	grown [16]int64
	next  int
}

// nextTx estimates how much the next transaction adds to the WAL: the most a recent one added.
func (c *walCap) nextTx() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Max(c.grown[:])
}

func (c *walCap) note(grown int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.grown[c.next] = grown
	c.next = (c.next + 1) % len(c.grown)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0 // no WAL yet
	}
	return fi.Size()
}

// capWAL runs before each write transaction. When the next transaction could take the WAL file
// past its limit, the writer first checkpoints the whole WAL and truncates it (TRUNCATE waits
// for readers to leave the WAL, https://www.sqlite.org/pragma.html#pragma_wal_checkpoint):
// writes are throttled to the speed of checkpoints rather than letting the file grow without
// bound.
func (s *Store) capWAL(ctx context.Context) {
	// A quarter more than the recent transactions: they grow with the store (more B-tree pages
	// to touch) and with page splits.
	size, g := fileSize(s.wal.path), s.wal.nextTx()
	if size+g+g/4 <= s.wal.limit {
		return
	}
	start := time.Now()
	if start.Before(s.wal.retryAfter) {
		return
	}
	s.ckMu.Lock()
	var busy, logPages, done int
	err := s.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
	s.ckMu.Unlock()
	s.wal.checkpoints.Add(1)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("wal checkpoint", "err", err)
		}
		return
	}
	if busy == 1 {
		// A reader held on to the WAL for the whole busy timeout: writing on is better than
		// making every write wait that long while it stays (the WAL grows past the cap until it
		// leaves).
		s.wal.retryAfter = time.Now().Add(capRetry)
	}
	s.log.Debug("wal checkpoint before a write", "wal_bytes", size, "next_tx_bytes", g, "busy", busy == 1, "took", time.Since(start))
}

// capRetry is how long the writer writes on without a checkpoint after one a reader blocked.
const capRetry = 5 * time.Second

// walWritten notes the WAL growth of the transaction that capWAL began. A transaction that
// starts the WAL over at its beginning (the background checkpointer having copied all of it)
// shrinks the file to its own size, and its growth understates that size: the window of
// nextTx covers it.
func (s *Store) walWritten() {
	s.wal.note(fileSize(s.wal.path) - s.wal.before)
}
