package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/store"
)

// The operator API under /admin: the vendor connections with their sync state, syncs on
// request, the job queue's figures and its dead letters. It answers JSON; errors are
// OperationOutcomes from the one mapper. It is never open: it needs a verified token with the
// admin scope or unconstrained system/*.* (system/*.cruds) scopes (smart.Scopes.Admin), and it
// refuses every request while authentication is off.

// AdminConfig configures the operator API. The job queue and the coverage are the store's; the
// rest exists only when vendors are configured.
type AdminConfig struct {
	// Connections lists the vendor connections (providers.Vault); nil: there are none.
	Connections AdminConnections
	// Sync queues syncs on request (pipeline.Runner); nil: no vendor is configured.
	Sync AdminSync
	// Now is the clock of queue figures and retried dead letters (default time.Now); the
	// runner's clock, so that ages and due times agree with it.
	Now func() time.Time
}

// AdminConnections is what the operator API reads of the connection vault.
type AdminConnections interface {
	// List returns every connection (tokens are never shown).
	List(ctx context.Context) ([]*providers.Connection, error)
}

// AdminSync queues syncs on an operator's request.
type AdminSync interface {
	// TriggerSync queues the syncs of req; see pipeline.Runner.TriggerSync for its errors.
	TriggerSync(ctx context.Context, req pipeline.SyncRequest) ([]pipeline.SyncQueued, error)
}

// Limits of the listings: a page of connections or dead letters.
const (
	adminDefaultLimit = 100
	adminMaxLimit     = 1000
)

type adminAPI struct {
	s   *Server
	cfg AdminConfig
}

// adminRoutes mounts /admin. Without AdminConfig the queue and dead-letter routes still work
// (they need the store only); connections are then none and syncs are refused.
func (s *Server) adminRoutes(e *gin.Engine) {
	cfg := AdminConfig{}
	if s.cfg.Admin != nil {
		cfg = *s.cfg.Admin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &adminAPI{s: s, cfg: cfg}
	g := e.Group("/admin", s.adminOnly, s.authenticate, s.requireAdmin)
	g.GET("/connections", s.wrap(h.connections))
	g.POST("/sync", s.wrap(h.sync))
	g.GET("/queue", s.wrap(h.queue))
	g.GET("/jobs/dead", s.wrap(h.deadJobs))
	g.GET("/jobs/dead/:id", s.wrap(h.deadJob))
	g.POST("/jobs/dead/:id/retry", s.wrap(h.retryDead))
	g.DELETE("/jobs/dead/:id", s.wrap(h.discardDead))
}

// adminOnly refuses the operator API outright while authentication is off: OHX_AUTH=off serves
// FHIR without tokens for local experiments, but the operator API changes the queue and starts
// vendor calls, so it stays closed.
func (s *Server) adminOnly(c *gin.Context) {
	if s.auth == nil {
		s.fail(c, fhir.Errorf(http.StatusForbidden, fhir.CodeForbidden,
			"the operator API needs authentication, which is off (OHX_AUTH=off): it is never open"))
		return
	}
	c.Next()
}

// requireAdmin lets through tokens whose scopes allow the operator API (smart.Scopes.Admin).
func (s *Server) requireAdmin(c *gin.Context) {
	p := principalOf(c)
	// A token with a patient context or a signed-in user is an app's session, whatever scopes it
	// carries: the operator API belongs to backend clients (an operator's script) alone.
	if p != nil && p.Claims != nil && (p.Claims.Patient != "" || p.Claims.FHIRUser != "") {
		s.fail(c, errInsufficientScope("the operator API (a backend client's token, not a user's or a launch's)"))
		return
	}
	if p == nil || !p.Scopes.Admin() {
		s.fail(c, errInsufficientScope("the operator API (it needs the admin scope, or system/*.* or system/*.cruds)"))
		return
	}
	c.Next()
}

// limitParam reads ?limit= (default adminDefaultLimit, at most adminMaxLimit).
func limitParam(c *gin.Context) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return adminDefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > adminMaxLimit {
		return 0, fhir.Invalid(fhir.CodeValue, "limit: a number from 1 to %d", adminMaxLimit)
	}
	return n, nil
}

