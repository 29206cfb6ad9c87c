package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/connect"
)

// The connect endpoints are the HTTP face of providers/connect, the patient-side account
// linking: this file keeps the routes, the access check, the browser binding cookie, the pages
// and the redirects, and turns the service's typed errors into them.

// ConnectConfig enables the connect endpoints.
type ConnectConfig struct {
	Providers *providers.Registry
	// Vault keeps the connections (*providers.Vault); it enforces that a vendor account is
	// linked to one patient only.
	Vault connect.Vault
	// Sync starts and ends the sync work of connections (providers/pipeline.Runner).
	Sync connect.Syncer
	// Redirects lists the deep links the flow may end on (exact match); the flow otherwise ends
	// on a small HTML page.
	Redirects []string
	// LinkTTL is how long a connect link is valid (default 15 min).
	LinkTTL time.Duration
}

// browserCookie binds a connect state to the browser that opened the link.
const browserCookie = "ohx_connect"

// connectAPI serves the connect endpoints over the service.
type connectAPI struct {
	s   *Server
	svc *connect.Service
}

// connectRoutes mounts the connect endpoints if they are configured.
func (s *Server) connectRoutes(e *gin.Engine) error {
	if s.cfg.Connect == nil {
		// No vendor is configured: say so, rather than a bare 404 a newcomer cannot read.
		none := func(c *gin.Context) error {
			return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "no vendor is configured on this server (set OHX_WITHINGS_*, OHX_GOOGLEHEALTH_* or OHX_FITBIT_* and restart)")
		}
		page := func(c *gin.Context) {
			s.page(c, http.StatusNotFound, "Not set up", "No device vendor can be connected on this server yet. Ask its operator.")
		}
		g := e.Group("/connect")
		g.POST("/links", s.wrap(none))
		g.GET("/status", s.wrap(none))
		g.DELETE("/:provider", s.wrap(none))
		g.GET("/:provider", page)
		g.GET("/:provider/callback", page)
		return nil
	}
	cc := s.cfg.Connect
	svc, err := connect.New(connect.Config{Providers: cc.Providers, Vault: cc.Vault, Sync: cc.Sync, Store: s.store,
		Redirects: cc.Redirects, LinkTTL: cc.LinkTTL, Log: s.log})
	if err != nil {
		s.log.Error("the connect endpoints are disabled", "err", err)
		return fmt.Errorf("api: connect: %w", err)
	}
	h := &connectAPI{s: s, svc: svc}
	g := e.Group("/connect")
	g.POST("/links", s.authenticate, s.wrap(h.createLink))
	g.GET("/status", s.authenticate, s.wrap(h.status))
	g.DELETE("/:provider", s.authenticate, s.wrap(h.disconnect))
	g.GET("/:provider", h.start)
	g.GET("/:provider/callback", h.callback)
	return nil
}

// mayManage checks that the caller may manage the patient's connections: a system or user token
// that may update Patients, or a patient token for itself.
func (s *Server) mayManage(c *gin.Context, patient string) error {
	p := principalOf(c)
	if p == nil {
		return nil // auth off
	}
	// Across patients: a token that may update any Patient (an EHR, a practitioner).
	if a, err := s.authorize(c, "Patient", 'u'); err == nil && a.patient == "" {
		return nil
	}
	// The patient's own token (or their own user's), confined to this very patient.
	if a, err := s.authorize(c, "Patient", 'r'); err == nil && a.patient == patient {
		return nil
	}
	return errInsufficientScope("managing this patient's vendor connections")
}

// apiError turns the service's errors of the API endpoints into FHIR errors; others pass.
func apiError(err error, provider string) error {
	switch {
	case errors.Is(err, connect.ErrUnknownProvider):
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "provider %q is not configured", truncate(provider))
	case errors.Is(err, connect.ErrRedirectNotAllowed):
		return fhir.Invalid(fhir.CodeValue, "redirect: not an allowed deep link")
	}
	return err
}

