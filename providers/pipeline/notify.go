package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// Notifier turns vendor notifications into fetch jobs; it is the api's webhook sink.
type Notifier struct {
	r     *Runner
	users activeUsers
}

// Notifier returns the webhook sink that queues the runner's fetch jobs.
func (r *Runner) Notifier() *Notifier {
	return &Notifier{r: r, users: activeUsers{ttl: activeUserTTL, now: time.Now, m: map[activeUserKey]activeUser{}}}
}

// activeUserTTL is how long the notifier trusts that a vendor user it found with an active
// connection still has it; maxActiveUsers bounds the entries (past it the map starts over).
const (
	activeUserTTL  = 5 * time.Second
	maxActiveUsers = 1 << 16
)

// activeUsers remembers, for activeUserTTL, the vendor users whose connection was active: a
// retry storm or a burst of a patient's notifications then costs the acknowledgement path no
// read of the vault (two records of ohx.db, through a read pool the runner's syncs share,
// about two thirds of a notification's CPU in the webhook bench's profile). Only active
// connections are remembered, so a stale entry can only queue a job that should not have been
// queued, never drop a notification: a connection disconnected or needing a new consent since
// is found so by the job itself, which reads the connection again before calling the vendor
// (jobs.go: ErrNotConnected and a revoked consent are permanent, the job is dropped). A vendor
// account moved to another patient within the TTL would queue its notifications of those
// seconds for the old patient (dropped), and the new connection's backfill and reconciliation
// read them. A revocation this notifier handles forgets the user at once.
type activeUsers struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[activeUserKey]activeUser
}

type activeUserKey struct{ provider, vendorUser string }

type activeUser struct {
	patient string
	until   time.Time
}

// get returns the patient of the vendor user's active connection, if remembered and fresh.
func (a *activeUsers) get(provider, vendorUser string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.m[activeUserKey{provider, vendorUser}]
	if !ok || !a.now().Before(u.until) {
		return "", false
	}
	return u.patient, true
}

// put remembers an active connection of the vendor user.
func (a *activeUsers) put(provider, vendorUser, patient string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.m) >= maxActiveUsers {
		clear(a.m)
	}
	a.m[activeUserKey{provider, vendorUser}] = activeUser{patient: patient, until: a.now().Add(a.ttl)}
}

// forget drops the vendor user.
func (a *activeUsers) forget(provider, vendorUser string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, activeUserKey{provider, vendorUser})
}

// Notification outcomes (ohx_webhook_notifications_total{outcome}).
const (
	outcomeQueued      = "queued"       // a new fetch job
	outcomeCoalesced   = "coalesced"    // the same work was queued already
	outcomeUnknownUser = "unknown_user" // no connection holds the vendor user
	outcomeInactive    = "inactive"     // the connection needs a new consent: nothing can be fetched
	outcomeRevoked     = "revoked"      // the user withdrew access: the connection needs a new consent
)

// revokedReason is the connection's LastError after the vendor announced a withdrawn access.
const revokedReason = "access was withdrawn at the vendor: the patient must connect again"

// Notify persists the notifications of one delivery before returning. A data notification
// becomes a TypeFetch job of its connection's patient with its kinds and its window widened to
// the UTC days it touches (Bucket); the job key is derived from that work (provider, patient,
// sorted kinds, days), so that a redelivery, a burst of notifications for one patient's day, or
// a vendor's retry storm after an outage queues one job and one vendor call per kind family
// and day instead of one per notification. A revocation marks the
// connection needs-reauth and queues nothing. Notifications of unknown vendor users are skipped
// (no oracle), as are data notifications of connections that are not active (a vendor user
// found active is trusted for activeUserTTL, see activeUsers). An error means
// something was not persisted: the caller answers the vendor with a failure so that it
// redelivers (coalescing makes the jobs already queued harmless).
func (n *Notifier) Notify(ctx context.Context, provider string, ns []providers.Notification) error {
	r := n.r
	for _, nt := range ns {
		if nt.Event != providers.EventRevoked {
			if patient, ok := n.users.get(provider, nt.VendorUser); ok {
				if err := n.fetch(ctx, provider, patient, nt); err != nil {
					return err
				}
				continue
			}
		} else {
			n.users.forget(provider, nt.VendorUser)
		}
		conn, err := r.vault.ByVendorUser(ctx, provider, nt.VendorUser)
		if errors.Is(err, providers.ErrNotConnected) {
			r.notifications.WithLabelValues(provider, outcomeUnknownUser).Inc()
			continue
		}
		if err != nil {
			return fmt.Errorf("pipeline: notification: %w", err)
		}
		switch {
		case nt.Event == providers.EventRevoked:
			if conn.Status == providers.StatusActive {
				err := r.vault.MarkNeedsReauth(ctx, conn, revokedReason)
				if err != nil && !errors.Is(err, providers.ErrNotConnected) {
					return fmt.Errorf("pipeline: notification: %w", err)
				}
				r.log.Info("vendor access withdrawn", "provider", provider, "connection", conn.ID)
			}
			r.notifications.WithLabelValues(provider, outcomeRevoked).Inc()
		case conn.Status != providers.StatusActive:
			r.notifications.WithLabelValues(provider, outcomeInactive).Inc()
		default:
			n.users.put(provider, nt.VendorUser, conn.PatientID)
			if err := n.fetch(ctx, provider, conn.PatientID, nt); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetch queues the fetch job of a data notification of the patient's active connection.
func (n *Notifier) fetch(ctx context.Context, provider, patient string, nt providers.Notification) error {
	start, end := Bucket(nt.Start, nt.End)
	j := Work{Provider: provider, Patient: patient, Kinds: nt.Kinds, Start: start, End: end}.Job(TypeFetch)
	_, coalesced, err := n.r.Enqueue(ctx, j)
	if err != nil {
		return fmt.Errorf("pipeline: notification: %w", err)
	}
	outcome := outcomeQueued
	if coalesced {
		outcome = outcomeCoalesced
	}
	n.r.notifications.WithLabelValues(provider, outcome).Inc()
	return nil
}

// bucketSize is the unit notification windows are widened to: a UTC day.
const bucketSize = 24 * time.Hour

// Bucket widens a notification's window [start, end) to the UTC days it touches: [midnight at
// or before start, midnight at or after end). Notifications of one patient and kind family on
// one day then name the same work and coalesce into one job, which reads the day with one
// vendor call; a redelivered or overlapping notification adds nothing. Reading a whole day
// instead of a few seconds costs the vendor no extra call (a day of one user's measures is one
// page) and the upsert is idempotent. A zero window (the vendor named none: an incremental
// sync follows) stays zero; a window with one bound is widened on that side only.
func Bucket(start, end time.Time) (time.Time, time.Time) {
	if !start.IsZero() {
		start = start.UTC().Truncate(bucketSize)
	}
	if !end.IsZero() {
		e := end.UTC()
		if t := e.Truncate(bucketSize); t.Before(e) {
			e = t.Add(bucketSize)
		}
		end = e
	}
	return start, end
}
