// Package pipeline is the sync pipeline: durable jobs on the store's job queue (device sync,
// backfill, webhook fetch, webhook subscription) that fetch from a vendor through its adapter,
// map samples to FHIR with the one mapper in package fhir, upsert the resources idempotently,
// and record per kind what has been synced (store.Coverages).
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Vault is what the pipeline needs of the connection vault (providers.Vault).
type Vault interface {
	// Get returns the patient's connection, or providers.ErrNotConnected.
	Get(ctx context.Context, provider, patientID string) (*providers.Connection, error)
	// ByVendorUser returns the connection of a vendor account, or providers.ErrNotConnected.
	ByVendorUser(ctx context.Context, provider, vendorUserID string) (*providers.Connection, error)
	// Delete forgets the connection and its tokens; an absent connection is no error.
	Delete(ctx context.Context, c *providers.Connection) error
	// Save stores the connection.
	Save(ctx context.Context, c *providers.Connection) error
	// List returns every connection.
	List(ctx context.Context) ([]*providers.Connection, error)
	// MarkNeedsReauth records that the patient must connect again; providers.ErrNotConnected
	// if the connection is gone.
	MarkNeedsReauth(ctx context.Context, c *providers.Connection, reason string) error
	// TokenSource returns a source that refreshes and persists the connection's tokens.
	TokenSource(ctx context.Context, c *providers.Connection, p providers.Provider) oauth2.TokenSource
}

// Store is what the pipeline needs of the store: resources, the job queue, sync coverage, and
// the records of the queue it replaced (read once, by Migrate). Every store.Store with the job
// queue and coverage satisfies it.
type Store interface {
	// Upsert writes resources matched by their first identifier (store.Store.Upsert).
	Upsert(ctx context.Context, rs []fhir.Resource) ([]store.UpsertResult, error)
	// Read returns a resource's current version; store.ErrNotFound, store.ErrDeleted.
	Read(ctx context.Context, typ, id string) (store.Entry, error)
	// Search runs a parsed query and returns one page.
	Search(ctx context.Context, q *search.Query) (*store.Result, error)
	// Delete marks a resource deleted; store.ErrNotFound for an unknown id.
	Delete(ctx context.Context, typ, id string) error
	// PurgeHistory erases a resource's prior versions; store.ErrNotFound for an unknown id.
	PurgeHistory(ctx context.Context, typ, id string) error
	// ListRecords lists the records of a kind (none: an empty slice).
	ListRecords(ctx context.Context, kind string) ([]store.Record, error)
	// DeleteRecord deletes a record; an absent one is no error.
	DeleteRecord(ctx context.Context, kind, id string) error
	// CreateRecord stores a record unless a live one exists (store.ErrDuplicate), atomically
	// across store handles: the upkeep passes' leases (upkeep.go).
	CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// PutRecord stores a record, replacing any previous one.
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// GetRecord returns a live record's document, or store.ErrNotFound.
	GetRecord(ctx context.Context, kind, id string) ([]byte, error)
	store.Jobs
	store.Coverages
}

