package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

const (
	sessionCookie = "ohx_auth"
	sessionTTL    = 15 * time.Minute
)

// authSession is the state of one browser authorization in progress, stored server side under
// the hash of the session cookie.
type authSession struct {
	ClientID    string `json:"client_id"`
	ClientName  string `json:"client_name,omitempty"`
	RedirectURI string `json:"redirect_uri"`
	State       string `json:"state,omitempty"`
	Scope       string `json:"scope"` // requested ∩ allowed
	Challenge   string `json:"code_challenge"`
	Nonce       string `json:"nonce,omitempty"`
	// Patient is the launch context (from an EHR launch, the patient user, or the picker).
	Patient    string `json:"patient,omitempty"`
	FromLaunch bool   `json:"from_launch,omitempty"`
	NeedBanner bool   `json:"need_patient_banner,omitempty"`
	// Username is set once the user has signed in.
	Username string `json:"username,omitempty"`
}

// needsPatient: launch/patient or any patient/ scope needs a patient in context.
func (a *authSession) needsPatient() bool {
	sc := smart.ParseScopes(a.Scope)
	if sc.Has("launch/patient") {
		return true
	}
	for _, r := range sc.Resource {
		if r.Context == "patient" {
			return true
		}
	}
	return false
}

// errOtherPatient: a patient user was asked to authorize for someone else's record.
var errOtherPatient = errors.New("the launch patient is not the signed-in patient")

// bindUser applies the signed-in user's role to the authorization request a. It runs for every
// authorization request and again at approval, whether the user has just signed in or the
// browser's sign-in is reused: a patient user is only ever bound to their own patient (and never
// sees the patient picker); a practitioner keeps the launch patient or picks one.
func bindUser(a *authSession, u User) error {
	if u.Role != RolePatient {
		return nil
	}
	if a.Patient != "" && a.Patient != u.Patient {
		return errOtherPatient
	}
	if a.needsPatient() {
		a.Patient = u.Patient
	}
	return nil
}

var challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// authorize is GET and POST /authorize (SMART authorize-post,
// https://hl7.org/fhir/smart-app-launch/app-launch.html). Until the client and its
// redirect URI are known to be registered, errors are shown as a page and never redirected
// (RFC 6749 §4.1.2.1); after that they go back to the app's redirect URI.
func (s *Server) authorize(c *gin.Context) {
	q, ok := s.authorizeForm(c)
	if !ok {
		return
	}
	client, redirect, ok := s.authorizeClient(c, q)
	if !ok {
		return
	}
	sess, aerr := s.newAuthSession(c, q, client, redirect)
	if aerr != nil {
		s.redirectError(c, redirect, q.Get("state"), aerr.code, aerr.desc)
		return
	}
	s.startSession(c, sess)
}

// authorizeError is an authorization request error that is sent to the client's registered
// redirect URI (RFC 6749 §4.1.2.1): code is the error, desc its error_description.
type authorizeError struct{ code, desc string }

// authorizeParams are the parameters of an authorization request; none may be repeated
// (RFC 6749 §3.1).
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "aud", "code_challenge", "code_challenge_method", "launch", "nonce"}

// authorizeForm reads the authorization request's parameters: the query of a GET, the form
// body of a POST. On a malformed or repeated parameter it shows an error page and reports false.
func (s *Server) authorizeForm(c *gin.Context) (url.Values, bool) {
	if err := limitForm(c); err != nil {
		s.errorPage(c, http.StatusBadRequest, "The authorization request is malformed.")
		return nil, false
	}
	q := c.Request.Form
	if c.Request.Method == http.MethodPost {
		q = c.Request.PostForm
	}
	for _, p := range authorizeParams {
		if len(q[p]) > 1 {
			s.errorPage(c, http.StatusBadRequest, "The parameter "+p+" is repeated.")
			return nil, false
		}
	}
	return q, true
}

// authorizeClient loads the requesting client and the redirect URI to answer on: the
// redirect_uri parameter, which must be registered exactly, or the client's only registered one
// when it is absent. Otherwise it shows an error page and reports false.
func (s *Server) authorizeClient(c *gin.Context, q url.Values) (Client, string, bool) {
	client, err := s.Client(c.Request.Context(), q.Get("client_id"))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("authorize: load client", "err", err)
			s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
			return Client{}, "", false
		}
		s.errorPage(c, http.StatusBadRequest, "Unknown client_id.")
		return Client{}, "", false
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" && len(client.RedirectURIs) == 1 {
		redirect = client.RedirectURIs[0]
	}
	if !slices.Contains(client.RedirectURIs, redirect) {
		s.errorPage(c, http.StatusBadRequest, "The redirect_uri is not registered for this client.")
		return Client{}, "", false
	}
	return client, redirect, true
}

