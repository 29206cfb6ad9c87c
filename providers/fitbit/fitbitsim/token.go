package fitbitsim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Lifetimes (https://dev.fitbit.com/build/reference/web-api/authorization/oauth2-token/): an
// access token lives 8 hours; an authorization code 10 minutes and is single-use.
const (
	accessTTL = 8 * time.Hour
	codeTTL   = 10 * time.Minute
)

// expiredMemory is how long an expired access token is remembered, so that it is answered
// expired_token rather than invalid_token for a while, before a sweep forgets it.
const expiredMemory = accessTTL

// authCode is an issued authorization code, bound to the client, the redirect URI and the PKCE
// challenge of its authorize request.
type authCode struct {
	user        string
	clientID    string
	redirectURI string
	challenge   string
	scopes      []string
	expires     time.Time
}

// grant is one consent: its current refresh token rotates with every refresh.
type grant struct {
	user    string
	scopes  []string
	refresh string
	access  []string // the access tokens issued under it (revoked with it)
}

type accessTok struct {
	g       *grant
	expires time.Time
}

// spentCode is an exchanged authorization code, remembered until it would have expired so that a
// replay revokes what it granted.
type spentCode struct {
	refresh string // the refresh token it produced ("" when the exchange failed)
	expires time.Time
}

// tokenAnswer is the token endpoint's answer.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	UserID       string `json:"user_id"`
}

// clientOK checks HTTP Basic client authentication, which Fitbit requires of confidential
// ("server") applications at the token and revoke endpoints; on failure it answers 401
// invalid_client.
func (s *Simulator) clientOK(w http.ResponseWriter, r *http.Request) bool {
	id, sec, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(sec), []byte(s.cfg.ClientSecret)) != 1 {
		fail(w, http.StatusUnauthorized, "invalid_client",
			"", "Invalid authorization header format or client credentials. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
		return false
	}
	return true
}

// handleToken is POST /oauth2/token: grant_type authorization_code (code, redirect_uri,
// code_verifier) or refresh_token (refresh_token), with Basic client authentication.
func (s *Simulator) handleToken(w http.ResponseWriter, r *http.Request) {
	if !s.clientOK(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", "", "The request body is not form encoded.")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		s.exchange(w, r)
	case "refresh_token":
		s.rotate(w, r)
	default:
		fail(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type", "The grant type is not supported.")
	}
}

func (s *Simulator) exchange(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	code := f.Get("code")
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	if !ok {
		if u, reused := s.used[code]; reused {
			// RFC 6749 §4.1.2: a code used twice revokes what it granted.
			s.revokeLocked(u.refresh)
		}
		s.invalidGrant(w, "Authorization code invalid.")
		return
	}
	delete(s.codes, code)
	s.sweepLocked(now)
	spent := &spentCode{expires: c.expires}
	s.used[code] = spent
	switch {
	case !now.Before(c.expires):
		s.invalidGrant(w, "Authorization code expired.")
		return
	case f.Has("client_id") && f.Get("client_id") != c.clientID, c.clientID != s.cfg.ClientID:
		fail(w, http.StatusBadRequest, "invalid_client", "client_id", "The client id does not match the authorization code.")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		s.invalidGrant(w, "Redirect URI mismatch.")
		return
	case c.challenge != "" && !verifierMatches(f.Get("code_verifier"), c.challenge):
		s.invalidGrant(w, "Code verifier invalid.")
		return
	}
	g := &grant{user: c.user, scopes: c.scopes}
	spent.refresh = s.issueLocked(w, g, now)
}

// verifierMatches checks a PKCE S256 verifier: BASE64URL(SHA256(verifier)) == challenge
// (https://www.rfc-editor.org/rfc/rfc7636#section-4.6).
func verifierMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// rotate refreshes: Fitbit refresh tokens are single-use, the answer carries a new pair and the
// old refresh token is dead (https://dev.fitbit.com/build/reference/web-api/authorization/refresh-token/).
// Access tokens issued before stay valid until they expire.
func (s *Simulator) rotate(w http.ResponseWriter, r *http.Request) {
	rt := r.PostForm.Get("refresh_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[rt]
	if !ok {
		s.invalidGrant(w, "Refresh token invalid.")
		return
	}
	delete(s.refresh, rt)
	s.issueLocked(w, g, s.now())
}

// issueLocked mints a token pair for g, answers it and returns the refresh token.
func (s *Simulator) issueLocked(w http.ResponseWriter, g *grant, now time.Time) string {
	s.sweepLocked(now)
	at, rt := secret(), secret()
	g.refresh = rt
	g.access = append(g.access, at)
	s.refresh[rt] = g
	s.access[at] = &accessTok{g: g, expires: now.Add(accessTTL)}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenAnswer{
		AccessToken: at, ExpiresIn: int(accessTTL / time.Second), RefreshToken: rt,
		Scope: strings.Join(g.scopes, " "), TokenType: "Bearer", UserID: g.user,
	})
	return rt
}

func (s *Simulator) invalidGrant(w http.ResponseWriter, message string) {
	fail(w, http.StatusBadRequest, "invalid_grant", "",
		message+" Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
}

// handleRevoke is POST /oauth2/revoke token=… (Basic client authentication,
// https://dev.fitbit.com/build/reference/web-api/authorization/revoke-token/): revoking either
// token of a grant revokes the whole grant. An unknown token is answered 200 as well (RFC 7009 §2.2).
func (s *Simulator) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.clientOK(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		fail(w, http.StatusBadRequest, "invalid_request", "token", "Missing parameters: token.")
		return
	}
	tok := r.PostForm.Get("token")
	s.mu.Lock()
	if a, ok := s.access[tok]; ok {
		s.revokeLocked(a.g.refresh)
	} else {
		s.revokeLocked(tok)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct{}{})
}

// sweepLocked forgets expired consent requests, authorization codes and spent codes, and access
// tokens expired for longer than expiredMemory (s.mu held). It runs whenever one of them is
// added, so that a long-running demo does not grow. Refresh tokens do not expire: they go when
// rotated or revoked.
func (s *Simulator) sweepLocked(now time.Time) {
	for k, p := range s.pending {
		if !now.Before(p.expires) {
			delete(s.pending, k)
		}
	}
	for k, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, k)
		}
	}
	for k, u := range s.used {
		if !now.Before(u.expires) {
			delete(s.used, k)
		}
	}
	for k, a := range s.access {
		if !now.Before(a.expires.Add(expiredMemory)) {
			delete(s.access, k)
			a.g.access = slices.DeleteFunc(a.g.access, func(t string) bool { return t == k })
		}
	}
}

