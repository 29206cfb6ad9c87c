package googlehealthsim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// Lifetimes Google documents: authorization codes are short-lived and single-use, access tokens
// last an hour (expires_in 3599), refresh tokens do not expire while the grant stands
// (https://developers.google.com/identity/protocols/oauth2/web-server).
const (
	codeTTL   = 10 * time.Minute
	nonceTTL  = 10 * time.Minute
	accessTTL = 3599 * time.Second
)

// authRequest is a pending consent: the authorize request's parameters, bound to the page's nonce.
type authRequest struct {
	clientID, redirectURI, state string
	scopes                       []string
	challenge, method            string
	expires                      time.Time
}

// authCode is an issued authorization code.
type authCode struct {
	person            string // Person.Key
	clientID          string
	redirectURI       string
	challenge, method string
	scopes            []string
	expires           time.Time
	used              bool
}

// grant is the user's consent to the client, named by its refresh token.
type grant struct {
	person   string
	clientID string
	scopes   []string
	refresh  string
}

// access is an issued access token.
type access struct {
	grant   *grant
	expires time.Time
}

// randomToken is an opaque token: tokens are credentials, not data, so they come from
// crypto/rand rather than the world's seed.
func randomToken(prefix string) string {
	return prefix + rand.Text()
}

// authorize shows the consent page for a valid authorization request
// (https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient); an invalid
// one gets an error page with status 400, never a redirect.
func (s *Simulator) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.cfg.ClientID {
		htmlError(w, "invalid_client", "The OAuth client was not found.")
		return
	}
	redirect := q.Get("redirect_uri")
	if !simweb.AbsoluteHTTP(redirect) {
		htmlError(w, "invalid_request", "Invalid parameter value for redirect_uri: it must be an absolute http(s) URI.")
		return
	}
	if !simweb.Redirects(s.cfg.RedirectURIs).Allow(redirect) {
		// Google compares the redirect_uri exactly with the client's authorized redirect URIs
		// ("Error 400: redirect_uri_mismatch").
		htmlError(w, "redirect_uri_mismatch", "The redirect URI in the request does not match the ones authorized for the OAuth client.")
		return
	}
	if rt := q.Get("response_type"); rt != "code" {
		htmlError(w, "unsupported_response_type", "Invalid response_type: "+rt)
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		htmlError(w, "invalid_request", "Missing required parameter: scope")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		htmlError(w, "invalid_request", "Missing required parameter: code_challenge")
		return
	case challenge != "" && method == "":
		method = "plain" // RFC 7636 §4.3: plain is the default
	case challenge != "" && method != "S256" && method != "plain":
		htmlError(w, "invalid_request", "Invalid code_challenge_method: "+method)
		return
	}
	nonce := randomToken("")
	now := s.now()
	s.mu.Lock()
	for k, p := range s.pending {
		if now.After(p.expires) {
			delete(s.pending, k)
		}
	}
	s.pending[nonce] = &authRequest{clientID: s.cfg.ClientID, redirectURI: redirect, state: q.Get("state"),
		scopes: scopes, challenge: challenge, method: method, expires: now.Add(nonceTTL)}
	s.mu.Unlock()

	v := consentView{ClientID: s.cfg.ClientID, Redirect: redirect, Action: AuthPath, Nonce: nonce, Scopes: scopes}
	for _, p := range s.people {
		v.Accounts = append(v.Accounts, consentAccount{Key: p.Key, Name: p.Given + " " + p.Family, ID: s.ids[p.Key]})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := consentPage.Execute(w, v); err != nil {
		s.log.Error("consent page", "err", err)
	}
}

// consent answers the consent form: Allow redirects (303) with a code and the state, Deny with
// error=access_denied, as Google does
// (https://developers.google.com/identity/protocols/oauth2/web-server#handlingresponse).
func (s *Simulator) consent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		htmlError(w, "invalid_request", "The form could not be read.")
		return
	}
	now := s.now()
	s.mu.Lock()
	req := s.pending[r.PostForm.Get("nonce")]
	delete(s.pending, r.PostForm.Get("nonce"))
	s.mu.Unlock()
	if req == nil || now.After(req.expires) {
		htmlError(w, "invalid_request", "This sign-in request has expired or was already answered. Start again from the application.")
		return
	}
	target, _ := url.Parse(req.redirectURI) // validated by authorize
	v := target.Query()
	switch r.PostForm.Get("action") {
	case "allow":
		p := s.person(r.PostForm.Get("account"))
		if p == nil {
			htmlError(w, "invalid_request", "Choose one of the listed accounts.")
			return
		}
		code := randomToken("4/0A")
		s.mu.Lock()
		for k, c := range s.codes {
			if now.After(c.expires) {
				delete(s.codes, k)
			}
		}
		s.codes[code] = &authCode{person: p.Key, clientID: req.clientID, redirectURI: req.redirectURI,
			challenge: req.challenge, method: req.method, scopes: req.scopes, expires: now.Add(codeTTL)}
		s.mu.Unlock()
		v.Set("code", code)
		v.Set("scope", strings.Join(req.scopes, " "))
		s.log.Info("consent granted", "account", p.Key)
	case "deny":
		v.Set("error", "access_denied")
	default:
		htmlError(w, "invalid_request", "Choose Allow or Deny.")
		return
	}
	if req.state != "" {
		v.Set("state", req.state)
	}
	target.RawQuery = v.Encode()
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// clientAuth checks the client credentials, in the body (as the adapter sends them) or HTTP
// Basic; both are accepted by Google's token endpoint.
func (s *Simulator) clientAuth(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
}

