// Package store is the persistence contract of ohx: resources with their version metadata and
// search index, and the errors every implementation returns. Implementations live in
// store/sqlite (embedded default) and store/mongo; store/storetest is the conformance suite they
// all pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// Sentinel errors. Implementations wrap them with context; match them with errors.Is.
var (
	// ErrNotFound means no resource of that type and id was ever stored.
	ErrNotFound = errors.New("resource not found")
	// ErrDeleted means the resource existed and was deleted.
	ErrDeleted = errors.New("resource deleted")
	// ErrVersionConflict means an If-Match version did not match the current version.
	ErrVersionConflict = errors.New("version conflict")
	// ErrDuplicate means a create would duplicate an existing resource (id or conditional create).
	ErrDuplicate = errors.New("duplicate resource")
)

// Entry is a stored resource as served: its canonical JSON, with meta.versionId and
// meta.lastUpdated already inside, so the read path never re-encodes it.
type Entry struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	// JSON is the resource as stored; callers must not modify it.
	JSON []byte
	// Patient is the patient whose compartment holds the resource ("" if none), when the store
	// reports it (stores implementing ChangeTracker do, on Read).
	Patient string
}

// Result is one page of a search.
type Result struct {
	// Matches are the resources that matched, in sort order, at most Query.Count of them.
	Matches []Entry
	// Included are the resources brought in by _include and _revinclude (never also in Matches).
	Included []Entry
	// Next is the cursor of the following page, or nil if this is the last page.
	Next *search.Cursor
	// Prev is the cursor of the preceding page, or nil if this is the first page.
	Prev *search.Cursor
	// Total is the number of matches of the whole search, or -1 if it was not computed. It is
	// computed when Query.SummaryCount or Query.Total == "accurate", whenever it is free (the
	// first page holds every match), and otherwise, unless Query.Total == "none", when it is
	// cheap: a count that stops after TotalBound+1 matches gives it when at most TotalBound
	// resources match (above the bound Total is -1).
	Total int
}

// TotalBound is the most matches a store counts for Result.Total when the search did not ask
// for an accurate total. A count that stops after TotalBound+1 index entries is bounded work on
// every page; 1,000 keeps it under the cost of the page of 50 itself on SQLite's clustered path
// (0.4 ms against 0.5 ms; 10,000 cost 1.9 ms, a fourfold slower search; README "Totals",
// store/sqlite BenchmarkTotal).
const TotalBound = 1000

// WriteOptions controls a single write.
type WriteOptions struct {
	// IfMatch, if non-zero, makes the write fail with ErrVersionConflict unless the current
	// version is exactly this one.
	IfMatch int64
}

// UpsertResult reports what a bulk upsert did with one resource.
type UpsertResult struct {
	ID        string
	VersionID int64
	// Created is true for a new resource, Changed for an update; both false means the stored
	// content was already identical and nothing was written.
	Created, Changed bool
}

// HistoryQuery selects versions of one resource for Store.History. The filters combine; zero
// values do not filter.
type HistoryQuery struct {
	Type, ID string
	// Count is the most versions to return (at least 1).
	Count int
	// Before returns only versions numbered below it: the paging position (the version of the
	// last entry of the previous page).
	Before int64
	// Since returns only versions last updated at or after it (_since).
	Since time.Time
	// Until returns only versions last updated before it (the upper end of _at).
	Until time.Time
}

