package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// Notifier turns vendor notifications into fetch jobs; it is the api's webhook sink.
type Notifier struct {
	r *Runner
}

// Notifier returns the webhook sink that queues the runner's fetch jobs.
func (r *Runner) Notifier() *Notifier { return &Notifier{r: r} }

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
// (no oracle), as are data notifications of connections that are not active. An error means
// something was not persisted: the caller answers the vendor with a failure so that it
// redelivers (coalescing makes the jobs already queued harmless).
func (n *Notifier) Notify(ctx context.Context, provider string, ns []providers.Notification) error {
	r := n.r
	for _, nt := range ns {
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
			start, end := Bucket(nt.Start, nt.End)
			j := Work{Provider: provider, Patient: conn.PatientID, Kinds: nt.Kinds, Start: start, End: end}.Job(TypeFetch)
			_, coalesced, err := r.Enqueue(ctx, j)
			if err != nil {
				return fmt.Errorf("pipeline: notification: %w", err)
			}
			outcome := outcomeQueued
			if coalesced {
				outcome = outcomeCoalesced
			}
			r.notifications.WithLabelValues(provider, outcome).Inc()
		}
	}
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