// newAuthSession validates the request of a registered client and builds its session: the
// granted scopes, the launch context, and a sign-in this browser already made.
func (s *Server) newAuthSession(c *gin.Context, q url.Values, client Client, redirect string) (authSession, *authorizeError) {
	if aerr := s.checkAuthorizeRequest(q, client); aerr != nil {
		return authSession{}, aerr
	}
	sess := authSession{ClientID: client.ID, ClientName: client.Name, RedirectURI: redirect, State: q.Get("state"),
		Challenge: q.Get("code_challenge"), Nonce: q.Get("nonce"), NeedBanner: true}
	if aerr := s.grantSession(c.Request.Context(), q, client, &sess); aerr != nil {
		return authSession{}, aerr
	}
	if aerr := s.reuseSignIn(c, &sess); aerr != nil {
		return authSession{}, aerr
	}
	return sess, nil
}

// checkAuthorizeRequest checks response_type, the client type, aud, PKCE and the nonce.
func (s *Server) checkAuthorizeRequest(q url.Values, client Client) *authorizeError {
	switch {
	case q.Get("response_type") != "code":
		return &authorizeError{"unsupported_response_type", "response_type must be code"}
	case client.Type == ClientBackend:
		return &authorizeError{"unauthorized_client", "backend clients cannot use the authorization code grant"}
	case !s.validAudience(q.Get("aud")):
		// SMART: aud is the FHIR base URL the app will use (R5 or R4); a mismatch must not yield a token.
		return &authorizeError{"invalid_request", s.audienceError()}
	case q.Get("code_challenge_method") != "S256":
		// SMART requires PKCE with S256 (RFC 7636 §4.2), never plain.
		return &authorizeError{"invalid_request", "PKCE with code_challenge_method S256 is required"}
	case !challengeRE.MatchString(q.Get("code_challenge")):
		return &authorizeError{"invalid_request", "code_challenge must be the base64url SHA-256 of the verifier"}
	case len(q.Get("nonce")) > 512:
		return &authorizeError{"invalid_request", "nonce is too long"}
	}
	return nil
}

// grantSession sets sess.Scope to the requested scopes the client may be granted in a user's
// authorization, and with an EHR launch value its launch context.
func (s *Server) grantSession(ctx context.Context, q url.Values, client Client, sess *authSession) *authorizeError {
	granted := grantScopes(q.Get("scope"), client.Scopes)
	granted = slices.DeleteFunc(granted, func(f string) bool {
		// system/ scopes belong to Backend Services, never to a user's authorization.
		return strings.HasPrefix(f, "system/")
	})
	if launch := q.Get("launch"); launch != "" {
		var ld launchDoc
		if err := s.getJSON(ctx, kindLaunch, hashID(launch), &ld); err != nil || (ld.ClientID != "" && ld.ClientID != client.ID) {
			return &authorizeError{"invalid_request", "unknown or expired launch"}
		}
		sess.Patient, sess.FromLaunch, sess.NeedBanner = ld.Patient, true, ld.NeedBanner
	} else {
		granted = slices.DeleteFunc(granted, func(f string) bool { return f == "launch" })
	}
	if len(granted) == 0 {
		return &authorizeError{"invalid_scope", "none of the requested scopes can be granted to this client"}
	}
	sess.Scope = strings.Join(granted, " ")
	return nil
}

// reuseSignIn keeps a sign-in from the same browser session, under the same rules as a fresh
// one: the user is loaded again (removed users sign in again) and bound by role to this request.
func (s *Server) reuseSignIn(c *gin.Context, sess *authSession) *authorizeError {
	old, _, err := s.session(c)
	if err != nil || old.Username == "" {
		return nil
	}
	u, err := s.user(c.Request.Context(), old.Username)
	if err != nil {
		return nil
	}
	if err := bindUser(sess, u); err != nil {
		return &authorizeError{"access_denied", err.Error()}
	}
	sess.Username = u.Username
	return nil
}