// Store persists resources. Implementations are safe for concurrent use. Every method honours
// context cancellation and returns ctx.Err() (wrapped) when the context ends first.
type Store interface {
	// Create stores a new resource. If its id is empty a new one is assigned. It sets
	// meta.versionId to 1 and meta.lastUpdated, and returns the stored entry. It returns
	// ErrDuplicate if a resource (live or deleted) with that id exists.
	Create(ctx context.Context, r fhir.Resource) (Entry, error)
	// Put creates or replaces the resource with the id r carries (update-as-create). created is
	// true if it did not exist. It returns ErrVersionConflict if opt.IfMatch does not match.
	Put(ctx context.Context, r fhir.Resource, opt WriteOptions) (e Entry, created bool, err error)
	// Read returns the current version. It returns ErrNotFound for an unknown id and ErrDeleted
	// (with the deleted entry's VersionID and LastUpdated set, JSON nil) for a deleted one.
	Read(ctx context.Context, typ, id string) (Entry, error)
	// Delete marks the resource deleted and removes it from search. It returns ErrNotFound for an
	// unknown id; deleting a deleted resource is a no-op.
	Delete(ctx context.Context, typ, id string) error
	// Search runs a parsed query and returns one page.
	Search(ctx context.Context, q *search.Query) (*Result, error)
	// FindByIdentifier returns the ids of live resources of typ carrying the identifier.
	FindByIdentifier(ctx context.Context, typ, system, value string) ([]string, error)
	// CreateUnique creates r unless a live resource of its type already carries the identifier
	// (system, value), which r must carry too: it is the store half of a conditional create
	// (If-None-Exist: identifier=system|value), atomic across processes sharing the database. Of
	// concurrent CreateUnique calls for one identifier, through any number of store handles on
	// one database, exactly one creates and the others get its entry. The store assigns the id
	// (an id r carries is replaced) and sets meta as Create does. created reports whether r was
	// stored; if not, e is the current version of the resource holding the identifier. Only
	// CreateUnique arbitrates: Create, Put and Upsert do not check identifiers, so it returns
	// ErrDuplicate if several live resources carry the identifier already. It returns an error
	// if r does not carry the identifier.
	CreateUnique(ctx context.Context, r fhir.Resource, system, value string) (e Entry, created bool, err error)
	// Upsert writes many resources in one call, matching each to a stored resource of the same
	// type by its first identifier (system and value; required). Unchanged content (ignoring
	// meta) writes nothing, so running the same upsert twice is idempotent. An Observation in
	// status final that changes a stored one that has been final (Amends) is stored amended, and
	// equals that amended version when nothing else changed (SetAmended, SameOrAmended). A resource
	// matching several stored ones fails the whole call with ErrDuplicate.
	Upsert(ctx context.Context, rs []fhir.Resource) ([]UpsertResult, error)
	// Version history. Every write that changes a resource (Create, Put, a changed Upsert,
	// Delete) makes a new version; the prior version's stored JSON is kept, and a deletion is a
	// version of its own without JSON. A store may be configured to keep only the N newest
	// versions of each resource; older ones are pruned when the resource is written.
	//
	// ReadVersion returns one version (vread), the current one included. It returns ErrNotFound
	// if the resource was never stored or has no such version (never written, or pruned), and
	// ErrDeleted, with VersionID and LastUpdated set and JSON nil, if that version is a deletion.
	ReadVersion(ctx context.Context, typ, id string, version int64) (Entry, error)
	// History returns the versions of one resource that q selects, newest first: the current
	// version and the kept prior ones, deletions included as entries with JSON nil. It returns
	// ErrNotFound if the resource was never stored; filters that match nothing are no error.
	History(ctx context.Context, q HistoryQuery) ([]Entry, error)
	// PurgeHistory erases the prior versions of a resource, keeping only its current version
	// (after Delete: the deletion), for data that must not outlive its deletion. It returns
	// ErrNotFound for an unknown id.
	PurgeHistory(ctx context.Context, typ, id string) error
	// LastN is the store half of Observation/$lastn: one patient's n newest Observations per
	// coding of Observation.code. q is an Observation search whose first clause
	// patient=Patient/<id> with a single value and no modifier names the patient (LastN returns
	// an error wrapping ErrLastNQuery if there is none); all its clauses filter as in Search,
	// and its sort, count, cursor, includes and totals are ignored. The groups are the codings
	// (system, code) the matching Observations carry — or, when q has a code clause without
	// modifier whose values all give a system and a code, the codings the first such clause
	// names. Each group holds the n newest matches carrying its coding in _sort=-date order
	// (effective start descending, then id descending); an Observation with several codings is
	// in each of their groups. Groups are ordered by system, then code; empty ones are left
	// out. Each group should cost one index range read newest first, stopped after n.
	LastN(ctx context.Context, q *search.Query, n int) ([]CodeGroup, error)
	// Records is the small document store for everything that is not a FHIR resource.
	Records
	// Jobs is the durable job queue of the sync pipeline (jobs.go).
	Jobs
	// Coverages records what the sync pipeline has fetched of every stream (jobs.go).
	Coverages
	// Budgets shares vendor rate limits among the instances using the store (budget.go).
	Budgets
	// Close releases the store's resources.
	Close() error
}