// Config configures a Runner.
type Config struct {
	// Backfill is the window an initial backfill covers (default 30 days).
	Backfill time.Duration
	// CallbackURL returns the webhook URL registered with a provider (it carries the
	// deployment's secret path segment).
	CallbackURL func(provider string) string
	// Batch is the number of resources per upsert (default 5000: one transaction and one commit
	// each — fewer, larger commits write each index page once; a batch holds the single SQLite
	// writer for a fraction of a second).
	Batch int
	// Workers is the number of jobs run at once (default 2).
	Workers int
	// Poll is how often an idle runner looks for due jobs (default 1 s).
	Poll time.Duration
	// Lease is how long a claimed job belongs to this runner without renewal (default 5 min).
	// A running job's lease is renewed every Lease/3; a runner that dies loses its jobs to
	// another runner once their leases expire.
	Lease time.Duration
	// MaxAttempts is how many failed runs make a dead letter (default 8).
	MaxAttempts int
	// Reconcile is the period of the reconcile pass (upkeep.go): every active connection gets a
	// fetch of the last ReconcileWindow and a subscription repair (default 6 h; negative:
	// never). Notifications only ever fetch their own window, so this is what catches up data
	// whose notification never arrived: a vendor gives up after its retries and drops a
	// failing subscription.
	Reconcile time.Duration
	// ReconcileWindow is how far back a reconciliation reads (default 7 days; negative: an
	// incremental fetch of every kind from its cursor instead of a window).
	ReconcileWindow time.Duration
	// DeviceSync is the period of the device pass: every active connection's devices are
	// synced again (battery levels; default 24 h; negative: never).
	DeviceSync time.Duration
	// TokenRefreshAhead is how long before its expiry an access token is refreshed by the
	// tokens pass, which looks every TokenRefreshAhead/3 (at least every minute; default
	// 15 min; negative: never, tokens are then refreshed only when a job needs them).
	TokenRefreshAhead time.Duration
	// UpkeepCheck is how often the runner looks for a due upkeep pass (default 1 min).
	UpkeepCheck time.Duration
	// Metrics, if set, receives the counters ohx_jobs_total{type,outcome} and
	// ohx_webhook_notifications_total{provider,outcome}.
	Metrics prometheus.Registerer
	// Namespace is the base of the identifier systems and meta.source of the resources the
	// runner writes (default fhir.DefaultNamespace). Resource ids derive from it: it must not
	// change once a store holds synced data, or a re-sync would write every resource again under
	// a new id.
	Namespace fhir.Namespace
	// Now is the runner's clock (default time.Now): job times and leases, the backfill window,
	// the end of fetch windows, the last sync and the times of device associations. End-to-end
	// tests shift it to the time of their recorded vendor payloads.
	Now func() time.Time
	// Upserted, if set, is called after every upsert of a patient's synced resources (see
	// UpsertedFunc): cmd/ohx hooks publishing to an EHR in here.
	Upserted UpsertedFunc
}

// Runner executes the jobs of the store's queue with the handler registered for their type.
type Runner struct {
	cfg   Config
	reg   *providers.Registry
	vault Vault
	st    Store
	sreg  *search.Registry
	log   *slog.Logger
	now   func() time.Time
	owner string // this runner's lease owner id, random per process

	mu       sync.RWMutex
	handlers map[string]Handler

	jobs          *prometheus.CounterVec
	notifications *prometheus.CounterVec
	jm            *jobMetrics // job latency and the queue collector (metrics.go)

	rt rtHooks // read-through's waiting searches and wake-up (readthrough.go)
}

