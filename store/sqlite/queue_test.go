package sqlite

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/store"
)

// walCheckpointSeq reads the checkpoint sequence number of a WAL file's header (a big-endian
// uint32 at offset 12).
func walCheckpointSeq(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [16]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		t.Fatalf("read WAL header: %v", err)
	}
	return binary.BigEndian.Uint32(hdr[12:])
}

// explainQueue is explainSQL on the queue's file.
func explainQueue(t *testing.T, s *Store, stmt string, args ...any) string {
	t.Helper()
	rows, err := s.q.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+stmt, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestEnqueueGroupCommit holds the queue's write lock while many enqueues arrive: once it is
// released they are committed in a few transactions, not one each, and every caller gets its
// own job (or, for a shared key, the one job of that key).
func TestEnqueueGroupCommit(t *testing.T) {
	s := openTest(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 64
	s.q.wtx <- struct{}{} // the committer blocks on this until released
	var arrived atomic.Int64
	type res struct {
		id        string
		coalesced bool
		err       error
	}
	out := make([]res, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := store.Job{Type: "sync", Payload: []byte(fmt.Sprint(i))}
			if i%8 == 0 {
				j.Key = "shared"
			}
			arrived.Add(1)
			id, c, err := s.EnqueueJob(t.Context(), j, now)
			out[i] = res{id, c, err}
		}()
	}
	for arrived.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the callers reach the committer's channel
	s.q.gmu.Lock()
	before := s.q.groups
	s.q.gmu.Unlock()
	<-s.q.wtx
	wg.Wait()
	s.q.gmu.Lock()
	groups := s.q.groups - before
	s.q.gmu.Unlock()
	t.Logf("%d enqueues in %d transactions", n, groups)
	if groups > n/2 {
		t.Errorf("%d enqueues took %d transactions: want them grouped (at most %d)", n, groups, n/2)
	}
	ids := map[string]bool{}
	var sharedID string
	fresh := 0
	for i, r := range out {
		if r.err != nil {
			t.Fatalf("enqueue %d: %v", i, r.err)
		}
		if i%8 == 0 {
			if sharedID == "" {
				sharedID = r.id
			}
			if r.id != sharedID {
				t.Errorf("enqueue %d of the shared key got job %s, another got %s", i, r.id, sharedID)
			}
			if !r.coalesced {
				fresh++
			}
			continue
		}
		if r.coalesced || ids[r.id] {
			t.Errorf("enqueue %d: id %s coalesced %v: want a new job of its own", i, r.id, r.coalesced)
		}
		ids[r.id] = true
		j, err := s.GetJob(t.Context(), r.id)
		if err != nil || string(j.Payload) != fmt.Sprint(i) {
			t.Errorf("GetJob(%s) = payload %q, %v; want %q", r.id, j.Payload, err, fmt.Sprint(i))
		}
	}
	if fresh != 1 {
		t.Errorf("%d enqueues of the shared key stored a new job: want 1", fresh)
	}
	st, err := s.JobStats(t.Context(), now)
	if err != nil || st.Waiting != n-n/8+1 {
		t.Errorf("JobStats = %+v, %v; want %d waiting", st, err, n-n/8+1)
	}
}

// TestEnqueueGroupIsolation: an enqueue that fails (an id already taken) fails alone, the
// others of its group are stored.
func TestEnqueueGroupIsolation(t *testing.T) {
	s := openTest(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := s.EnqueueJob(t.Context(), store.Job{ID: "taken", Type: "sync"}, now); err != nil {
		t.Fatal(err)
	}
	s.q.wtx <- struct{}{}
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := store.Job{ID: fmt.Sprint("job-", i), Type: "sync"}
			if i == 3 {
				j.ID = "taken"
			}
			_, _, errs[i] = s.EnqueueJob(t.Context(), j, now)
		}()
	}
	time.Sleep(50 * time.Millisecond)
	<-s.q.wtx
	wg.Wait()
	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, store.ErrDuplicate) {
				t.Errorf("enqueue of a taken id: %v, want ErrDuplicate", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("enqueue %d: %v", i, err)
		} else if _, err := s.GetJob(t.Context(), fmt.Sprint("job-", i)); err != nil {
			t.Errorf("GetJob(job-%d): %v", i, err)
		}
	}
}