// startSession stores sess under a new session cookie and sends the browser on to sign in, or
// straight to consent when it is signed in already.
func (s *Server) startSession(c *gin.Context, sess authSession) {
	sid := randomToken(32)
	if err := s.putJSON(c.Request.Context(), kindSession, hashID(sid), sess, s.now().Add(sessionTTL)); err != nil {
		s.log.Error("authorize: save session", "err", err)
		s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
		return
	}
	s.setSessionCookie(c, sid, int(sessionTTL/time.Second))
	next := "/login"
	if sess.Username != "" {
		next = "/consent"
	}
	c.Redirect(http.StatusSeeOther, s.path+next)
}

func (s *Server) setSessionCookie(c *gin.Context, sid string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: sid, Path: s.path + "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// session loads the browser's authorization session.
func (s *Server) session(c *gin.Context) (authSession, string, error) {
	ck, err := c.Request.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return authSession{}, "", errors.New("no session cookie")
	}
	var a authSession
	if err := s.getJSON(c.Request.Context(), kindSession, hashID(ck.Value), &a); err != nil {
		return authSession{}, "", err
	}
	return a, ck.Value, nil
}

func (s *Server) saveSession(ctx context.Context, sid string, a authSession) error {
	return s.putJSON(ctx, kindSession, hashID(sid), a, s.now().Add(sessionTTL))
}

// csrfToken is a signed double-submit token bound to the session: HMAC(key, session id).
func (s *Server) csrfToken(sid string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00" + sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF loads the session of a form POST and verifies its CSRF token; any failure is 403.
func (s *Server) checkCSRF(c *gin.Context) (authSession, string, bool) {
	if err := limitForm(c); err != nil {
		s.errorPage(c, http.StatusBadRequest, "The form is malformed.")
		return authSession{}, "", false
	}
	a, sid, err := s.session(c)
	if err != nil || !hmac.Equal([]byte(c.Request.PostForm.Get("csrf")), []byte(s.csrfToken(sid))) {
		s.errorPage(c, http.StatusForbidden, "This form has expired or was not sent by this site. Please start again from the app.")
		return authSession{}, "", false
	}
	return a, sid, true
}

// render writes a page outside an authorization session: its forms may go to us only.
func (s *Server) render(c *gin.Context, status int, name string, data any) {
	s.renderSession(c, authSession{}, status, name, data)
}

// renderSession writes a page of the authorization session a: its forms may also go to the
// origin of a's registered redirect URI, where our answer to them redirects (pageCSP).
func (s *Server) renderSession(c *gin.Context, a authSession, status int, name string, data any) {
	c.Header("Cache-Control", "no-store")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Content-Security-Policy", pageCSP(a.RedirectURI))
	c.Header("Referrer-Policy", "no-referrer")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := s.tmpl.ExecuteTemplate(c.Writer, name, data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

func (s *Server) errorPage(c *gin.Context, status int, msg string) {
	s.render(c, status, "error.html", map[string]any{"Message": msg})
}

// redirectError sends an RFC 6749 §4.1.2.1 error to a registered redirect URI.
func (s *Server) redirectError(c *gin.Context, redirect, state, code, desc string) {
	u, err := url.Parse(redirect)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "The redirect_uri is malformed.")
		return
	}
	v := u.Query()
	v.Set("error", code)
	if desc != "" {
		v.Set("error_description", desc)
	}
	if state != "" {
		v.Set("state", state)
	}
	u.RawQuery = v.Encode()
	c.Redirect(http.StatusFound, u.String())
}

// loginPage is GET /login.
func (s *Server) loginPage(c *gin.Context) {
	a, sid, err := s.session(c)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "No authorization is in progress. Please start again from the app.")
		return
	}
	s.renderSession(c, a, http.StatusOK, "login.html", map[string]any{"CSRF": s.csrfToken(sid), "Client": clientLabel(a), "Action": s.path + "/login"})
}

func clientLabel(a authSession) string {
	if a.ClientName != "" {
		return a.ClientName
	}
	return a.ClientID
}

