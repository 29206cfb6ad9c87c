package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Vault is what the pipeline needs of the connection vault.
type Vault interface {
	Get(ctx context.Context, provider, patientID string) (*providers.Connection, error)
	Delete(ctx context.Context, c *providers.Connection) error
	Save(ctx context.Context, c *providers.Connection) error
	TokenSource(ctx context.Context, c *providers.Connection, p providers.Provider) oauth2.TokenSource
}

// Store is what the pipeline needs of the resource store.
type Store interface {
	Upsert(ctx context.Context, rs []fhir.Resource) ([]store.UpsertResult, error)
	Read(ctx context.Context, typ, id string) (store.Entry, error)
	Search(ctx context.Context, q *search.Query) (*store.Result, error)
	Delete(ctx context.Context, typ, id string) error
	PurgeHistory(ctx context.Context, typ, id string) error
}

// Config configures a Runner.
type Config struct {
	// Backfill is the window an initial backfill covers (default 30 days).
	Backfill time.Duration
	// CallbackURL returns the webhook URL registered with a provider (it carries the
	// deployment's secret path segment).
	CallbackURL func(provider string) string
	// Batch is the number of resources per upsert (default 5000: one transaction and one commit each — fewer, larger commits write each index page once; a batch holds the single SQLite writer for a fraction of a second).
	Batch int
	// Workers is the number of jobs run at once (default 2).
	Workers int
	// Poll is how often an idle runner looks for due jobs (default 1 s).
	Poll time.Duration
	// Metrics, if set, receives the job counters (ohx_jobs_total{type,outcome}).
	Metrics prometheus.Registerer
}

// Runner executes jobs: fetch → map → upsert.
type Runner struct {
	cfg   Config
	q     *Queue
	reg   *providers.Registry
	vault Vault
	st    Store
	sreg  *search.Registry
	log   *slog.Logger
	now   func() time.Time
	jobs  *prometheus.CounterVec
}

// NewRunner returns a runner over the queue.
func NewRunner(cfg Config, q *Queue, reg *providers.Registry, vault Vault, st Store, log *slog.Logger) *Runner {
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, q: q, reg: reg, vault: vault, st: st, sreg: search.DefaultRegistry(), log: log, now: time.Now,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_jobs_total", Help: "Sync jobs run, by type and outcome (done, retry, dead).",
		}, []string{"type", "outcome"})}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(r.jobs)
	}
	return r
}