// tokenAnswer is the token endpoint's answer (testdata/googlehealth/token_exchange.json).
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
}

// token is Google's token endpoint: the code exchange (with the PKCE verifier) and the refresh,
// which does not rotate the refresh token (Google answers without refresh_token,
// testdata/googlehealth/token_refresh_no_rotation.json).
func (s *Simulator) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Bad Request")
		return
	}
	if !s.clientAuth(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Unauthorized")
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		s.exchange(w, r)
	case "refresh_token":
		s.refresh(w, r)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+gt)
	}
}

func (s *Simulator) exchange(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	f := r.PostForm
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.codes[f.Get("code")]
	switch {
	case c == nil || c.used || now.After(c.expires) || c.clientID != s.cfg.ClientID:
		// A reused code is refused like an unknown one (RFC 6749 §4.1.2: single use).
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Bad Request")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		oauthError(w, http.StatusBadRequest, "redirect_uri_mismatch", "Bad Request")
		return
	}
	if c.challenge != "" {
		v := f.Get("code_verifier")
		if v == "" {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Missing code verifier.")
			return
		}
		if !verifierMatches(v, c.challenge, c.method) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid code verifier.")
			return
		}
	}
	c.used = true
	g := &grant{person: c.person, clientID: c.clientID, scopes: c.scopes, refresh: randomToken("1//")}
	s.grants[g.refresh] = g
	tok := s.issueLocked(g, now)
	writeJSON(w, http.StatusOK, tokenAnswer{AccessToken: tok, ExpiresIn: int(accessTTL / time.Second),
		RefreshToken: g.refresh, Scope: strings.Join(g.scopes, " "), TokenType: "Bearer"})
}

// verifierMatches checks a PKCE verifier against the challenge (RFC 7636 §4.6).
func verifierMatches(verifier, challenge, method string) bool {
	want := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

func (s *Simulator) refresh(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.grants[r.PostForm.Get("refresh_token")]
	if g == nil || g.clientID != s.cfg.ClientID {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
		return
	}
	tok := s.issueLocked(g, now)
	writeJSON(w, http.StatusOK, tokenAnswer{AccessToken: tok, ExpiresIn: int(accessTTL / time.Second),
		Scope: strings.Join(g.scopes, " "), TokenType: "Bearer"})
}

// issueLocked issues an access token of g; expired ones are dropped. s.mu is held.
func (s *Simulator) issueLocked(g *grant, now time.Time) string {
	for k, a := range s.access {
		if now.After(a.expires) {
			delete(s.access, k)
		}
	}
	tok := randomToken("ya29.")
	s.access[tok] = &access{grant: g, expires: now.Add(accessTTL)}
	return tok
}

// revoke is Google's revocation endpoint
// (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke): revoking a
// refresh token, or an access token of a grant, ends the whole grant; an unknown token is
// 400 invalid_token.
func (s *Simulator) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Bad Request")
		return
	}
	tok := r.Form.Get("token")
	s.mu.Lock()
	g := s.grants[tok]
	if a := s.access[tok]; g == nil && a != nil {
		g = a.grant
	}
	if g != nil {
		delete(s.grants, g.refresh)
		for k, a := range s.access {
			if a.grant == g {
				delete(s.access, k)
			}
		}
	}
	s.mu.Unlock()
	if g == nil {
		oauthError(w, http.StatusBadRequest, "invalid_token", "Token expired or revoked")
		return
	}
	s.log.Info("grant revoked", "account", g.person)
	writeJSON(w, http.StatusOK, struct{}{})
}

// connected lists the people with a standing grant, in the simulator's order.
func (s *Simulator) connected() []*sim.Person {
	s.mu.Lock()
	defer s.mu.Unlock()
	has := map[string]bool{}
	for _, g := range s.grants {
		has[g.person] = true
	}
	var out []*sim.Person
	for _, p := range s.people {
		if has[p.Key] {
			out = append(out, p)
		}
	}
	return out
}
