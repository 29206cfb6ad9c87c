package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Connect is the patient-side account linking: an EHR (or the patient's own app) asks for a
// one-time link, the patient opens it, consents at the vendor, and ohx keeps the connection and
// starts syncing. The patient is always the one the link was made for: never a request parameter
// of the browser flow.

// ConnectVault is what the connect flow needs of the connection vault.
type ConnectVault interface {
	// Get returns the patient's connection to provider, or an error matching
	// providers.ErrNotConnected.
	Get(ctx context.Context, provider, patientID string) (*providers.Connection, error)
	// ByVendorUser returns the connection of a vendor account, or providers.ErrNotConnected.
	ByVendorUser(ctx context.Context, provider, vendorUserID string) (*providers.Connection, error)
	Save(ctx context.Context, c *providers.Connection) error
}

// Syncer starts and ends the sync work of connections (providers/pipeline.Runner).
type Syncer interface {
	Connected(ctx context.Context, provider, patient string) error
	Disconnect(ctx context.Context, provider, patient string, purge bool) error
}

// ConnectConfig enables the connect endpoints.
type ConnectConfig struct {
	Providers *providers.Registry
	Vault     ConnectVault
	Sync      Syncer
	// Redirects lists the deep links the flow may end on (exact match); the flow otherwise ends
	// on a small HTML page.
	Redirects []string
	// LinkTTL is how long a connect link is valid (default 15 min).
	LinkTTL time.Duration
}

const (
	kindConnectLink  = "connect-link"
	kindConnectState = "connect-state"
	// stateTTL is how long the patient has to consent at the vendor.
	stateTTL = 15 * time.Minute
	// browserCookie binds a connect state to the browser that opened the link.
	browserCookie = "ohx_connect"
)

type connectLink struct {
	Patient  string `json:"patient"`
	Provider string `json:"provider"`
	Redirect string `json:"redirect,omitempty"`
	Verifier string `json:"verifier,omitempty"`
	// Browser is the SHA-256 of the browser's binding cookie (state records only).
	Browser string `json:"browser,omitempty"`
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) connectRoutes(e *gin.Engine) {
	if s.cfg.Connect == nil {
		return
	}
	g := e.Group("/connect")
	g.POST("/links", s.authenticate, s.wrap(s.createLink))
	g.GET("/status", s.authenticate, s.wrap(s.connectStatus))
	g.DELETE("/:provider", s.authenticate, s.wrap(s.disconnect))
	g.GET("/:provider", s.startConnect)
	g.GET("/:provider/callback", s.connectCallback)
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

func (s *Server) provider(name string) (providers.Provider, error) {
	p, ok := s.cfg.Connect.Providers.Get(name)
	if !ok {
		return nil, fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "provider %q is not configured", truncate(name))
	}
	return p, nil
}

// createLink implements POST /connect/links.
func (s *Server) createLink(c *gin.Context) error {
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
	if err := s.mayManage(c, req.Patient); err != nil {
		return err
	}
	if _, err := s.provider(req.Provider); err != nil {
		return err
	}
	if req.Redirect != "" && !slices.Contains(s.cfg.Connect.Redirects, req.Redirect) {
		return fhir.Invalid(fhir.CodeValue, "redirect: not an allowed deep link")
	}
	ctx := c.Request.Context()
	if _, err := s.store.Read(ctx, "Patient", req.Patient); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
			return fhir.Errorf(http.StatusUnprocessableEntity, fhir.CodeBusinessRule, "Patient/%s does not exist", req.Patient)
		}
		return err
	}
	ttl := s.cfg.Connect.LinkTTL
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	tok := randomToken()
	doc, _ := json.Marshal(connectLink{Patient: req.Patient, Provider: req.Provider, Redirect: req.Redirect})
	expires := time.Now().Add(ttl)
	if err := s.store.PutRecord(ctx, kindConnectLink, tok, doc, expires); err != nil {
		return err
	}
	u := s.origin() + "/connect/" + url.PathEscape(req.Provider) + "?link=" + tok
	c.JSON(http.StatusCreated, gin.H{"url": u, "expires": expires.UTC().Format(time.RFC3339)})
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