// login is POST /login.
func (s *Server) login(c *gin.Context) {
	a, sid, ok := s.checkCSRF(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	f := c.Request.PostForm
	again := func(status int, msg string) {
		s.renderSession(c, a, status, "login.html", map[string]any{"CSRF": s.csrfToken(sid), "Client": clientLabel(a),
			"Action": s.path + "/login", "Error": msg})
	}
	// Throttled before the password is looked at, so that a refused guess costs no hashing.
	account, addr := throttleKeys(f.Get("username"), c.ClientIP())
	if wait := s.throttle.begin(account, addr); wait > 0 {
		s.log.Info("login throttled")
		secs, words := retryAfter(wait)
		c.Header("Retry-After", secs)
		again(http.StatusTooManyRequests, "Too many failed sign-ins. Try again in "+words+".")
		return
	}
	u, ok, err := s.authenticate(ctx, f.Get("username"), f.Get("password"))
	if errors.Is(err, errBusy) {
		s.throttle.undecided(account, addr)
		s.log.Warn("login: no argon2 slot in time")
		c.Header("Retry-After", "1")
		again(http.StatusServiceUnavailable, "The server is busy. Please try again in a moment.")
		return
	}
	if err != nil {
		s.throttle.undecided(account, addr)
		s.log.Error("login", "err", err)
		s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
		return
	}
	if !ok {
		s.log.Info("login failed") // counted by begin
		again(http.StatusUnauthorized, "Unknown username or wrong password.")
		return
	}
	s.throttle.succeeded(account, addr)
	if err := bindUser(&a, u); err != nil {
		s.redirectError(c, a.RedirectURI, a.State, "access_denied", err.Error())
		return
	}
	// A new session id after sign-in (session fixation).
	if err := s.st.DeleteRecord(ctx, kindSession, hashID(sid)); err != nil {
		s.log.Warn("login: drop old session", "err", err)
	}
	a.Username = u.Username
	sid = randomToken(32)
	if err := s.saveSession(ctx, sid, a); err != nil {
		s.log.Error("login: save session", "err", err)
		s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
		return
	}
	s.setSessionCookie(c, sid, int(sessionTTL/time.Second))
	c.Redirect(http.StatusSeeOther, s.path+"/consent")
}

type patientChoice struct {
	ID, Name, BirthDate string
}

// consentPage is GET /consent: the patient picker for practitioners who still need a patient,
// otherwise the list of requested permissions in words.
func (s *Server) consentPage(c *gin.Context) {
	a, sid, err := s.session(c)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "No authorization is in progress. Please start again from the app.")
		return
	}
	if a.Username == "" {
		c.Redirect(http.StatusSeeOther, s.path+"/login")
		return
	}
	if a.ClientID == "" {
		s.errorPage(c, http.StatusBadRequest, "No authorization is in progress. Please start again from the app.")
		return
	}
	ctx := c.Request.Context()
	u, err := s.user(ctx, a.Username)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "Please sign in again.")
		return
	}
	if err := bindUser(&a, u); err != nil {
		s.redirectError(c, a.RedirectURI, a.State, "access_denied", err.Error())
		return
	}
	data := map[string]any{"CSRF": s.csrfToken(sid), "Client": clientLabel(a), "Action": s.path + "/consent"}
	// Only practitioners choose a patient: a patient user is bound to their own (bindUser).
	if a.needsPatient() && a.Patient == "" && u.Role == RolePractitioner {
		q := strings.TrimSpace(c.Query("q"))
		pts, err := s.searchPatients(ctx, q)
		if err != nil {
			s.log.Error("patient picker search", "err", err)
			s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
			return
		}
		data["Query"], data["Patients"], data["SearchAction"] = q, pts, s.path+"/consent"
		s.renderSession(c, a, http.StatusOK, "pick.html", data)
		return
	}
	if a.needsPatient() && a.Patient == "" {
		s.errorPage(c, http.StatusForbidden, "This account cannot choose a patient.")
		return
	}
	own := u.Role == RolePatient
	data["Scopes"] = describeScopes(a.Scope, own)
	if a.Patient != "" {
		data["Patient"] = s.patientLabel(ctx, a.Patient)
	}
	s.renderSession(c, a, http.StatusOK, "consent.html", data)
}

func (s *Server) user(ctx context.Context, username string) (User, error) {
	var u User
	err := s.getJSON(ctx, kindUser, username, &u)
	return u, err
}