// revokeLocked removes the grant whose current refresh token is rt, with its access tokens.
func (s *Simulator) revokeLocked(rt string) {
	g, ok := s.refresh[rt]
	if !ok {
		return
	}
	delete(s.refresh, rt)
	for _, at := range g.access {
		delete(s.access, at)
	}
	g.access = nil
}

// connectedLocked reports whether user holds a live grant.
func (s *Simulator) connectedLocked(user string) bool {
	for _, g := range s.refresh {
		if g.user == user {
			return true
		}
	}
	return false
}

// bearer authenticates an API request: a missing, unknown or expired access token gets Fitbit's
// 401 (invalid_token, expired_token,
// https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/#401-unauthorized).
// It returns the token's user and scopes.
func (s *Simulator) bearer(w http.ResponseWriter, r *http.Request) (string, []string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok = strings.TrimSpace(tok)
	s.mu.Lock()
	a, known := s.access[tok]
	var user string
	var scopes []string
	expired := false
	if known {
		user, scopes, expired = a.g.user, a.g.scopes, !s.now().Before(a.expires)
	}
	s.mu.Unlock()
	w.Header().Set("WWW-Authenticate", `Bearer realm="api.fitbit.com"`)
	switch {
	case !ok || tok == "":
		fail(w, http.StatusUnauthorized, "invalid_client", "", "Authorization header required. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
		return "", nil, false
	case !known:
		fail(w, http.StatusUnauthorized, "invalid_token", "", "Access token invalid. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
		return "", nil, false
	case expired:
		fail(w, http.StatusUnauthorized, "expired_token", "", "Access token expired. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
		return "", nil, false
	}
	w.Header().Del("WWW-Authenticate")
	return user, scopes, true
}

// hasScope reports whether scopes include want ("" needs none).
func hasScope(scopes []string, want string) bool {
	return want == "" || slices.Contains(scopes, want)
}
