// Package storetest is the conformance suite of the store.Store contract. Every store
// implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) store.Store {
//			s := openEmptyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite builds every query through search.DefaultRegistry().Parse, so it exercises the real
// parser, and checks each search result both against a hand-written expectation and against
// search.Matches, the normative matching semantics.
package storetest

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
)

// opener returns a new, empty store for one test and registers its cleanup (closing the store,
// dropping its database) with t.Cleanup.
type opener = func(t testing.TB) store.Store

// Run runs the conformance suite against the stores returned by open. Each subtest calls open
// once and works on the fresh, empty store it gets; data sets are small (tens of resources, 200
// for the bulk upsert) so that the suite finishes in seconds even on a full-scanning backend.
//
// The subtests are:
//   - CRUD: Create, Put (update-as-create), If-Match, Read, Delete, resurrection, ids per type,
//     FindByIdentifier, and meta.versionId / meta.lastUpdated inside the stored JSON.
//   - Upsert: bulk writes matched by first identifier, idempotence, version bumps, ErrDuplicate.
//   - CreateUnique: create unless the identifier is held, holders found by any identifier,
//     released identifiers, concurrent registrations (RunShared races two handles).
//   - Transact (stores implementing store.Transactor): commit, all-or-nothing roll back for each
//     kind of failing op, later ops seeing earlier ones.
//   - History: vread of every version, history newest first, paging, _since/_at bounds,
//     deletions as versions, upserts (unchanged: no version), PurgeHistory, concurrent writers
//     (RunHistoryRetention checks the retention setting).
//   - Search: one case per supported parameter, prefix and modifier, each checked against its
//     expected ids and against search.Matches.
//   - Sort: _sort on every sortable parameter, ascending, descending and multi-key.
//   - Paging: keyset cursors forwards and backwards, and paging under concurrent inserts.
//   - Total: _summary=count, _count=0, _total=accurate, the free total of a single page, the
//     bounded total of every page below store.TotalBound and _total=none (RunTotalBound checks
//     the bound itself).
//   - Include: _include and _revinclude, per page, deduplicated, unresolvable targets skipped.
//   - Chain: chained searches (patient.identifier=…) paged both ways, totals, includes, and
//     following the targets' current identifiers, never a deleted target (the Search cases
//     cover every chain and value form).
//   - LastN: the newest Observations per coding of one patient ($lastn), n per group, ties by
//     id, filters, named codings, an Observation with two codings in both groups.
//   - Limits: searches as large as the parser accepts (search.MaxParams, MaxParamValues,
//     MaxValues), paged.
//   - Records: the small document store (put, create-if-absent, get, take, delete, list, expiry,
//     atomic concurrent create and take).
//   - Jobs: the durable job queue (store.Jobs): enqueue, claim, complete; claim order (priority,
//     then ready time, then created) and PendingJobs in it; jobs not yet due; leases (no second
//     claim before expiry, takeover after it, ErrLeaseLost for the old owner, RenewJob);
//     FailJob with a retry time and as a dead letter (DeadJobs, never claimed, GetJob);
//     RetryDeadJob; coalescing by key (waiting: earlier NotBefore, higher priority; running:
//     Rerun and one requeue; dead letters hold no key); JobStats; caller-chosen ids;
//     cancellation (RunJobsShared races claims and enqueues across two handles).
//   - JobAdmin: DiscardDeadJob removes a dead letter, never a pending job (RunJobsShared races
//     it against RetryDeadJob across two handles).
//   - Coverage: sync coverage (store.Coverages): UpdateCoverage creating and updating a stream,
//     normalised intervals, fn errors storing nothing, Coverage ordered by kind, DeleteCoverage
//     (RunJobsShared races updates across two handles).
//   - Cancel: every method returns an error matching context.Canceled for a cancelled context.
//   - Concurrency: parallel writers, readers and searchers; run it with -race.
func Run(t *testing.T, open func(t testing.TB) store.Store) {
	t.Run("CRUD", func(t *testing.T) { testCRUD(t, open) })
	t.Run("Upsert", func(t *testing.T) { testUpsert(t, open) })
	t.Run("History", func(t *testing.T) { testHistory(t, open) })
	t.Run("CreateUnique", func(t *testing.T) { testCreateUnique(t, open) })
	t.Run("Transact", func(t *testing.T) { testTransact(t, open) })
	t.Run("Search", func(t *testing.T) { testSearch(t, open) })
	t.Run("Sort", func(t *testing.T) { testSort(t, open) })
	t.Run("Paging", func(t *testing.T) { testPaging(t, open) })
	t.Run("Total", func(t *testing.T) { testTotal(t, open) })
	t.Run("Include", func(t *testing.T) { testInclude(t, open) })
	t.Run("Chain", func(t *testing.T) { testChain(t, open) })
	t.Run("LastN", func(t *testing.T) { testLastN(t, open) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, open) })
	t.Run("Records", func(t *testing.T) { testRecords(t, open) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, jobsOf(open)) })
	t.Run("Coverage", func(t *testing.T) { testCoverage(t, jobsOf(open)) })
	t.Run("JobAdmin", func(t *testing.T) { testJobAdmin(t, jobsOf(open)) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
}