// browserProvider resolves the provider of a browser step, answering with a page if it cannot.
func (s *Server) browserProvider(c *gin.Context) (string, providers.Provider, bool) {
	name := c.Param("provider")
	p, err := s.provider(name)
	if err != nil {
		s.page(c, http.StatusNotFound, "Unknown service", "This service cannot be connected here.")
		return "", nil, false
	}
	return name, p, true
}

// startConnect implements GET /connect/{provider}?link=…: the link is used up, and the browser
// goes to the vendor's consent page with a fresh single-use state bound to it (and PKCE).
func (s *Server) startConnect(c *gin.Context) {
	name, p, ok := s.browserProvider(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	doc, err := s.store.TakeRecord(ctx, kindConnectLink, c.Query("link"))
	if err != nil {
		s.page(c, http.StatusNotFound, "Link expired", "This link has expired or was already used. Ask for a new one.")
		return
	}
	var l connectLink
	if err := json.Unmarshal(doc, &l); err != nil || l.Provider != name {
		s.page(c, http.StatusNotFound, "Link expired", "This link has expired or was already used. Ask for a new one.")
		return
	}
	l.Verifier = randomToken()
	state := randomToken()
	cookie := browserBinding(c)
	l.Browser = hashToken(cookie)
	b, _ := json.Marshal(l)
	if err := s.store.PutRecord(ctx, kindConnectState, state, b, time.Now().Add(stateTTL)); err != nil {
		s.log.Error("storing connect state", "err", err)
		s.page(c, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	// SameSite=Lax: the vendor sends the browser back with a top-level GET, which carries it.
	http.SetCookie(c.Writer, &http.Cookie{Name: browserCookie, Value: cookie, Path: "/connect/", MaxAge: int(stateTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(s.origin(), "https://"), SameSite: http.SameSiteLaxMode})
	c.Redirect(http.StatusFound, p.AuthCodeURL(state, hashToken(l.Verifier)))
}

// browserBinding returns the browser's binding cookie value: the one it already carries, so
// that two flows started in one browser (two tabs, two vendors) can both finish, or a new one.
func browserBinding(c *gin.Context) string {
	for _, ck := range c.Request.CookiesNamed(browserCookie) {
		if b, err := base64.RawURLEncoding.DecodeString(ck.Value); err == nil && len(b) == 32 {
			return ck.Value
		}
	}
	return randomToken()
}

// sameBrowser reports whether the request carries the binding cookie whose hash the state keeps.
// The state alone proves nothing about who comes back with it: a patient may forward the
// vendor's consent URL, and whoever signs in there would link their own vendor account into
// the patient's record.
func sameBrowser(c *gin.Context, want string) bool {
	if want == "" {
		return false // a state from before browsers were bound
	}
	ok := false
	for _, ck := range c.Request.CookiesNamed(browserCookie) {
		if subtle.ConstantTimeCompare([]byte(hashToken(ck.Value)), []byte(want)) == 1 {
			ok = true
		}
	}
	return ok
}

// hashToken is base64url(SHA-256(v)): the PKCE S256 challenge, and how states keep cookies.
func hashToken(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// connectCallback implements GET /connect/{provider}/callback: it checks the single-use state,
// exchanges the code, stores the connection and schedules the first syncs.
func (s *Server) connectCallback(c *gin.Context) {
	name, p, ok := s.browserProvider(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	doc, err := s.store.TakeRecord(ctx, kindConnectState, c.Query("state"))
	var l connectLink
	if err != nil || json.Unmarshal(doc, &l) != nil || l.Provider != name {
		s.page(c, http.StatusBadRequest, "Link expired", "This sign-in is no longer valid. Ask for a new link.")
		return
	}
	if !sameBrowser(c, l.Browser) {
		// The state is used up either way: it was exposed outside the browser it belongs to.
		s.log.Warn("connect callback from another browser than the one that opened the link", "provider", name)
		s.page(c, http.StatusBadRequest, "Another browser", "This sign-in was started in another browser. Open the link again on this device.")
		return
	}
	if e := c.Query("error"); e != "" {
		s.finish(c, l, "denied", http.StatusOK, "Not connected", "You did not allow access, so nothing was connected.")
		return
	}
	grant, err := p.Exchange(ctx, c.Query("code"), l.Verifier)
	if err != nil {
		s.log.Warn("vendor code exchange failed", "provider", name, "err", err)
		s.finish(c, l, "error", http.StatusBadGateway, "Not connected", "The service did not confirm the connection. Please try again.")
		return
	}
	v := s.cfg.Connect.Vault
	if other, err := v.ByVendorUser(ctx, name, grant.UserID); err == nil && other.PatientID != l.Patient && other.Status != providers.StatusRevoked {
		// Never move an account silently from one patient to another.
		s.finish(c, l, "conflict", http.StatusConflict, "Already connected", "This account is already connected to another person's record. Ask your care team for help.")
		return
	} else if err != nil && !errors.Is(err, providers.ErrNotConnected) {
		s.log.Error("looking up the vendor account", "err", err)
		s.finish(c, l, "error", http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	conn := &providers.Connection{Provider: name, PatientID: l.Patient, VendorUserID: grant.UserID, Status: providers.StatusActive,
		Token: grant.Token, Scopes: grant.Scopes, Created: time.Now().UTC()}
	if old, err := v.Get(ctx, name, l.Patient); err == nil {
		conn.ID, conn.Created, conn.SyncCursors = old.ID, old.Created, old.SyncCursors
		if old.VendorUserID != grant.UserID {
			conn.SyncCursors = nil // another account: sync it from scratch
		}
	}
	if err := v.Save(ctx, conn); err != nil {
		s.log.Error("saving the connection", "err", err)
		s.finish(c, l, "error", http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	if err := s.cfg.Connect.Sync.Connected(ctx, name, l.Patient); err != nil {
		s.log.Error("scheduling the first sync", "err", err)
	}
	s.finish(c, l, "connected", http.StatusOK, "Connected", "Your account is connected. Your measurements will appear in your record shortly.")
}

// finish ends the browser flow on the allow-listed deep link, or on a page.
func (s *Server) finish(c *gin.Context, l connectLink, status string, code int, title, msg string) {
	if l.Redirect != "" && slices.Contains(s.cfg.Connect.Redirects, l.Redirect) {
		u, err := url.Parse(l.Redirect)
		if err == nil {
			q := u.Query()
			q.Set("status", status)
			q.Set("provider", l.Provider)
			u.RawQuery = q.Encode()
			c.Redirect(http.StatusFound, u.String())
			return
		}
	}
	s.page(c, code, title, msg)
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
func (s *Server) disconnect(c *gin.Context) error {
	patient := c.Query("patient")
	if !fhir.ValidID(patient) {
		return fhir.Invalid(fhir.CodeRequired, "patient: a Patient id is required")
	}
	if err := s.mayManage(c, patient); err != nil {
		return err
	}
	if _, err := s.provider(c.Param("provider")); err != nil {
		return err
	}
	if err := s.cfg.Connect.Sync.Disconnect(c.Request.Context(), c.Param("provider"), patient, c.Query("purge") == "true"); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
	return nil
}

type connectionStatus struct {
	Provider  string `json:"provider"`
	Status    string `json:"status"`
	Connected string `json:"connected,omitempty"`
	LastSync  string `json:"lastSync,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// connectStatus implements GET /connect/status?patient=….
func (s *Server) connectStatus(c *gin.Context) error {
	patient := c.Query("patient")
	if !fhir.ValidID(patient) {
		return fhir.Invalid(fhir.CodeRequired, "patient: a Patient id is required")
	}
	if err := s.mayManage(c, patient); err != nil {
		return err
	}
	out := []connectionStatus{}
	for _, name := range s.cfg.Connect.Providers.Names() {
		conn, err := s.cfg.Connect.Vault.Get(c.Request.Context(), name, patient)
		if errors.Is(err, providers.ErrNotConnected) {
			continue
		}
		if err != nil {
			return fmt.Errorf("connection status: %w", err)
		}
		st := connectionStatus{Provider: name, Status: string(conn.Status), LastError: conn.LastError}
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