// TestQueueAdoptsOldJobs opens a store whose jobs are still in ohx.db's jobs table (written
// before the queue had its own file): every job moves to queue.db unchanged, the old table is
// emptied, and a crash between the two commits (the jobs in both files) neither loses nor
// duplicates one.
func TestQueueAdoptsOldJobs(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	// Make the jobs with the store itself, then move them back into ohx.db as the old layout
	// had them.
	s, err := Open(t.Context(), dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []store.Job
	for i := range 5 {
		j := store.Job{ID: fmt.Sprint("old-", i), Type: "fetch", Key: fmt.Sprint("k", i), Priority: i, Payload: []byte(`{"n":1}`)}
		if _, _, err := s.EnqueueJob(t.Context(), j, now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := s.ClaimJobs(t.Context(), "w", 2, time.Minute, now.Add(time.Hour))
	if err != nil || len(claimed) != 2 {
		t.Fatalf("ClaimJobs = %d, %v", len(claimed), err)
	}
	if err := s.FailJob(t.Context(), claimed[0].ID, "w", store.JobFailure{Error: "boom", Dead: true, At: now}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		want = append(want, mustJob(t, s, fmt.Sprint("old-", i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	moveBack := func(deleteQueue bool) {
		t.Helper()
		main, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ohx.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer main.Close()
		stmts := []string{
			fmt.Sprintf("ATTACH 'file:%s' AS q", filepath.Join(dir, queueFile)),
			"INSERT INTO main.jobs SELECT * FROM q.jobs",
		}
		if deleteQueue {
			stmts = append(stmts, "DELETE FROM q.jobs")
		}
		for _, st := range stmts {
			if _, err := main.ExecContext(t.Context(), st); err != nil {
				t.Fatalf("%s: %v", st, err)
			}
		}
	}
	check := func(name string) {
		t.Helper()
		s, err := Open(t.Context(), dir, Options{}, nil)
		if err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		defer s.Close()
		var got []store.Job
		for i := range 5 {
			got = append(got, mustJob(t, s, fmt.Sprint("old-", i)))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: adopted jobs (-want +got):\n%s", name, d)
		}
		st, err := s.JobStats(t.Context(), now.Add(time.Hour))
		if err != nil || st != (store.JobStats{Waiting: 3, Running: 1, Dead: 1}) {
			t.Errorf("%s: JobStats = %+v, %v; want 3 waiting, 1 running, 1 dead", name, st, err)
		}
		var left int
		if err := s.w.QueryRowContext(t.Context(), "SELECT count(*) FROM jobs").Scan(&left); err != nil || left != 0 {
			t.Errorf("%s: ohx.db still holds %d jobs (%v)", name, left, err)
		}
	}
	moveBack(true)
	check("old layout")
	moveBack(false) // both files hold the jobs: a crash after the queue's commit
	check("crash between the commits")
}

func mustJob(t testing.TB, s *Store, id string) store.Job {
	t.Helper()
	j, err := s.GetJob(t.Context(), id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

// TestQueueCheckpointsInBackground: the queue's writer never checkpoints in its commit path
// (wal_autocheckpoint 0), and the background checkpointer makes the WAL start over, even under
// back-to-back commits that leave a PASSIVE checkpoint no gap to catch up in: commits of one
// job each, a few 4 KiB pages apiece, until the WAL has started over more than once (the restart
// comes past queueWALRestart, 32 MiB: about 3,000 commits). The WAL file
// keeps its size when it starts over, and how large it grows between two rounds of the
// checkpointer depends on the machine's speed; that it started over is in the WAL header's
// checkpoint sequence number, which each restart increments
// (https://www.sqlite.org/fileformat2.html#walformat).
func TestQueueCheckpointsInBackground(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{QueueSync: QueueSyncNormal}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var auto int
	if err := s.q.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Errorf("the queue writer's wal_autocheckpoint is %d, want 0", auto)
	}
	now := time.Now()
	wal := filepath.Join(dir, queueFile+"-wal")
	var seq0 uint32
	start := time.Now()
	// Back to back for at least 3,000 commits and 0.5 s (a few rounds of the checkpointer), then
	// until the WAL has started over twice or 40,000 commits (over 500 MB of WAL unchecked).
	var i, restarts int
	for ; i < 40000 && restarts < 2; i++ {
		if _, _, err := s.EnqueueJob(ctx, store.Job{Type: "t", Key: fmt.Sprintf("k%d", i), Payload: []byte(`{}`)}, now); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			seq0 = walCheckpointSeq(t, wal)
		}
		if i >= 3000 && i%100 == 0 && time.Since(start) > 500*time.Millisecond {
			restarts = int(walCheckpointSeq(t, wal) - seq0)
		}
	}
	if restarts < 2 {
		t.Errorf("the queue's WAL started over %d times in %d commits: nothing checkpoints it", restarts, i)
	}
	if size := fileSize(wal); size > queueWALLimit {
		t.Errorf("the queue's WAL is %d bytes, over its limit of %d", size, queueWALLimit)
	}
	js, err := s.PendingJobs(ctx, i+1)
	if err != nil || len(js) != i {
		t.Fatalf("pending jobs: %d, %v; want %d", len(js), err, i)
	}
}