// adminInterval is a covered range [start, end).
type adminInterval struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// adminCoverage is one kind's sync coverage.
type adminCoverage struct {
	Kind      string          `json:"kind"`
	Intervals []adminInterval `json:"intervals"`
	Cursor    string          `json:"cursor,omitempty"`
	Updated   time.Time       `json:"updated,omitzero"`
}

// adminConnection is a connection as the operator sees it: never its tokens.
type adminConnection struct {
	ID           string          `json:"id"`
	Provider     string          `json:"provider"`
	Patient      string          `json:"patient"`
	VendorUserID string          `json:"vendorUserId"`
	Status       string          `json:"status"`
	Created      time.Time       `json:"created,omitzero"`
	LastSync     time.Time       `json:"lastSync,omitzero"`
	LastError    string          `json:"lastError,omitempty"`
	Kinds        []adminCoverage `json:"kinds"`
}

// connections implements GET /admin/connections?provider=&patient=&limit=&after=: connections
// ordered by provider and patient, a page of limit after the one named provider/patient, each
// with its coverage per kind.
func (h *adminAPI) connections(c *gin.Context) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	provider, patient := c.Query("provider"), c.Query("patient")
	if patient != "" && !fhir.ValidID(patient) {
		return fhir.Invalid(fhir.CodeValue, "patient: not a Patient id")
	}
	afterProvider, afterPatient, hasAfter := strings.Cut(c.Query("after"), "/")
	if c.Query("after") != "" && !hasAfter {
		return fhir.Invalid(fhir.CodeValue, "after: provider/patient of the last connection of the previous page")
	}
	var conns []*providers.Connection
	if h.cfg.Connections != nil {
		all, err := h.cfg.Connections.List(c.Request.Context())
		if err != nil {
			return fmt.Errorf("admin: list connections: %w", err)
		}
		for _, cn := range all {
			if (provider == "" || cn.Provider == provider) && (patient == "" || cn.PatientID == patient) &&
				(!hasAfter || cmp.Or(cmp.Compare(cn.Provider, afterProvider), cmp.Compare(cn.PatientID, afterPatient)) > 0) {
				conns = append(conns, cn)
			}
		}
	}
	slices.SortFunc(conns, func(a, b *providers.Connection) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.PatientID, b.PatientID))
	})
	more := len(conns) > limit
	conns = conns[:min(limit, len(conns))]
	out := make([]adminConnection, 0, len(conns))
	for _, cn := range conns {
		covs, err := h.s.store.Coverage(c.Request.Context(), cn.Provider, cn.PatientID)
		if err != nil {
			return fmt.Errorf("admin: coverage: %w", err)
		}
		ac := adminConnection{ID: cn.ID, Provider: cn.Provider, Patient: cn.PatientID, VendorUserID: cn.VendorUserID, Status: string(cn.Status),
			Created: cn.Created.UTC(), LastSync: cn.LastSync.UTC(), LastError: cn.LastError, Kinds: []adminCoverage{}}
		for _, cv := range covs {
			k := adminCoverage{Kind: cv.Kind, Intervals: []adminInterval{}, Cursor: cv.Cursor, Updated: cv.Updated}
			for _, iv := range cv.Intervals {
				k.Intervals = append(k.Intervals, adminInterval{Start: iv.Start, End: iv.End})
			}
			ac.Kinds = append(ac.Kinds, k)
		}
		out = append(out, ac)
	}
	body := gin.H{"connections": out}
	if more && len(conns) > 0 {
		last := conns[len(conns)-1]
		body["next"] = last.Provider + "/" + last.PatientID
	}
	c.JSON(http.StatusOK, body)
	return nil
}

