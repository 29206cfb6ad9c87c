package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Disconnect unlinks a patient from a provider: the vendor webhook subscription is removed and the
// tokens revoked (best effort: the vendor may already have forgotten them), the stored connection
// and its tokens are deleted, the patient's DeviceAssociations with the provider's devices are
// ended and the sync coverage is forgotten. Observations stay unless purge is set. It
// returns ErrNotConnected if there is no connection. A provider this deployment no longer
// offers (the legacy Fitbit Web API, switched off) can still be disconnected: the vendor is
// then not called.
func (r *Runner) Disconnect(ctx context.Context, provider, patient string, purge bool) error {
	p, offered := r.reg.Get(provider)
	conn, err := r.vault.Get(ctx, provider, patient)
	if err != nil {
		return fmt.Errorf("disconnect: %w", err)
	}
	if offered && conn.Status == providers.StatusActive {
		ts := r.vault.TokenSource(ctx, conn, p)
		if s, ok := p.(providers.Subscriber); ok && r.cfg.CallbackURL != nil {
			if err := s.Unsubscribe(ctx, conn.VendorUserID, ts, r.cfg.CallbackURL(provider)); err != nil {
				r.log.Warn("removing the vendor subscription failed", "provider", provider, "err", err)
			}
		}
		if rv, ok := p.(providers.Revoker); ok {
			if t, err := ts.Token(); err == nil {
				if err := rv.Revoke(ctx, conn.VendorUserID, t); err != nil {
					r.log.Warn("revoking the vendor tokens failed", "provider", provider, "err", err)
				}
			}
		}
	}
	if err := r.forget(ctx, conn); err != nil {
		return fmt.Errorf("disconnect: %w", err)
	}
	if purge {
		return r.purge(ctx, provider, patient)
	}
	return nil
}

// forget deletes a connection and its tokens, ends the patient's DeviceAssociations with the
// provider's devices and forgets the sync coverage, without calling the vendor.
func (r *Runner) forget(ctx context.Context, conn *providers.Connection) error {
	provider, patient := conn.Provider, conn.PatientID
	if err := r.vault.Delete(ctx, conn); err != nil {
		return err
	}
	ended, err := r.endGone(ctx, provider, conn, map[string]bool{}, r.now())
	if err != nil {
		return fmt.Errorf("end associations: %w", err)
	}
	if len(ended) > 0 {
		res, err := r.st.Upsert(ctx, ended)
		if err != nil {
			return fmt.Errorf("end associations: %w", err)
		}
		if err := r.upserted(ctx, patient, res); err != nil {
			return fmt.Errorf("end associations: %w", err)
		}
	}
	if err := r.st.DeleteCoverage(ctx, provider, patient); err != nil {
		return fmt.Errorf("forget coverage: %w", err)
	}
	return nil
}

// TypeRetire is the job type that ends a connection a newer connection of the same patient
// continues (Fitbit to Google Health).
const TypeRetire = "retire"

// PriorityRetire runs retirements with the setup of the new connection.
const PriorityRetire = 60

// Retire queues the end of the patient's connection to provider, which a newer connection
// continues. The connection, its tokens, coverage and DeviceAssociations end as with Disconnect
// (Observations stay: the new connection updates them), but the vendor is not called: the patient
// moved because the old API was superseded, and its tokens are not usable at the new one
// (https://developers.google.com/health/migration; the legacy Fitbit Web API was switched off on
// 2026-11-02), so unsubscribing and revoking there would only wait out timeouts and rate limits.
// It is a durable job, retried and kept as a dead letter, off the patient's connect callback.
func (r *Runner) Retire(ctx context.Context, provider, patient string) error {
	if _, _, err := r.Enqueue(ctx, Work{Provider: provider, Patient: patient}.Job(TypeRetire)); err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	return nil
}

// retire is the handler of TypeRetire jobs. A connection already gone is done.
func (r *Runner) retire(ctx context.Context, j store.Job) error {
	var w Work
	if err := json.Unmarshal(j.Payload, &w); err != nil || w.Provider == "" || w.Patient == "" {
		return Permanent(errors.New("retire: malformed payload"))
	}
	conn, err := r.vault.Get(ctx, w.Provider, w.Patient)
	if errors.Is(err, providers.ErrNotConnected) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if err := r.forget(ctx, conn); err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	r.log.Info("connection retired: a newer connection continues it", "provider", w.Provider, "connection", conn.ID)
	return nil
}

// purge deletes the patient's Observations that came from the provider (their identifier
// system is under the provider's namespace, or the provider wrote their current version), with
// their version history.
func (r *Runner) purge(ctx context.Context, provider, patient string) error {
	prefix, source := r.cfg.Namespace.ProviderIdentifierPrefix(provider), r.cfg.Namespace.ProviderSource(provider)
	q, _, err := r.sreg.Parse("Observation", []search.NameValue{{Name: "patient", Value: "Patient/" + patient}, {Name: "_count", Value: "1000"}}, search.Options{MaxCount: 1000})
	if err != nil {
		return err
	}
	var ids []string
	for {
		res, err := r.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		for _, m := range res.Matches {
			var o struct {
				Meta       *fhir.Meta        `json:"meta"`
				Identifier []fhir.Identifier `json:"identifier"`
			}
			if err := json.Unmarshal(m.JSON, &o); err != nil {
				return fmt.Errorf("purge: decode Observation/%s: %w", m.ID, err)
			}
			if o.Meta != nil && o.Meta.Source == source {
				// Last written by the provider: also a predecessor's measurement it took over.
				ids = append(ids, m.ID)
				continue
			}
			for _, id := range o.Identifier {
				if strings.HasPrefix(id.System, prefix) {
					ids = append(ids, m.ID)
					break
				}
			}
		}
		if res.Next == nil {
			break
		}
		q.Cursor = res.Next
	}
	for _, id := range ids {
		if err := r.st.Delete(ctx, "Observation", id); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		// A purge removes the data: its prior versions must not stay readable through vread
		// and _history (only the deletion remains).
		if err := r.st.PurgeHistory(ctx, "Observation", id); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
	r.log.Info("purged observations", "provider", provider, "count", len(ids))
	return nil
}