// ChangeTracker is implemented by stores that see every write, such as the embedded store that
// owns its file. It lets callers cache results and drop them exactly when their data changes.
// Stores shared by several processes (MongoDB) do not implement it: no cache is used there.
type ChangeTracker interface {
	// Generation returns a counter that changes after every committed write of a resource of
	// type typ in the compartment of patient, or of any resource of typ when patient is "".
	// Read it before reading the data it guards.
	Generation(typ, patient string) uint64
}

// Transactor is implemented by stores that write several resources atomically: the embedded
// SQLite store, in one database transaction. The MongoDB store does not (single-document
// atomicity, no multi-document transactions, which FerretDB, the MongoDB stand-in CI runs, does
// not offer either), so FHIR transactions are offered only on stores implementing it.
type Transactor interface {
	// Transact performs ops in order, all or nothing: every op is written and committed
	// together, or none is. Later ops see the writes of earlier ones. It returns one result per
	// op. If an op fails the error is a *TxError naming it and wrapping the cause: ErrDuplicate
	// (TxOp.Create of an existing id, or a TxOp.Unique identifier held by another resource),
	// ErrVersionConflict (TxOp.IfMatch), or any other error; nothing is written then.
	Transact(ctx context.Context, ops []TxOp) ([]TxResult, error)
}

// TxOp is one write of Transactor.Transact.
type TxOp struct {
	// Resource is written under the id it carries, which is required: callers assign the ids of
	// new resources, so that references between the resources of one transaction can be
	// resolved before anything is written.
	Resource fhir.Resource
	// Create makes the op fail with ErrDuplicate if a resource (live or deleted) with that id
	// exists; otherwise the op creates or replaces the resource, like Put.
	Create bool
	// IfMatch, if non-zero, makes the op fail with ErrVersionConflict unless the current version
	// is exactly this one.
	IfMatch int64
	// UniqueSystem and UniqueValue, if set, make the op fail with ErrDuplicate if a live resource
	// of the type with another id carries that identifier when the op runs: CreateUnique's
	// guarantee inside a transaction. Resource must carry the identifier.
	UniqueSystem, UniqueValue string
}

// TxResult is what one TxOp wrote.
type TxResult struct {
	Entry Entry
	// Created is true if no live resource had the id before.
	Created bool
}

// CodeGroup is one coding's group of Store.LastN.
type CodeGroup struct {
	Coding
	// Entries are the newest matches carrying the coding, newest first.
	Entries []Entry
}

// Record is one entry of the small document store.
type Record struct {
	Kind    string
	ID      string
	Doc     []byte
	Expires time.Time // zero: never
}

// Records is a small document store for what is not a FHIR resource: OAuth clients, users,
// signing keys, authorization codes, refresh tokens, replay caches, vendor connections. Documents
// are opaque bytes (callers encrypt secrets before storing them). An expired record behaves as
// absent everywhere; stores sweep expired records lazily.
type Records interface {
	// PutRecord stores doc under (kind, id), replacing any previous record.
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// CreateRecord stores doc only if no live record (kind, id) exists; otherwise it returns
	// ErrDuplicate. It is atomic: of two concurrent creates exactly one succeeds (replay caches,
	// single-flight leases).
	CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// GetRecord returns the live record's document, or ErrNotFound.
	GetRecord(ctx context.Context, kind, id string) ([]byte, error)
	// TakeRecord deletes the live record and returns its document, atomically: of two
	// concurrent takes exactly one gets it (single-use authorization codes). ErrNotFound if absent.
	TakeRecord(ctx context.Context, kind, id string) ([]byte, error)
	// DeleteRecord removes the record; deleting an absent record is not an error.
	DeleteRecord(ctx context.Context, kind, id string) error
	// ListRecords returns the live records of a kind, ordered by id. Meant for small kinds
	// (clients, users, keys).
	ListRecords(ctx context.Context, kind string) ([]Record, error)
}