// adminSyncRequest is the body of POST /admin/sync.
type adminSyncRequest struct {
	Provider string   `json:"provider"`
	Patient  string   `json:"patient"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Kinds    []string `json:"kinds"`
}

type adminQueued struct {
	Provider  string   `json:"provider"`
	Patient   string   `json:"patient"`
	Job       string   `json:"job"`
	Kinds     []string `json:"kinds,omitempty"`
	Coalesced bool     `json:"coalesced"`
}

// sync implements POST /admin/sync: a fetch job per matching active connection (202 with the
// jobs). A window is an RFC 3339 start and end; without one each kind syncs from its cursor.
func (h *adminAPI) sync(c *gin.Context) error {
	if h.cfg.Sync == nil {
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "no vendor is configured on this server: there is nothing to sync")
	}
	var req adminSyncRequest
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return fhir.Invalid(fhir.CodeStructure, "the body must be {\"provider\"?, \"patient\"?, \"start\"?, \"end\"?, \"kinds\"?}: %v", err)
	}
	if dec.More() {
		return fhir.Invalid(fhir.CodeStructure, "the body must be one JSON object")
	}
	if req.Patient != "" && !fhir.ValidID(req.Patient) {
		return fhir.Invalid(fhir.CodeValue, "patient: not a Patient id")
	}
	sr := pipeline.SyncRequest{Provider: req.Provider, Patient: req.Patient}
	for _, f := range []struct {
		name string
		raw  string
		dst  *time.Time
	}{{"start", req.Start, &sr.Start}, {"end", req.End, &sr.End}} {
		if f.raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.raw)
		if err != nil {
			return fhir.Invalid(fhir.CodeValue, "%s: an RFC 3339 date-time with a time zone, such as 2026-01-02T00:00:00Z", f.name)
		}
		*f.dst = t
	}
	for _, k := range req.Kinds {
		if k == "" {
			return fhir.Invalid(fhir.CodeValue, "kinds: an empty kind")
		}
		sr.Kinds = append(sr.Kinds, fhir.SampleKind(k))
	}
	queued, err := h.cfg.Sync.TriggerSync(c.Request.Context(), sr)
	var ie *pipeline.InvalidSyncError
	switch {
	case errors.As(err, &ie):
		return fhir.Invalid(fhir.CodeValue, "%s", ie.Error())
	case errors.Is(err, pipeline.ErrUnknownProvider):
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "provider %q is not configured", truncate(req.Provider))
	case errors.Is(err, providers.ErrNotConnected):
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "Patient/%s has no connection to %s", req.Patient, truncate(req.Provider))
	case errors.Is(err, pipeline.ErrInactive):
		return fhir.Errorf(http.StatusConflict, fhir.CodeBusinessRule, "the connection of Patient/%s to %s is not active: the patient must connect again", req.Patient, truncate(req.Provider))
	case err != nil:
		return fmt.Errorf("admin: sync: %w", err)
	}
	out := make([]adminQueued, 0, len(queued))
	for _, q := range queued {
		aq := adminQueued{Provider: q.Provider, Patient: q.Patient, Job: q.JobID, Coalesced: q.Coalesced}
		for _, k := range q.Kinds {
			aq.Kinds = append(aq.Kinds, string(k))
		}
		out = append(out, aq)
	}
	c.JSON(http.StatusAccepted, gin.H{"jobs": out})
	return nil
}

// adminJob is a job as the operator sees it. The payload is shown when it is small JSON (the
// pipeline's own jobs name a connection, kinds and a window); otherwise only its size.
type adminJob struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Key          string          `json:"key,omitempty"`
	Priority     int             `json:"priority"`
	Attempts     int             `json:"attempts"`
	LastError    string          `json:"lastError,omitempty"`
	Created      time.Time       `json:"created,omitzero"`
	NotBefore    time.Time       `json:"notBefore,omitzero"`
	FailedAt     time.Time       `json:"failedAt,omitzero"`
	Owner        string          `json:"owner,omitempty"`
	LeaseUntil   time.Time       `json:"leaseUntil,omitzero"`
	Payload      json.RawMessage `json:"payload,omitempty"`
	PayloadBytes int             `json:"payloadBytes"`
}

// maxShownPayload bounds the payload shown in job listings.
const maxShownPayload = 4 << 10

func newAdminJob(j store.Job) adminJob {
	a := adminJob{ID: j.ID, Type: j.Type, Key: j.Key, Priority: j.Priority, Attempts: j.Attempt, LastError: j.LastError,
		Created: j.Created, NotBefore: j.NotBefore, FailedAt: j.FailedAt, Owner: j.Owner, LeaseUntil: j.LeaseUntil, PayloadBytes: len(j.Payload)}
	if len(j.Payload) > 0 && len(j.Payload) <= maxShownPayload && json.Valid(j.Payload) {
		a.Payload = json.RawMessage(j.Payload)
	}
	return a
}

// queue implements GET /admin/queue: the jobs by state and the oldest due job at the head of
// the queue (pipeline.ReadQueue).
func (h *adminAPI) queue(c *gin.Context) error {
	now := h.cfg.Now()
	qs, err := pipeline.ReadQueue(c.Request.Context(), h.s.store, now)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	body := gin.H{"waiting": qs.Waiting, "running": qs.Running, "dead": qs.Dead, "at": now.UTC()}
	if qs.OldestDue != nil {
		body["oldestDue"] = gin.H{"job": newAdminJob(*qs.OldestDue), "ageSeconds": qs.OldestDueAge.Seconds()}
	}
	c.JSON(http.StatusOK, body)
	return nil
}

// deadJobs implements GET /admin/jobs/dead?limit=: the dead letters, most recently failed first.
func (h *adminAPI) deadJobs(c *gin.Context) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	js, err := h.s.store.DeadJobs(c.Request.Context(), limit)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	out := make([]adminJob, 0, len(js))
	for _, j := range js {
		out = append(out, newAdminJob(j))
	}
	c.JSON(http.StatusOK, gin.H{"jobs": out})
	return nil
}

// noDeadLetter is the 404 of a dead-letter route.
func noDeadLetter(id string) error {
	return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "there is no dead letter %s", truncate(id))
}

// deadJob implements GET /admin/jobs/dead/{id}.
func (h *adminAPI) deadJob(c *gin.Context) error {
	id := c.Param("id")
	j, err := h.s.store.GetJob(c.Request.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !j.Dead) {
		return noDeadLetter(id)
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	c.JSON(http.StatusOK, newAdminJob(j))
	return nil
}

// retryDead implements POST /admin/jobs/dead/{id}/retry: the dead letter is due again at once,
// its attempts reset (200 with the job).
func (h *adminAPI) retryDead(c *gin.Context) error {
	id := c.Param("id")
	err := h.s.store.RetryDeadJob(c.Request.Context(), id, h.cfg.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return noDeadLetter(id)
	case errors.Is(err, store.ErrDuplicate):
		return fhir.Errorf(http.StatusConflict, fhir.CodeConflict,
			"a queued job does the same work as dead letter %s (it holds its key): let it run, or discard the dead letter", truncate(id))
	case err != nil:
		return fmt.Errorf("admin: %w", err)
	}
	j, err := h.s.store.GetJob(c.Request.Context(), id)
	if err != nil {
		// Retried, and claimed and finished already: nothing left to show.
		if errors.Is(err, store.ErrNotFound) {
			c.JSON(http.StatusOK, gin.H{"id": id})
			return nil
		}
		return fmt.Errorf("admin: %w", err)
	}
	c.JSON(http.StatusOK, newAdminJob(j))
	return nil
}

// discardDead implements DELETE /admin/jobs/dead/{id}: the dead letter is removed for good.
func (h *adminAPI) discardDead(c *gin.Context) error {
	id := c.Param("id")
	err := h.s.store.DiscardDeadJob(c.Request.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return noDeadLetter(id)
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	h.s.log.Info("dead letter discarded", "request_id", requestID(c), "job", id)
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
	return nil
}
