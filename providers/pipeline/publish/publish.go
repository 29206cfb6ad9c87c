// Package publish sends what the sync pipeline stored downstream to an EHR's FHIR server: after
// an upsert of a patient's synced resources a per-patient job (durable, on the store's queue, run
// by the pipeline Runner) sends every resource that changed since the patient's watermark as one
// or more FHIR transaction Bundles of conditional updates on identifier, in FHIR R4 or R5.
//
// Nothing is lost between the upsert and the delivery: the hook enqueues the job after every
// upsert (also one that changed nothing, which is what a sync job re-run after a crash sees),
// the job reads what changed from the store rather than from its payload, and the watermark moves
// only after the EHR answered 2xx. A failed delivery is retried with backoff by the Runner and
// kept as a dead letter in the end.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/store"
)

// JobType is the job type of a patient's delivery; register Publisher.Handle for it on the
// pipeline Runner.
const JobType = "publish"

// Priority of publish jobs: after webhook fetches and the setup of connections (what they write
// is what gets published), before reconciliation and backfills.
const Priority = 30

// Version is the FHIR version of the EHR's API.
type Version string

// FHIR versions an EHR can take.
const (
	R4 Version = "R4"
	R5 Version = "R5"
)

// Config configures a Publisher.
type Config struct {
	// URL is the FHIR base URL of the EHR (required): transactions are POSTed to it.
	URL string
	// Version is the EHR's FHIR version (default R4: the version nearly every EHR's production
	// FHIR API speaks, and the one US certification requires). R4 gets no DeviceAssociation,
	// which R4 does not have; its Devices carry Device.patient instead.
	Version Version
	// PatientSystem is the identifier system by which the EHR knows its patients (an MRN
	// system, say): an ohx Patient is matched downstream by its identifier of that system. Empty:
	// by the Patient's first identifier. Nothing of a Patient without such an identifier is
	// published until it has one (ErrUnmatchedPatient).
	PatientSystem string
	// Namespace is the deployment's identifier namespace: only resources whose first identifier
	// is one ohx assigned (a system under Namespace/sid/) are published, never what an EHR wrote
	// into ohx itself (default fhir.DefaultNamespace).
	Namespace fhir.Namespace
	// Batch is the most Observations per transaction (default 250; the Devices they reference
	// come on top).
	Batch int
	// Delay is how long a publish job waits after the first upsert that asked for it, so that
	// the upserts of a burst of sync jobs go out together (default 2 s; negative: none).
	Delay time.Duration
	// Overlap is how far before a run's start the next run looks again (default 5 min): a
	// resource is stamped with meta.lastUpdated before its upsert commits, so one committed after
	// a run started may carry an earlier time than what that run saw; several instances on one
	// MongoDB also differ in their clocks. It must exceed the longest upsert plus the clock skew
	// between instances. What was delivered already is not sent again (see watermark).
	Overlap time.Duration
	// Timeout bounds one transaction request (default 60 s).
	Timeout time.Duration
	// Now is the clock of the jobs the publisher enqueues (default time.Now): the Runner's clock.
	// The watermark follows the wall clock instead, which stamps meta.lastUpdated in the store.
	Now func() time.Time
	// Metrics, if set, receives ohx_publish_resources_total{type},
	// ohx_publish_transactions_total{outcome} and ohx_publish_unmatched_total.
	Metrics prometheus.Registerer
}

// Store is what publishing needs of the store.
type Store interface {
	// Read returns a resource's current version; store.ErrNotFound, store.ErrDeleted.
	Read(ctx context.Context, typ, id string) (store.Entry, error)
	// Search runs a parsed query and returns one page.
	Search(ctx context.Context, q *search.Query) (*store.Result, error)
	// GetRecord returns a record's document, or store.ErrNotFound.
	GetRecord(ctx context.Context, kind, id string) ([]byte, error)
	// PutRecord stores a record.
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// EnqueueJob stores a job durably (store.Jobs.EnqueueJob).
	EnqueueJob(ctx context.Context, j store.Job, now time.Time) (id string, coalesced bool, err error)
}

// Publisher delivers synced resources to an EHR.
type Publisher struct {
	cfg  Config
	base *url.URL
	st   Store
	hc   *http.Client
	log  *slog.Logger
	sreg *search.Registry

	resources    *prometheus.CounterVec
	transactions *prometheus.CounterVec
	unmatched    prometheus.Counter
}

