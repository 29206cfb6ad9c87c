package sqlite

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestJobsShared opens one database file twice, as two ohx processes would: claims, coalescing
// and coverage updates stay atomic across the two handles.
func TestJobsShared(t *testing.T) {
	storetest.RunJobsShared(t, openShared)
}

// TestJobPlans asserts that a claim reads the due jobs through jobs_ready in claim order (a seek
// per priority level, then a range read within one), that the lists read their indexes in
// order, and that coalescing finds a key's holder through jobs_key: no scan of the table and no
// sort step anywhere.
func TestJobPlans(t *testing.T) {
	s := openTest(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		j := store.Job{Type: "sync", Priority: i % 4, NotBefore: now.Add(time.Duration(i-150) * time.Minute)}
		if i%3 == 0 {
			j.Key = fmt.Sprint("key-", i)
		}
		if _, _, err := s.EnqueueJob(t.Context(), j, now); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := s.ClaimJobs(t.Context(), "w", 20, time.Minute, now)
	if err != nil || len(claimed) != 20 {
		t.Fatalf("ClaimJobs = %d jobs, %v", len(claimed), err)
	}
	for _, j := range claimed[:5] {
		if err := s.FailJob(t.Context(), j.ID, "w", store.JobFailure{Error: "x", Dead: true}); err != nil {
			t.Fatal(err)
		}
	}
	us := now.UnixMicro()
	for _, tc := range []struct {
		name, query string
		args        []any
		want        string
	}{
		{"top priority", sqlNextPriority, []any{int64(math.MaxInt64)}, "SEARCH jobs USING COVERING INDEX jobs_ready (priority<?)"},
		{"next priority", sqlNextPriority, []any{2}, "SEARCH jobs USING COVERING INDEX jobs_ready (priority<?)"},
		{"due jobs", sqlDueAt, []any{2, us, 10}, "SEARCH jobs USING COVERING INDEX jobs_ready (priority=? AND ready_at<?)"},
		{"pending", sqlPendingJobs, []any{10}, "SCAN jobs USING INDEX jobs_ready"},
		{"dead", sqlDeadJobs, []any{10}, "SCAN jobs USING INDEX jobs_dead"},
		{"key holder", `SELECT id, owner FROM jobs WHERE key = ? AND key <> '' AND dead = 0`, []any{"key-3"}, "SEARCH jobs USING INDEX jobs_key (key=?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := explainQueue(t, s, tc.query, tc.args...)
			t.Logf("plan:\n%s", plan)
			if !strings.Contains(plan, tc.want) {
				t.Errorf("plan does not contain %q:\n%s", tc.want, plan)
			}
			if strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan sorts:\n%s", plan)
			}
			// The lists read an index in order, stopped by LIMIT; nothing reads the table itself.
			for _, line := range strings.Split(plan, "\n") {
				if strings.HasPrefix(line, "SCAN ") && !strings.Contains(line, " USING ") {
					t.Errorf("plan scans the table:\n%s", plan)
				}
			}
		})
	}
}
