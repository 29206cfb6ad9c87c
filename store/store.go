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
	// computed when Query.SummaryCount or Query.Total == "accurate", and whenever it is free
	// (the first page holds every match).
	Total int
}

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
	// Upsert writes many resources in one call, matching each to a stored resource of the same
	// type by its first identifier (system and value; required). Unchanged content (ignoring
	// meta) writes nothing, so running the same upsert twice is idempotent. A resource matching
	// several stored ones fails the whole call with ErrDuplicate.
	Upsert(ctx context.Context, rs []fhir.Resource) ([]UpsertResult, error)
	// Records is the small document store for everything that is not a FHIR resource.
	Records
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