// NewRunner returns a runner over the store's job queue with the handlers of the job types
// TypeDeviceSync, TypeBackfill, TypeFetch and TypeSubscribe registered. log nil discards.
func NewRunner(cfg Config, reg *providers.Registry, vault Vault, st Store, log *slog.Logger) *Runner {
	if cfg.Backfill <= 0 {
		cfg.Backfill = 30 * 24 * time.Hour
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 5000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Reconcile == 0 {
		cfg.Reconcile = 6 * time.Hour
	}
	if cfg.ReconcileWindow == 0 {
		cfg.ReconcileWindow = 7 * 24 * time.Hour
	}
	if cfg.DeviceSync == 0 {
		cfg.DeviceSync = 24 * time.Hour
	}
	if cfg.TokenRefreshAhead == 0 {
		cfg.TokenRefreshAhead = 15 * time.Minute
	}
	if cfg.UpkeepCheck <= 0 {
		cfg.UpkeepCheck = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Namespace == "" {
		cfg.Namespace = fhir.DefaultNamespace
	}
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	r := &Runner{cfg: cfg, reg: reg, vault: vault, st: st, sreg: search.DefaultRegistry(), log: log, now: cfg.Now,
		owner: "runner-" + hex.EncodeToString(b[:]), handlers: map[string]Handler{},
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_jobs_total", Help: "Sync jobs run, by type and outcome (done, retry, dead, lost).",
		}, []string{"type", "outcome"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_webhook_notifications_total",
			Help: "Vendor notifications received, by provider and outcome (queued, coalesced, unknown_user, inactive, revoked).",
		}, []string{"provider", "outcome"}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(r.jobs, r.notifications)
	}
	r.jm = newJobMetrics(cfg.Metrics, st, cfg.Now, log)
	r.Handle(TypeDeviceSync, r.connHandler(r.syncDevices))
	r.Handle(TypeBackfill, r.connHandler(r.backfill))
	r.Handle(TypeFetch, r.signalDone(r.connHandler(r.fetch))) // read-through waits for fetches
	r.Handle(TypeSubscribe, r.connHandler(r.subscribe))
	r.Handle(TypeRetire, r.retire)
	r.Handle(TypeReconcile, skipGone(r.connHandler(r.reconcileFetch)))
	r.Handle(TypeTokenRefresh, skipGone(r.connHandler(r.refreshToken)))
	return r
}

// Job types of the runner's own handlers. Their payload is a Work.
const (
	TypeDeviceSync = "device-sync" // devices → Device + DeviceAssociation
	TypeBackfill   = "backfill"    // a window of the kinds (every enabled kind when none)
	TypeFetch      = "fetch"       // a notified change: its window, or incrementally per kind
	TypeSubscribe  = "subscribe"   // register the vendor webhook subscription
)

// Job priorities: a patient's fresh data (webhook fetches) comes before the setup of a new
// connection, which comes before the bulk of a backfill.
const (
	PriorityFetch      = 100
	PriorityReconcile  = 20
	PrioritySubscribe  = 60
	PriorityDeviceSync = 50
	PriorityBackfill   = 0
)

var typePriority = map[string]int{
	TypeFetch: PriorityFetch, TypeSubscribe: PrioritySubscribe, TypeDeviceSync: PriorityDeviceSync, TypeBackfill: PriorityBackfill,
	TypeRetire: PriorityRetire, TypeReconcile: PriorityReconcile, TypeTokenRefresh: PriorityTokenRefresh,
}

// Work is the payload of the runner's own jobs: one patient's connection to one provider, the
// kinds (empty: every kind the adapter reads) and, for backfills and windowed fetches, the
// window [Start, End).
type Work struct {
	Provider string            `json:"provider"`
	Patient  string            `json:"patient"`
	Kinds    []fhir.SampleKind `json:"kinds,omitempty"`
	Start    time.Time         `json:"start,omitzero"`
	End      time.Time         `json:"end,omitzero"`
}

// Job returns the job of type typ doing w, with the type's priority and a key derived from the
// type, provider, patient, sorted kinds and window: jobs doing the same work coalesce in the
// queue (a redelivered notification, a burst of identical ones).
func (w Work) Job(typ string) store.Job {
	w.Kinds = sortedKinds(w.Kinds)
	if !w.Start.IsZero() {
		w.Start = w.Start.UTC()
	}
	if !w.End.IsZero() {
		w.End = w.End.UTC()
	}
	b, _ := json.Marshal(w) // a struct of strings and times: never fails
	return store.Job{Type: typ, Key: workKey(typ, w), Priority: typePriority[typ], Payload: b}
}

// Connected enqueues the work that follows a new connection: device sync, the initial backfill
// and the webhook subscription.
func (r *Runner) Connected(ctx context.Context, provider, patient string) error {
	now := r.now().UTC()
	for _, j := range []store.Job{
		Work{Provider: provider, Patient: patient}.Job(TypeDeviceSync),
		Work{Provider: provider, Patient: patient, Start: now.Add(-r.cfg.Backfill), End: now}.Job(TypeBackfill),
		Work{Provider: provider, Patient: patient}.Job(TypeSubscribe),
	} {
		if _, _, err := r.Enqueue(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// Reconcile runs the reconcile pass now, whatever the period (an operator's request, tests):
// for every active connection a TypeReconcile job (the last Config.ReconcileWindow of every
// kind, at PriorityReconcile: after the webhooks' fresh data) and a subscription repair (the
// Withings Subscribe lists first and adds only what is missing), and the retirement of every
// connection that another active connection of its patient continues (Retire, should it not
// have been queued when the patient moved). The job keys name the connection only, so they
// coalesce with the same work already queued and running it often is harmless. It returns how
// many jobs it queued. The scheduler runs it once per Config.Reconcile across every runner
// sharing the store (Upkeep).
func (r *Runner) Reconcile(ctx context.Context) (int, error) {
	var p Pass
	if err := r.reconcilePass(ctx, &p); err != nil {
		return p.Queued, fmt.Errorf("pipeline: reconcile: %w", err)
	}
	return p.Queued, nil
}

// Coverage returns what has been synced of a patient's connection to provider, per kind.
func (r *Runner) Coverage(ctx context.Context, provider, patient string) ([]store.Coverage, error) {
	cs, err := r.st.Coverage(ctx, provider, patient)
	if err != nil {
		return nil, fmt.Errorf("pipeline: coverage: %w", err)
	}
	return cs, nil
}

// session is what a connection's job works with.
type session struct {
	p    providers.Provider
	conn *providers.Connection
	ts   oauth2.TokenSource
}

// connHandler adapts a handler of one connection's Work: it decodes the payload, resolves the
// provider and the active connection, and records a failure on the connection.
func (r *Runner) connHandler(run func(ctx context.Context, s *session, w Work) error) Handler {
	return func(ctx context.Context, j store.Job) error {
		var w Work
		if err := json.Unmarshal(j.Payload, &w); err != nil {
			return Permanent(fmt.Errorf("job %s: decode payload: %w", j.Type, err))
		}
		p, ok := r.reg.Get(w.Provider)
		if !ok {
			return fmt.Errorf("job %s: %w: provider %q is not configured", j.Type, providers.ErrNotConnected, w.Provider)
		}
		conn, err := r.vault.Get(ctx, w.Provider, w.Patient)
		if err != nil {
			return fmt.Errorf("job %s: %w", j.Type, err)
		}
		if conn.Status != providers.StatusActive {
			return fmt.Errorf("job %s: connection is %s: %w", j.Type, conn.Status, providers.ErrNotConnected)
		}
		s := &session{p: p, conn: conn, ts: r.vault.TokenSource(ctx, conn, p)}
		if err := run(ctx, s, w); err != nil {
			if ctx.Err() == nil {
				r.noteError(ctx, conn, err)
			}
			return fmt.Errorf("job %s: %w", j.Type, err)
		}
		return nil
	}
}

func (r *Runner) noteError(ctx context.Context, conn *providers.Connection, err error) {
	latest, gerr := r.vault.Get(ctx, conn.Provider, conn.PatientID)
	if gerr != nil {
		return
	}
	latest.LastError = publicError(err) // never the raw error: it may quote vendor text
	if err := r.vault.Save(ctx, latest); err != nil {
		r.log.Error("saving connection state", "provider", conn.Provider, "err", err)
	}
}

// markSynced records a successful sync on the connection.
func (r *Runner) markSynced(ctx context.Context, conn *providers.Connection) error {
	latest, err := r.vault.Get(ctx, conn.Provider, conn.PatientID)
	if err != nil {
		return err
	}
	latest.LastSync = r.now().UTC()
	latest.LastError = ""
	return r.vault.Save(ctx, latest)
}

func (r *Runner) subscribe(ctx context.Context, s *session, w Work) error {
	sub, ok := s.p.(providers.Subscriber)
	if !ok || r.cfg.CallbackURL == nil {
		return nil
	}
	return providers.RetryOnAuth(ctx, s.ts, func() error {
		return sub.Subscribe(ctx, s.conn.VendorUserID, s.ts, r.cfg.CallbackURL(w.Provider), nil)
	})
}

// backfill reads a window of the kinds and records it as covered. A kind without an
// incremental cursor starts its cursor at the vendor's horizon of the backfill: everything of
// the window up to it was read, and data older than the window is outside what ohx syncs.
func (r *Runner) backfill(ctx context.Context, s *session, w Work) error {
	return r.fetchWindow(ctx, s, w, true)
}

// fetch runs a notified change: the notification's window when it had one, or otherwise an
// incremental sync of each kind from its cursor.
func (r *Runner) fetch(ctx context.Context, s *session, w Work) error {
	if w.Start.IsZero() && w.End.IsZero() {
		return r.fetchIncremental(ctx, s, w)
	}
	return r.fetchWindow(ctx, s, w, false)
}

// fetchWindow reads [w.Start, w.End) of the kinds with one query (for Withings: one vendor call
// per kind family and page) and adds the window to each kind's coverage.
func (r *Runner) fetchWindow(ctx context.Context, s *session, w Work, startCursor bool) error {
	synced, err := r.fetchQuery(ctx, s, providers.Query{Kinds: w.Kinds, Start: w.Start, End: w.End, Fresh: true})
	if err != nil {
		return err
	}
	// A notification's window is widened to whole days (Bucket): what lies past now was not
	// read, since it had not happened, and is not covered.
	end := w.End
	if now := r.now(); end.IsZero() || end.After(now) {
		end = now
	}
	for _, k := range coveredKinds(w.Kinds, s.p.Kinds()) {
		err := r.updateCoverage(ctx, s, k, func(c *store.Coverage) {
			if !w.Start.IsZero() {
				c.Add(w.Start, end)
			}
			if startCursor && c.Cursor == "" && !synced.IsZero() {
				c.Cursor = formatCursor(synced)
			}
		})
		if err != nil {
			return err
		}
	}
	return r.markSynced(ctx, s.conn)
}

// legacyCursorKey is the connection-level cursor of the incremental sync of every kind, kept in
// providers.Connection.SyncCursors before coverage was recorded per kind.
const legacyCursorKey = "all"

// fetchIncremental reads, for each kind, what changed since the kind's cursor, and moves the
// cursors to the vendor's horizon. Kinds with the same cursor share one query (one vendor call
// per kind family): after the first sync of a connection that is every kind.
func (r *Runner) fetchIncremental(ctx context.Context, s *session, w Work) error {
	kinds := w.Kinds
	if len(kinds) == 0 {
		kinds = s.p.Kinds()
	}
	covs, err := r.st.Coverage(ctx, s.p.Name(), s.conn.PatientID)
	if err != nil {
		return fmt.Errorf("read coverage: %w", err)
	}
	cursors := map[fhir.SampleKind]string{}
	for _, c := range covs {
		cursors[fhir.SampleKind(c.Kind)] = c.Cursor
	}
	// A kind without a cursor of its own starts from the connection-level cursor an earlier
	// version kept for every kind, so that an upgrade does not re-fetch everything; without
	// either, the incremental sync reads everything the vendor has (lastupdate 0).
	legacy := s.conn.SyncCursors[legacyCursorKey]
	type group struct {
		since time.Time
		kinds []fhir.SampleKind
	}
	var groups []*group
	for _, k := range sortedKinds(kinds) {
		since := legacy
		if t, ok := parseCursor(cursors[k]); ok {
			since = t
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.since.Equal(since) })
		if i < 0 {
			groups = append(groups, &group{since: since})
			i = len(groups) - 1
		}
		groups[i].kinds = append(groups[i].kinds, k)
	}
	slices.SortFunc(groups, func(a, b *group) int { return a.since.Compare(b.since) })
	enabled := s.p.Kinds()
	for _, g := range groups {
		synced, err := r.fetchQuery(ctx, s, providers.Query{Kinds: g.kinds, Since: g.since, Fresh: true})
		if err != nil {
			return err
		}
		if synced.IsZero() {
			continue
		}
		for _, k := range g.kinds {
			if !slices.Contains(enabled, k) {
				continue // a component kind the adapter folds into its parent: no stream of its own
			}
			err := r.updateCoverage(ctx, s, k, func(c *store.Coverage) {
				if cur, ok := parseCursor(c.Cursor); !ok || synced.After(cur) {
					c.Cursor = formatCursor(synced)
				}
			})
			if err != nil {
				return err
			}
		}
	}
	return r.markSynced(ctx, s.conn)
}

func (r *Runner) updateCoverage(ctx context.Context, s *session, k fhir.SampleKind, fn func(*store.Coverage)) error {
	key := store.CoverageKey{Provider: s.p.Name(), Patient: s.conn.PatientID, Kind: string(k)}
	if _, err := r.st.UpdateCoverage(ctx, key, r.now(), func(c *store.Coverage) error { fn(c); return nil }); err != nil {
		return fmt.Errorf("record coverage of %s: %w", k, err)
	}
	return nil
}

// formatCursor and parseCursor are the pipeline's coverage cursor: the vendor's SyncedUntil
// horizon in RFC 3339, which the next incremental query passes as Since.
func formatCursor(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseCursor(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// coveredKinds are the streams a query of kinds reads: the enabled kinds it names (all of them
// when it names none).
func coveredKinds(kinds, enabled []fhir.SampleKind) []fhir.SampleKind {
	if len(kinds) == 0 {
		return enabled
	}
	var out []fhir.SampleKind
	for _, k := range sortedKinds(kinds) {
		if slices.Contains(enabled, k) {
			out = append(out, k)
		}
	}
	return out
}

// sortedKinds returns the kinds sorted and without duplicates (nil for none).
func sortedKinds(kinds []fhir.SampleKind) []fhir.SampleKind {
	if len(kinds) == 0 {
		return nil
	}
	out := slices.Clone(kinds)
	slices.Sort(out)
	return slices.Compact(out)
}

// fetchQuery pages through a query, mapping and upserting as it goes; after a window query, the
// records its complete answer no longer holds become entered-in-error (withdrawn.go). It returns
// the vendor's horizon: the latest SyncedUntil of its pages.
func (r *Runner) fetchQuery(ctx context.Context, s *session, q providers.Query) (time.Time, error) {
	lin := r.newLineage(s.conn)
	wb := r.writeBehind(ctx, s.conn.PatientID, lin == nil)
	defer wb.stop()
	var batch []fhir.Resource
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := wb.write(batch)
		batch = nil // the writer owns it now
		return err
	}
	var synced time.Time
	first := q
	wd := r.newWithdrawal(s, q) // nil unless the adapter says the window answer is complete
	for {
		// An auth error refreshes the token once and retries; a second one marks the
		// connection needs-reauth.
		var page *providers.Page
		err := providers.RetryOnAuth(ctx, s.ts, func() (err error) {
			page, err = s.p.Fetch(ctx, s.conn.VendorUserID, s.ts, q)
			return err
		})
		if err != nil {
			return time.Time{}, err
		}
		wd.note(r.cfg.Namespace, page)
		for _, smp := range page.Samples {
			o, err := r.cfg.Namespace.MapSample(smp, s.conn.PatientID)
			if errors.Is(err, fhir.ErrUnsupportedKind) {
				// A kind without a verified code is read only when an operator enables it.
				r.log.Debug("sample kind not mapped", "provider", smp.Provider, "kind", smp.Kind)
				continue
			}
			if err != nil {
				// A sample the mapper cannot code is a defect to fix, not data to guess at.
				r.log.Warn("sample not mapped", "provider", smp.Provider, "kind", smp.Kind, "err", err)
				continue
			}
			if err := lin.adopt(ctx, s.conn.PatientID, o); err != nil {
				return time.Time{}, err
			}
			wd.upserting(o.ID)
			batch = append(batch, o)
			if len(batch) >= r.cfg.Batch {
				if err := flush(); err != nil {
					return time.Time{}, err
				}
			}
		}
		if page.SyncedUntil.After(synced) {
			synced = page.SyncedUntil
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if err := flush(); err != nil {
		return time.Time{}, err
	}
	if err := wb.wait(); err != nil {
		return time.Time{}, err
	}
	// What the complete answer no longer holds, the vendor deleted (withdrawn.go).
	if _, err := r.withdrawGone(ctx, s, first, wd); err != nil {
		return time.Time{}, err
	}
	return synced, nil
}

// syncDevices writes a Device per vendor device (updated in place) and a DeviceAssociation per
// patient and device; associations of devices that disappeared are ended, never deleted.
func (r *Runner) syncDevices(ctx context.Context, s *session, _ Work) error {
	var devices []fhir.DeviceInfo
	err := providers.RetryOnAuth(ctx, s.ts, func() (err error) {
		devices, err = s.p.Devices(ctx, s.conn.VendorUserID, s.ts)
		return err
	})
	if err != nil {
		return err
	}
	now := r.now()
	var rs []fhir.Resource
	current := map[string]bool{}
	for _, d := range devices {
		current[d.ID] = true
		dev := r.cfg.Namespace.MapDevice(d)
		a := r.cfg.Namespace.MapAssociation(s.conn.PatientID, d, now, nil)
		if first, ok, err := r.firstSeen(ctx, a.ID); err != nil {
			return err
		} else if ok {
			a = r.cfg.Namespace.MapAssociation(s.conn.PatientID, d, first, nil)
		}
		rs = append(rs, dev, a)
	}
	ended, err := r.endGone(ctx, s.p.Name(), s.conn, current, now)
	if err != nil {
		return err
	}
	rs = append(rs, ended...)
	if len(rs) == 0 {
		return nil
	}
	res, err := r.st.Upsert(ctx, rs)
	if err != nil {
		return err
	}
	return r.upserted(ctx, s.conn.PatientID, res)
}

// firstSeen returns the period start of a stored association, so re-syncs keep it.
func (r *Runner) firstSeen(ctx context.Context, id string) (time.Time, bool, error) {
	e, err := r.st.Read(ctx, "DeviceAssociation", id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	var a fhir.DeviceAssociation
	if err := json.Unmarshal(e.JSON, &a); err != nil {
		return time.Time{}, false, fmt.Errorf("decode stored DeviceAssociation/%s: %w", id, err)
	}
	if a.Period == nil || a.Period.Start == "" {
		return time.Time{}, false, nil
	}
	t, err := time.Parse(time.RFC3339, a.Period.Start)
	return t, err == nil, nil
}

// endGone ends the patient's live associations with this provider's devices that the vendor no
// longer lists.
func (r *Runner) endGone(ctx context.Context, provider string, conn *providers.Connection, current map[string]bool, now time.Time) ([]fhir.Resource, error) {
	system := r.cfg.Namespace.DeviceAssociationSystem(provider)
	q, _, err := r.sreg.Parse("DeviceAssociation", []search.NameValue{
		{Name: "patient", Value: "Patient/" + conn.PatientID},
		{Name: "identifier", Value: system + "|"},
		{Name: "status", Value: fhir.DeviceAssociationStatusSystem + "|attached"},
		{Name: "_count", Value: "1000"},
	}, search.Options{MaxCount: 1000})
	if err != nil {
		return nil, err
	}
	res, err := r.st.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []fhir.Resource
	for _, m := range res.Matches {
		var a fhir.DeviceAssociation
		if err := json.Unmarshal(m.JSON, &a); err != nil {
			return nil, fmt.Errorf("decode stored DeviceAssociation/%s: %w", m.ID, err)
		}
		i := slices.IndexFunc(a.Identifier, func(id fhir.Identifier) bool { return id.System == system })
		if i < 0 {
			continue
		}
		user, dev, ok := strings.Cut(a.Identifier[i].Value, "/")
		if !ok || current[dev] || user != conn.VendorUserID {
			continue
		}
		first := now
		if a.Period != nil {
			if t, err := time.Parse(time.RFC3339, a.Period.Start); err == nil {
				first = t
			}
		}
		end := now
		out = append(out, r.cfg.Namespace.MapAssociation(conn.PatientID, fhir.DeviceInfo{Provider: provider, UserID: user, ID: dev}, first, &end))
	}
	return out, nil
}