// consent is POST /consent: action=pick (patient), approve or deny.
func (s *Server) consent(c *gin.Context) {
	a, sid, ok := s.checkCSRF(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if a.ClientID == "" {
		s.errorPage(c, http.StatusBadRequest, "No authorization is in progress. Please start again from the app.")
		return
	}
	if a.Username == "" {
		c.Redirect(http.StatusSeeOther, s.path+"/login")
		return
	}
	u, err := s.user(ctx, a.Username)
	if err != nil {
		s.errorPage(c, http.StatusBadRequest, "Please sign in again.")
		return
	}
	f := c.Request.PostForm
	switch f.Get("action") {
	case "pick":
		if u.Role != RolePractitioner || a.Patient != "" {
			s.errorPage(c, http.StatusBadRequest, "No patient needs to be chosen.")
			return
		}
		id := f.Get("patient")
		if _, err := s.st.Read(ctx, "Patient", id); err != nil || id == "" {
			s.errorPage(c, http.StatusBadRequest, "Unknown patient.")
			return
		}
		a.Patient = id
		if err := s.saveSession(ctx, sid, a); err != nil {
			s.log.Error("consent: save session", "err", err)
			s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
			return
		}
		c.Redirect(http.StatusSeeOther, s.path+"/consent")
	case "deny":
		s.endSession(ctx, sid, a.Username)
		s.redirectError(c, a.RedirectURI, a.State, "access_denied", "the user denied the request")
	case "approve":
		// The role rules once more at the last step: the user record may have changed since.
		if err := bindUser(&a, u); err != nil {
			s.endSession(ctx, sid, a.Username)
			s.redirectError(c, a.RedirectURI, a.State, "access_denied", err.Error())
			return
		}
		if a.needsPatient() && a.Patient == "" {
			c.Redirect(http.StatusSeeOther, s.path+"/consent")
			return
		}
		g := grant{ClientID: a.ClientID, Scope: a.Scope, Subject: u.Username, Patient: a.Patient, FHIRUser: u.FHIRUser,
			RedirectURI: a.RedirectURI, Challenge: a.Challenge, Nonce: a.Nonce}
		if u.Role == RolePatient {
			// The resource server confines user/ scopes by fhirUser: a patient user's is always
			// their own Patient, whatever the stored record says.
			g.FHIRUser = "Patient/" + u.Patient
		}
		if a.Patient != "" {
			g.NeedBanner = a.NeedBanner
		}
		code := randomToken(32)
		if err := s.putJSON(ctx, kindCode, hashID(code), g, s.now().Add(s.cfg.CodeTTL)); err != nil {
			s.log.Error("consent: save code", "err", err)
			s.errorPage(c, http.StatusInternalServerError, "Something went wrong. Please try again later.")
			return
		}
		s.endSession(ctx, sid, a.Username)
		ru, _ := url.Parse(a.RedirectURI)
		v := ru.Query()
		v.Set("code", code)
		if a.State != "" {
			v.Set("state", a.State)
		}
		ru.RawQuery = v.Encode()
		c.Redirect(http.StatusFound, ru.String())
	default:
		s.errorPage(c, http.StatusBadRequest, "Unknown action.")
	}
}

// endSession forgets the authorization request but keeps the sign-in for the next one.
func (s *Server) endSession(ctx context.Context, sid, username string) {
	if err := s.saveSession(ctx, sid, authSession{Username: username}); err != nil {
		s.log.Warn("end session", "err", err)
	}
}

// searchPatients lists up to pageSize Patients whose name matches q (all when q is empty).
func (s *Server) searchPatients(ctx context.Context, q string) ([]patientChoice, error) {
	params := []search.NameValue{{Name: "_count", Value: fmt.Sprint(s.pageSize)}}
	if q != "" {
		params = append(params, search.NameValue{Name: "name", Value: q})
	}
	query, _, err := search.DefaultRegistry().Parse("Patient", params, search.Options{BaseURL: s.cfg.FHIRBaseURL})
	if err != nil {
		return nil, fmt.Errorf("parse patient search: %w", err)
	}
	res, err := s.st.Search(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("search patients: %w", err)
	}
	out := make([]patientChoice, 0, len(res.Matches))
	for _, e := range res.Matches {
		var p fhir.Patient
		if err := json.Unmarshal(e.JSON, &p); err != nil {
			continue
		}
		out = append(out, patientChoice{ID: e.ID, Name: displayName(p.Name), BirthDate: p.BirthDate})
	}
	return out, nil
}

func (s *Server) patientLabel(ctx context.Context, id string) string {
	e, err := s.st.Read(ctx, "Patient", id)
	if err != nil {
		return "Patient/" + id
	}
	var p fhir.Patient
	if err := json.Unmarshal(e.JSON, &p); err != nil || len(p.Name) == 0 {
		return "Patient/" + id
	}
	return displayName(p.Name)
}

func displayName(names []fhir.HumanName) string {
	if len(names) == 0 {
		return "(no name)"
	}
	n := names[0]
	if n.Text != "" {
		return n.Text
	}
	return strings.TrimSpace(strings.Join(append(slices.Clone(n.Given), n.Family), " "))
}