// New returns a Publisher sending through hc, which must authenticate to the EHR (see
// Auth.Client). log nil discards. It returns an error naming the problem for an unusable URL or
// version.
func New(cfg Config, st Store, hc *http.Client, log *slog.Logger) (*Publisher, error) {
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	switch cfg.Version {
	case "":
		cfg.Version = R4
	case R4, R5:
	default:
		return nil, fmt.Errorf("publish: FHIR version %q: want R4 or R5", cfg.Version)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = fhir.DefaultNamespace
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 250
	}
	if cfg.Delay < 0 {
		cfg.Delay = 0
	} else if cfg.Delay == 0 {
		cfg.Delay = 2 * time.Second
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = 5 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{cfg: cfg, base: u, st: st, hc: hc, log: log, sreg: search.DefaultRegistry(),
		resources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_publish_resources_total", Help: "Resources delivered to the EHR, by type.",
		}, []string{"type"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_publish_transactions_total", Help: "Transaction Bundles sent to the EHR, by outcome (ok, retry, rejected).",
		}, []string{"outcome"}),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ohx_publish_unmatched_total", Help: "Publish jobs of patients without the identifier the EHR knows them by (nothing sent).",
		}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(p.resources, p.transactions, p.unmatched)
	}
	return p, nil
}

// ParseURL checks an EHR base URL: absolute, https (http only to a loopback host: the
// resources are health data), without query or fragment.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("publish: URL %q must be an absolute https URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("publish: URL %q must not carry a query, fragment or user info", s)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("publish: URL %q must use https (http only for a loopback host)", s)
	}
	return u, nil
}

// Upserted is the pipeline hook (pipeline.Config.Upserted): it enqueues the patient's publish
// job, which coalesces with one already waiting. It is called after every upsert, changed or
// not (see pipeline.UpsertedFunc): the job finds what is new itself.
func (p *Publisher) Upserted(ctx context.Context, patient string, _ bool) error {
	now := p.cfg.Now()
	if _, _, err := p.st.EnqueueJob(ctx, p.Job(patient, now), now); err != nil {
		return fmt.Errorf("publish: enqueue: %w", err)
	}
	return nil
}

var _ pipeline.UpsertedFunc = (*Publisher)(nil).Upserted

// payload is a publish job's payload.
type payload struct {
	Patient string `json:"patient"`
}

// Job returns the publish job of a patient, due Delay after now. Its key is the patient's: one
// job per patient waits at a time, and an upsert while it runs makes it run once more.
func (p *Publisher) Job(patient string, now time.Time) store.Job {
	b, _ := json.Marshal(payload{Patient: patient}) // a string: never fails
	return store.Job{Type: JobType, Key: JobType + ":" + patient, Priority: Priority,
		NotBefore: now.Add(p.cfg.Delay), Payload: b}
}

// ErrUnmatchedPatient means a patient has no identifier by which the EHR could find it (or is
// not in the store): nothing of the patient is published, and the watermark stays, so that
// everything goes out once the Patient carries the identifier.
var ErrUnmatchedPatient = errors.New("the patient cannot be matched in the EHR")

// Handle is the handler of JobType jobs: it sends what changed of the patient since the
// watermark. Failures the EHR will not accept on a retry (a 4xx other than 408 and 429) are
// permanent: the job becomes a dead letter at once. A patient the EHR cannot be asked for
// (ErrUnmatchedPatient) completes the job with a warning and ohx_publish_unmatched_total: every
// sync of such a patient would otherwise leave one more dead letter.
func (p *Publisher) Handle(ctx context.Context, j store.Job) error {
	var w payload
	if err := json.Unmarshal(j.Payload, &w); err != nil || !fhir.ValidID(w.Patient) {
		return pipeline.Permanent(fmt.Errorf("publish: malformed job payload"))
	}
	err := p.Publish(ctx, w.Patient)
	if errors.Is(err, ErrUnmatchedPatient) {
		p.unmatched.Inc()
		p.log.Warn("not published: the patient cannot be matched in the EHR", "patient", w.Patient, "err", err)
		return nil
	}
	return err
}