// Connected enqueues the work that follows a new connection: device sync, the initial backfill
// and the webhook subscription.
func (r *Runner) Connected(ctx context.Context, provider, patient string) error {
	now := r.now().UTC()
	for _, j := range []Job{
		{Type: JobDeviceSync, Provider: provider, Patient: patient},
		{Type: JobBackfill, Provider: provider, Patient: patient, Start: now.Add(-r.cfg.Backfill), End: now},
		{Type: JobSubscribe, Provider: provider, Patient: patient},
	} {
		if _, err := r.q.Enqueue(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// Run processes jobs until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		n, err := r.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Error("job queue", "err", err)
		}
		if n > 0 {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce claims the due jobs (up to Workers) and runs them; it returns how many ran.
func (r *Runner) RunOnce(ctx context.Context) (int, error) {
	jobs, err := r.q.Claim(ctx, r.cfg.Workers)
	if err != nil {
		return 0, err
	}
	done := make(chan struct{}, len(jobs))
	for _, j := range jobs {
		go func() {
			defer func() { done <- struct{}{} }()
			r.runJob(ctx, j)
		}()
	}
	for range jobs {
		<-done
	}
	return len(jobs), nil
}

func (r *Runner) runJob(ctx context.Context, j Job) {
	start := r.now()
	err := r.Process(ctx, j)
	log := r.log.With("job", j.ID, "type", j.Type, "provider", j.Provider, "attempt", j.Attempt+1)
	if err == nil {
		if err := r.q.Done(ctx, j); err != nil {
			log.Error("finishing job", "err", err)
		}
		log.Info("job done", "dur_ms", r.now().Sub(start).Milliseconds())
		r.jobs.WithLabelValues(string(j.Type), "done").Inc()
		return
	}
	if ctx.Err() != nil {
		return // shutting down: the lease expires and the job runs again
	}
	permanent := isPermanent(err)
	dead, ferr := r.q.Fail(ctx, j, err, permanent)
	if ferr != nil {
		log.Error("recording job failure", "err", ferr, "cause", err)
		return
	}
	if dead {
		log.Error("job dead-lettered", "err", err)
		r.jobs.WithLabelValues(string(j.Type), "dead").Inc()
	} else {
		log.Warn("job failed, will retry", "err", err)
		r.jobs.WithLabelValues(string(j.Type), "retry").Inc()
	}
}

// isPermanent reports failures that retrying cannot fix.
func isPermanent(err error) bool {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) && ue.Kind == providers.KindPermanent {
		return true
	}
	return errors.Is(err, providers.ErrConsentRevoked) || errors.Is(err, providers.ErrNotConnected)
}

// Process runs one job to completion.
func (r *Runner) Process(ctx context.Context, j Job) error {
	p, ok := r.reg.Get(j.Provider)
	if !ok {
		return fmt.Errorf("%w: provider %q is not configured", providers.ErrNotConnected, j.Provider)
	}
	conn, err := r.vault.Get(ctx, j.Provider, j.Patient)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.Type, err)
	}
	if conn.Status != providers.StatusActive {
		return fmt.Errorf("job %s: connection is %s: %w", j.Type, conn.Status, providers.ErrNotConnected)
	}
	ts := r.vault.TokenSource(ctx, conn, p)
	switch j.Type {
	case JobDeviceSync:
		err = r.syncDevices(ctx, p, conn, ts)
	case JobBackfill:
		err = r.fetch(ctx, p, conn, ts, providers.Query{Start: j.Start, End: j.End})
	case JobSync:
		err = r.fetch(ctx, p, conn, ts, providers.Query{Since: conn.SyncCursors[cursorKey]})
	case JobSubscribe:
		s, ok := p.(providers.Subscriber)
		if !ok || r.cfg.CallbackURL == nil {
			return nil
		}
		err = providers.RetryOnAuth(ctx, ts, func() error {
			return s.Subscribe(ctx, conn.VendorUserID, ts, r.cfg.CallbackURL(j.Provider), nil)
		})
	default:
		return &providers.UpstreamError{Provider: j.Provider, Kind: providers.KindPermanent, Err: fmt.Errorf("unknown job type %q", j.Type)}
	}
	if err != nil {
		r.noteError(ctx, conn, err)
		return fmt.Errorf("job %s: %w", j.Type, err)
	}
	return nil
}

// cursorKey is the SyncCursors entry of the incremental sync of every kind.
const cursorKey = "all"

func (r *Runner) noteError(ctx context.Context, conn *providers.Connection, err error) {
	latest, gerr := r.vault.Get(ctx, conn.Provider, conn.PatientID)
	if gerr != nil {
		return
	}
	var ue *providers.UpstreamError
	msg := "sync failed"
	if errors.As(err, &ue) {
		msg = fmt.Sprintf("vendor %s error (status %d)", ue.Kind, ue.Status)
	} else if errors.Is(err, providers.ErrConsentRevoked) {
		msg = "the vendor refused the tokens: the patient must connect again"
	}
	latest.LastError = msg // never the raw error: it may quote vendor text
	if err := r.vault.Save(ctx, latest); err != nil {
		r.log.Error("saving connection state", "err", err)
	}
}

