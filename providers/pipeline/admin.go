package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// SyncRequest is an operator's request for a sync now (POST /admin/sync): the connections of
// Provider and of Patient (either empty: any), the kinds (none: every kind each adapter reads)
// and the window [Start, End) (both zero: incrementally, every kind from its cursor).
type SyncRequest struct {
	Provider string
	Patient  string
	Kinds    []fhir.SampleKind
	Start    time.Time
	End      time.Time
}

// SyncQueued is the job a SyncRequest queued for one connection.
type SyncQueued struct {
	Provider  string
	Patient   string
	JobID     string
	Kinds     []fhir.SampleKind // the kinds it fetches; none: every kind the adapter reads
	Coalesced bool              // the same work was queued already: that job does it
}

// MaxSyncWindow bounds the window of a SyncRequest: a year of a patient's data is a few
// thousand vendor pages at most, and a longer backfill is better done in pieces an operator
// can watch.
const MaxSyncWindow = 366 * 24 * time.Hour

// ErrUnknownProvider is a SyncRequest naming a provider this deployment does not offer.
var ErrUnknownProvider = errors.New("provider is not configured")

// ErrInactive is a SyncRequest naming one connection that cannot sync: it needs the patient's
// consent again, or was disconnected.
var ErrInactive = errors.New("the connection is not active")

// InvalidSyncError is a SyncRequest that cannot be run as asked. Its text names the field and
// is safe to show to the operator.
type InvalidSyncError struct {
	Field, Reason string
}

func (e *InvalidSyncError) Error() string { return e.Field + ": " + e.Reason }

func invalidSync(field, format string, args ...any) error {
	return &InvalidSyncError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// TriggerSync queues a fetch (TypeFetch, at PriorityFetch: before reconciliation and backfills)
// for every active connection matching req, of the kinds its adapter reads among req.Kinds,
// over req's window or incrementally. Jobs coalesce with the same work already queued. The
// connections come back ordered by provider and patient.
//
// Errors: *InvalidSyncError for a window that is half given, empty, inverted or longer than
// MaxSyncWindow, or kinds no matching adapter reads; ErrUnknownProvider; with both Provider and
// Patient set, providers.ErrNotConnected when there is no such connection and ErrInactive when
// it is not active. Connections matched by one field only that are not active are skipped.
func (r *Runner) TriggerSync(ctx context.Context, req SyncRequest) ([]SyncQueued, error) {
	if req.Start.IsZero() != req.End.IsZero() {
		return nil, invalidSync("start", "give both start and end, or neither for an incremental sync")
	}
	if !req.Start.IsZero() {
		if !req.Start.Before(req.End) {
			return nil, invalidSync("end", "must be after start")
		}
		if req.End.Sub(req.Start) > MaxSyncWindow {
			return nil, invalidSync("end", "the window is longer than %d days: sync it in pieces", int(MaxSyncWindow/(24*time.Hour)))
		}
	}
	if req.Provider != "" {
		if _, ok := r.reg.Get(req.Provider); !ok {
			return nil, fmt.Errorf("pipeline: sync %q: %w", req.Provider, ErrUnknownProvider)
		}
	}
	kinds := sortedKinds(req.Kinds)
	for _, k := range kinds {
		if !slices.ContainsFunc(r.providersOf(req.Provider), func(p providers.Provider) bool { return slices.Contains(p.Kinds(), k) }) {
			return nil, invalidSync("kinds", "%q is not a kind this deployment reads from %s", k, cmp.Or(req.Provider, "any provider"))
		}
	}
	var conns []*providers.Connection
	if req.Provider != "" && req.Patient != "" {
		c, err := r.vault.Get(ctx, req.Provider, req.Patient)
		if err != nil {
			return nil, fmt.Errorf("pipeline: sync: %w", err)
		}
		if c.Status != providers.StatusActive {
			return nil, fmt.Errorf("pipeline: sync: connection is %s: %w", c.Status, ErrInactive)
		}
		conns = []*providers.Connection{c}
	} else {
		all, err := r.vault.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("pipeline: sync: %w", err)
		}
		for _, c := range all {
			if (req.Provider == "" || c.Provider == req.Provider) && (req.Patient == "" || c.PatientID == req.Patient) && c.Status == providers.StatusActive {
				conns = append(conns, c)
			}
		}
	}
	slices.SortFunc(conns, func(a, b *providers.Connection) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.PatientID, b.PatientID))
	})
	out := []SyncQueued{}
	for _, c := range conns {
		p, ok := r.reg.Get(c.Provider)
		if !ok {
			continue // a connection of a vendor no longer offered
		}
		var ks []fhir.SampleKind
		for _, k := range kinds {
			if slices.Contains(p.Kinds(), k) {
				ks = append(ks, k)
			}
		}
		if len(kinds) > 0 && len(ks) == 0 {
			continue // none of the kinds is this vendor's
		}
		w := Work{Provider: c.Provider, Patient: c.PatientID, Kinds: ks}
		if !req.Start.IsZero() {
			w.Start, w.End = req.Start.UTC(), req.End.UTC()
		}
		id, coalesced, err := r.Enqueue(ctx, w.Job(TypeFetch))
		if err != nil {
			return out, err
		}
		out = append(out, SyncQueued{Provider: c.Provider, Patient: c.PatientID, JobID: id, Kinds: ks, Coalesced: coalesced})
	}
	return out, nil
}

// providersOf returns the named provider, or every registered one for "".
func (r *Runner) providersOf(name string) []providers.Provider {
	var out []providers.Provider
	for _, n := range r.reg.Names() {
		if name == "" || n == name {
			if p, ok := r.reg.Get(n); ok {
				out = append(out, p)
			}
		}
	}
	return out
}