// Publish sends what changed of the patient's synced resources since the watermark, one
// transaction per Batch Observations, advancing the watermark after each 2xx.
func (p *Publisher) Publish(ctx context.Context, patient string) error {
	start := time.Now() // the store's clock: meta.lastUpdated
	wm, err := p.loadWatermark(ctx, patient)
	if err != nil {
		return err
	}
	patRef, err := p.patientReference(ctx, patient)
	if err != nil {
		return err
	}
	run := &run{p: p, patient: patient, patRef: patRef, wm: wm, cache: map[string]*item{}}
	if err := run.loadDevices(ctx); err != nil {
		return err
	}
	// The first transaction carries the patient's changed Devices and associations even when
	// no Observation changed (a new battery level, a device that left).
	pending := run.changedDevices()
	sent := 0
	q, err := p.observationQuery(patient, wm.Since)
	if err != nil {
		return err
	}
	for {
		res, err := p.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("publish: read changed observations: %w", err)
		}
		var last time.Time
		for _, e := range res.Matches {
			last = e.LastUpdated
			it, err := run.prepare(e)
			if err != nil {
				return err
			}
			if it != nil && !run.delivered(it) {
				pending = append(pending, it)
			}
		}
		if len(pending) > 0 {
			n, err := run.send(ctx, pending)
			if err != nil {
				return err
			}
			sent += n
			pending = nil
		}
		if !last.IsZero() {
			// Every visible match up to the last one of this page is delivered; one not yet
			// visible carries a time after start-Overlap.
			wm.advance(minTime(last, start.Add(-p.cfg.Overlap)))
			if err := p.saveWatermark(ctx, patient, wm); err != nil {
				return err
			}
		}
		if res.Next == nil {
			break
		}
		q.Cursor = res.Next
	}
	wm.advance(start.Add(-p.cfg.Overlap))
	if err := p.saveWatermark(ctx, patient, wm); err != nil {
		return err
	}
	if sent > 0 {
		p.log.Info("published to the EHR", "resources", sent)
	}
	return nil
}

// observationQuery selects the patient's Observations last updated at or after since, oldest
// first, Batch per page.
func (p *Publisher) observationQuery(patient string, since time.Time) (*search.Query, error) {
	nv := []search.NameValue{{Name: "patient", Value: "Patient/" + patient}}
	if !since.IsZero() {
		nv = append(nv, search.NameValue{Name: "_lastUpdated", Value: "ge" + since.UTC().Format("2006-01-02T15:04:05.000000Z")})
	}
	nv = append(nv, search.NameValue{Name: "_sort", Value: "_lastUpdated"},
		search.NameValue{Name: "_count", Value: fmt.Sprint(p.cfg.Batch)})
	q, _, err := p.sreg.Parse("Observation", nv, search.Options{MaxCount: max(p.cfg.Batch, 1000), Strict: true})
	if err != nil {
		return nil, fmt.Errorf("publish: build the observation query: %w", err)
	}
	q.Total = "none"
	return q, nil
}

// patientReference returns the conditional reference that finds the patient in the EHR by
// identifier, Patient?identifier=system|value.
func (p *Publisher) patientReference(ctx context.Context, patient string) (string, error) {
	e, err := p.st.Read(ctx, "Patient", patient)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return "", fmt.Errorf("publish: patient %s is not in the store: %w", patient, ErrUnmatchedPatient)
	}
	if err != nil {
		return "", fmt.Errorf("publish: read patient: %w", err)
	}
	var pat fhir.Patient
	if err := json.Unmarshal(e.JSON, &pat); err != nil {
		return "", fmt.Errorf("publish: decode patient %s: %w", patient, err)
	}
	for _, id := range pat.Identifier {
		if id.System == "" || id.Value == "" || (p.cfg.PatientSystem != "" && id.System != p.cfg.PatientSystem) {
			continue
		}
		return "Patient?" + identifierQuery(id.System, id.Value), nil
	}
	if p.cfg.PatientSystem != "" {
		return "", fmt.Errorf("publish: patient %s has no identifier of system %s (OHX_PUBLISH_PATIENT_SYSTEM): %w", patient, p.cfg.PatientSystem, ErrUnmatchedPatient)
	}
	return "", fmt.Errorf("publish: patient %s has no identifier: %w", patient, ErrUnmatchedPatient)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