// fetch pages through a query, mapping and upserting as it goes.
func (r *Runner) fetch(ctx context.Context, p providers.Provider, conn *providers.Connection, ts oauth2.TokenSource, q providers.Query) error {
	var batch []fhir.Resource
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := r.st.Upsert(ctx, batch)
		batch = batch[:0]
		return err
	}
	var synced time.Time
	for {
		// An auth error refreshes the token once and retries; a second one marks the
		// connection needs-reauth.
		var page *providers.Page
		err := providers.RetryOnAuth(ctx, ts, func() (err error) {
			page, err = p.Fetch(ctx, conn.VendorUserID, ts, q)
			return err
		})
		if err != nil {
			return err
		}
		for _, s := range page.Samples {
			o, err := fhir.MapSample(s, conn.PatientID)
			if errors.Is(err, fhir.ErrUnsupportedKind) {
				// A kind without a verified code is read only when an operator enables it.
				r.log.Debug("sample kind not mapped", "provider", s.Provider, "kind", s.Kind)
				continue
			}
			if err != nil {
				// A sample the mapper cannot code is a defect to fix, not data to guess at.
				r.log.Warn("sample not mapped", "provider", s.Provider, "kind", s.Kind, "err", err)
				continue
			}
			batch = append(batch, o)
			if len(batch) >= r.cfg.Batch {
				if err := flush(); err != nil {
					return err
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
		return err
	}
	latest, err := r.vault.Get(ctx, conn.Provider, conn.PatientID)
	if err != nil {
		return err
	}
	if latest.SyncCursors == nil {
		latest.SyncCursors = map[string]time.Time{}
	}
	if synced.After(latest.SyncCursors[cursorKey]) {
		latest.SyncCursors[cursorKey] = synced
	}
	latest.LastSync = r.now().UTC()
	latest.LastError = ""
	return r.vault.Save(ctx, latest)
}

// syncDevices writes a Device per vendor device (updated in place) and a DeviceAssociation per
// patient and device; associations of devices that disappeared are ended, never deleted.
func (r *Runner) syncDevices(ctx context.Context, p providers.Provider, conn *providers.Connection, ts oauth2.TokenSource) error {
	var devices []fhir.DeviceInfo
	err := providers.RetryOnAuth(ctx, ts, func() (err error) {
		devices, err = p.Devices(ctx, conn.VendorUserID, ts)
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
		dev := fhir.MapDevice(d)
		a := fhir.MapAssociation(conn.PatientID, d, now, nil)
		if first, ok, err := r.firstSeen(ctx, a.ID); err != nil {
			return err
		} else if ok {
			a = fhir.MapAssociation(conn.PatientID, d, first, nil)
		}
		rs = append(rs, dev, a)
	}
	ended, err := r.endGone(ctx, p.Name(), conn, current, now)
	if err != nil {
		return err
	}
	rs = append(rs, ended...)
	if len(rs) == 0 {
		return nil
	}
	_, err = r.st.Upsert(ctx, rs)
	return err
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
	system := fhir.Canonical + "/sid/" + provider + "/device-association"
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
		out = append(out, fhir.MapAssociation(conn.PatientID, fhir.DeviceInfo{Provider: provider, UserID: user, ID: dev}, first, &end))
	}
	return out, nil
}

// Connections finds the connection of a vendor account (for webhooks).
type Connections interface {
	ByVendorUser(ctx context.Context, provider, vendorUserID string) (*providers.Connection, error)
}

// Notifier turns vendor notifications into sync jobs.
type Notifier struct {
	Queue *Queue
	Conns Connections
}

// Notified implements api.WebhookSink: a sync job for the account's patient, with an id derived
// from the notification key so that a redelivered notification does not queue the work twice.
// Unknown accounts are ignored.
func (n *Notifier) Notified(ctx context.Context, provider, vendorUser, key string) error {
	conn, err := n.Conns.ByVendorUser(ctx, provider, vendorUser)
	if errors.Is(err, providers.ErrNotConnected) {
		return nil
	}
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(provider + "|" + key))
	_, err = n.Queue.Enqueue(ctx, Job{ID: "n-" + hex.EncodeToString(sum[:12]), Type: JobSync, Provider: provider, Patient: conn.PatientID})
	return err
}