// createLink implements POST /connect/links.
func (h *connectAPI) createLink(c *gin.Context) error {
	var req struct {
		Patient  string `json:"patient"`
		Provider string `json:"provider"`
		Redirect string `json:"redirect"`
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return fhir.Invalid(fhir.CodeStructure, "the body must be {\"patient\", \"provider\", \"redirect\"?}: %v", err)
	}
	if !fhir.ValidID(req.Patient) {
		return fhir.Invalid(fhir.CodeRequired, "patient: a Patient id is required")
	}
	if err := h.s.mayManage(c, req.Patient); err != nil {
		return err
	}
	l, err := h.svc.CreateLink(c.Request.Context(), req.Patient, req.Provider, req.Redirect)
	if errors.Is(err, connect.ErrUnknownPatient) {
		return fhir.Errorf(http.StatusUnprocessableEntity, fhir.CodeBusinessRule, "Patient/%s does not exist", req.Patient)
	}
	if err != nil {
		return apiError(err, req.Provider)
	}
	u := h.s.origin() + "/connect/" + url.PathEscape(req.Provider) + "?link=" + l.Token
	c.JSON(http.StatusCreated, gin.H{"url": u, "expires": l.Expires.UTC().Format(time.RFC3339)})
	return nil
}

// origin is scheme://host of the public base URL.
func (s *Server) origin() string {
	u, err := url.Parse(s.cfg.BaseURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// start implements GET /connect/{provider}?link=…: the link is used up, and the browser goes to
// the vendor's consent page with a fresh single-use state bound to it (and PKCE).
func (h *connectAPI) start(c *gin.Context) {
	binding := browserBinding(c)
	authURL, err := h.svc.Start(c.Request.Context(), c.Param("provider"), c.Query("link"), binding)
	switch {
	case errors.Is(err, connect.ErrUnknownProvider):
		h.s.page(c, http.StatusNotFound, "Unknown service", "This service cannot be connected here.")
		return
	case errors.Is(err, connect.ErrLinkExpired):
		h.s.page(c, http.StatusNotFound, "Link expired", "This link has expired or was already used. Ask for a new one.")
		return
	case err != nil:
		h.s.log.Error("starting the connect flow", "err", err)
		h.s.page(c, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	// SameSite=Lax: the vendor sends the browser back with a top-level GET, which carries it.
	http.SetCookie(c.Writer, &http.Cookie{Name: browserCookie, Value: binding, Path: "/connect/", MaxAge: int(connect.StateTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(h.s.origin(), "https://"), SameSite: http.SameSiteLaxMode})
	c.Redirect(http.StatusFound, authURL)
}

// browserBinding returns the browser's binding cookie value: the one it already carries, so
// that two flows started in one browser (two tabs, two vendors) can both finish, or a new one.
func browserBinding(c *gin.Context) string {
	for _, ck := range c.Request.CookiesNamed(browserCookie) {
		if connect.ValidBinding(ck.Value) {
			return ck.Value
		}
	}
	return connect.NewBinding()
}

// callback implements GET /connect/{provider}/callback: the service checks the single-use
// state and its browser, exchanges the code, stores the connection and schedules the first
// syncs; this ends the browser flow on the outcome.
func (h *connectAPI) callback(c *gin.Context) {
	name := c.Param("provider")
	cb := connect.Callback{State: c.Query("state"), Code: c.Query("code"), Error: c.Query("error")}
	for _, ck := range c.Request.CookiesNamed(browserCookie) {
		cb.Bindings = append(cb.Bindings, ck.Value)
	}
	f, err := h.svc.Finish(c.Request.Context(), name, cb)
	switch {
	case err == nil:
		h.finish(c, f, "connected", http.StatusOK, "Connected", "Your account is connected. Your measurements will appear in your record shortly.")
	case errors.Is(err, connect.ErrUnknownProvider):
		h.s.page(c, http.StatusNotFound, "Unknown service", "This service cannot be connected here.")
	case errors.Is(err, connect.ErrStateExpired):
		h.s.page(c, http.StatusBadRequest, "Link expired", "This sign-in is no longer valid. Ask for a new link.")
	case errors.Is(err, connect.ErrWrongBrowser):
		h.s.log.Warn("connect callback from another browser than the one that opened the link", "provider", name)
		h.s.page(c, http.StatusBadRequest, "Another browser", "This sign-in was started in another browser. Open the link again on this device.")
	case errors.Is(err, connect.ErrDenied):
		h.finish(c, f, "denied", http.StatusOK, "Not connected", "You did not allow access, so nothing was connected.")
	case errors.Is(err, connect.ErrVendorRefused):
		h.s.log.Warn("vendor code exchange failed", "provider", name, "err", err)
		h.finish(c, f, "error", http.StatusBadGateway, "Not connected", "The service did not confirm the connection. Please try again.")
	case errors.Is(err, providers.ErrVendorUserLinked):
		// Never move an account silently from one patient to another.
		h.finish(c, f, "conflict", http.StatusConflict, "Already connected",
			"This "+h.vendorTitle(name)+" account is already connected to another patient. Ask your care team for help.")
	default:
		h.s.log.Error("completing the connect flow", "provider", name, "err", err)
		h.finish(c, f, "error", http.StatusInternalServerError, "Something went wrong", "Please try again later.")
	}
}

// vendorTitle is how pages name a vendor: the adapter's title ("Fitbit (Google Health)").
func (h *connectAPI) vendorTitle(provider string) string {
	if p, ok := h.s.cfg.Connect.Providers.Get(provider); ok {
		return providers.Title(p)
	}
	return provider
}

// finish ends the browser flow on the flow's deep link (status and provider in its query), or
// on a page.
func (h *connectAPI) finish(c *gin.Context, f connect.Flow, status string, code int, title, msg string) {
	if f.Redirect != "" {
		if u, err := url.Parse(f.Redirect); err == nil {
			q := u.Query()
			q.Set("status", status)
			q.Set("provider", f.Provider)
			u.RawQuery = q.Encode()
			c.Redirect(http.StatusFound, u.String())
			return
		}
	}
	h.s.page(c, code, title, msg)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>`))

func (s *Server) page(c *gin.Context, code int, title, msg string) {
	c.Header("Cache-Control", "no-store")
	// Nothing loads but the inline style, and nothing may frame the page (clickjacking) or learn
	// its URL, which carries the vendor's code and our state, through the Referer.
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Referrer-Policy", "no-referrer")
	c.Status(code)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(c.Writer, struct{ Title, Message string }{title, msg}); err != nil {
		s.log.Error("render page", "err", err)
	}
}

// disconnect implements DELETE /connect/{provider}?patient=…[&purge=true].
func (h *connectAPI) disconnect(c *gin.Context) error {
	patient := c.Query("patient")
	if !fhir.ValidID(patient) {
		return fhir.Invalid(fhir.CodeRequired, "patient: a Patient id is required")
	}
	if err := h.s.mayManage(c, patient); err != nil {
		return err
	}
	if err := h.svc.Disconnect(c.Request.Context(), c.Param("provider"), patient, c.Query("purge") == "true"); err != nil {
		return apiError(err, c.Param("provider"))
	}
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
	return nil
}

// mayView checks that the caller may see the patient's connections (provider, state, last sync):
// whoever may read that Patient, a token that reads Patients across patients (an EHR, a
// practitioner's app) or one confined to this very patient, and whoever may manage them
// (mayManage, which changing them needs).
func (s *Server) mayView(c *gin.Context, patient string) error {
	if principalOf(c) == nil {
		return nil // auth off
	}
	if a, err := s.authorize(c, "Patient", 'r'); err == nil && (a.patient == "" || a.patient == patient) {
		return nil
	}
	if s.mayManage(c, patient) == nil { // whoever may manage them may see them
		return nil
	}
	return errInsufficientScope("reading this patient's vendor connections")
}

type connectionStatus struct {
	Provider  string `json:"provider"`
	Status    string `json:"status"`
	Connected string `json:"connected,omitempty"`
	LastSync  string `json:"lastSync,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// status implements GET /connect/status?patient=….
func (h *connectAPI) status(c *gin.Context) error {
	patient := c.Query("patient")
	if !fhir.ValidID(patient) {
		return fhir.Invalid(fhir.CodeRequired, "patient: a Patient id is required")
	}
	if err := h.s.mayView(c, patient); err != nil {
		return err
	}
	conns, err := h.svc.Connections(c.Request.Context(), patient)
	if err != nil {
		return fmt.Errorf("connection status: %w", err)
	}
	out := []connectionStatus{}
	for _, conn := range conns {
		st := connectionStatus{Provider: conn.Provider, Status: string(conn.Status), LastError: conn.LastError}
		if !conn.Created.IsZero() {
			st.Connected = conn.Created.UTC().Format(time.RFC3339)
		}
		if !conn.LastSync.IsZero() {
			st.LastSync = conn.LastSync.UTC().Format(time.RFC3339)
		}
		out = append(out, st)
	}
	c.JSON(http.StatusOK, gin.H{"patient": patient, "connections": out})
	return nil
}
