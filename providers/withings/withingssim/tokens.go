package withingssim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Lifetimes (https://developer.withings.com/developer-guide/v3/integration-guide/public-health-data-api/get-access/access-and-refresh-tokens-no-recover):
// an access token lives 3 h, a refresh token a year; after a refresh the previous refresh token
// stays valid until the new access token is first used or for 8 h. Authorization codes live 10
// minutes here (Withings: 30 s) so that a person can finish the demo's consent page at leisure.
const (
	accessLifetime  = 3 * time.Hour
	refreshLifetime = 365 * 24 * time.Hour
	refreshGrace    = 8 * time.Hour
	codeLifetime    = 10 * time.Minute
	consentLifetime = 30 * time.Minute
	nonceLifetime   = 30 * time.Minute
)

type accessToken struct {
	acct    *account
	scope   string
	expires time.Time
	// prev is the refresh token this one's refresh replaced, dropped when this one is first used.
	prev string
}

type refreshToken struct {
	acct    *account
	scope   string
	expires time.Time
}

type authCode struct {
	acct                  *account
	clientID, redirectURI string
	scope                 string
	expires               time.Time
}

// randomToken is an opaque token: tokens are secrets, not data, so they come from crypto/rand.
func randomToken() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// accountFor resolves an access token; nil when it is unknown or expired. Its first use retires
// the refresh token it was refreshed from.
func (s *Simulator) accountFor(token string) *account {
	if token == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[token]
	if !ok {
		return nil
	}
	if !s.now().Before(t.expires) {
		delete(s.access, token)
		return nil
	}
	if t.prev != "" {
		delete(s.refresh, t.prev)
		t.prev = ""
	}
	return t.acct
}

// sweep forgets expired tokens, codes, consent pages and nonces (s.mu held), so that a
// long-running demo does not grow.
func (s *Simulator) sweep(now time.Time) {
	for k, t := range s.access {
		if !now.Before(t.expires) {
			delete(s.access, k)
		}
	}
	for k, t := range s.refresh {
		if !now.Before(t.expires) {
			delete(s.refresh, k)
		}
	}
	for k, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, k)
		}
	}
	for k, c := range s.consents {
		if !now.Before(c.expires) {
			delete(s.consents, k)
		}
	}
	for k, exp := range s.nonces {
		if !now.Before(exp) {
			delete(s.nonces, k)
		}
	}
}

// issue creates a token pair for a (s.mu held) and returns the requesttoken body.
func (s *Simulator) issue(a *account, scope, prev string) any {
	at, rt := randomToken(), randomToken()
	now := s.now()
	s.sweep(now)
	s.access[at] = &accessToken{acct: a, scope: scope, expires: now.Add(accessLifetime), prev: prev}
	s.refresh[rt] = &refreshToken{acct: a, scope: scope, expires: now.Add(refreshLifetime)}
	return map[string]any{
		"userid":        a.userID,
		"access_token":  at,
		"refresh_token": rt,
		"expires_in":    int(accessLifetime / time.Second),
		"scope":         scope,
		"token_type":    "Bearer",
	}
}

// connected reports whether a (s.mu held) has a usable token.
func (s *Simulator) connected(a *account) bool {
	now := s.now()
	for _, t := range s.refresh {
		if t.acct == a && now.Before(t.expires) {
			return true
		}
	}
	for _, t := range s.access {
		if t.acct == a && now.Before(t.expires) {
			return true
		}
	}
	return false
}

// oauth2Actions is /v2/oauth2: requesttoken (code exchange and refresh) and revoke.
func (s *Simulator) oauth2Actions(r *http.Request, action string) (any, *apiError) {
	switch action {
	case "requesttoken":
		return s.requestToken(r)
	case "revoke":
		return s.revoke(r)
	}
	return nil, &apiError{Status: statusUnknownAction}
}

func (s *Simulator) requestToken(r *http.Request) (any, *apiError) {
	f := r.Form
	if !hmac.Equal([]byte(f.Get("client_id")), []byte(s.cfg.ClientID)) ||
		!hmac.Equal([]byte(f.Get("client_secret")), []byte(s.cfg.ClientSecret)) {
		return nil, invalidParams("invalid client_id or client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch f.Get("grant_type") {
	case "authorization_code":
		code := f.Get("code")
		c, ok := s.codes[code]
		delete(s.codes, code) // single use, whatever the outcome
		if !ok || !now.Before(c.expires) || c.clientID != f.Get("client_id") {
			return nil, invalidParams("invalid code")
		}
		if c.redirectURI != f.Get("redirect_uri") {
			return nil, invalidParams("redirect_uri mismatch")
		}
		s.log.Info("code exchanged", "userid", c.acct.userID)
		return s.issue(c.acct, c.scope, ""), nil
	case "refresh_token":
		old := f.Get("refresh_token")
		t, ok := s.refresh[old]
		if !ok || !now.Before(t.expires) {
			delete(s.refresh, old)
			return nil, invalidParams("invalid refresh_token")
		}
		// Rotation: the old refresh token survives until the new access token is used, or 8 h.
		if g := now.Add(refreshGrace); g.Before(t.expires) {
			t.expires = g
		}
		s.log.Info("token refreshed", "userid", t.acct.userID)
		return s.issue(t.acct, t.scope, old), nil
	}
	return nil, invalidParams("grant_type")
}

// sign is the Withings request signature: the values of the named parameters sorted by name,
// joined by commas, HMAC-SHA256 under the client secret, hex
// (Signature v2 in https://developer.withings.com/api-reference).
func (s *Simulator) sign(r *http.Request, names ...string) string {
	names = append([]string(nil), names...)
	sort.Strings(names)
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = r.Form.Get(n)
	}
	m := hmac.New(sha256.New, []byte(s.cfg.ClientSecret))
	m.Write([]byte(strings.Join(vals, ",")))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Simulator) signed(r *http.Request, names ...string) *apiError {
	if r.Form.Get("client_id") != s.cfg.ClientID {
		return invalidParams("invalid client_id")
	}
	if !hmac.Equal([]byte(r.Form.Get("signature")), []byte(s.sign(r, names...))) {
		return &apiError{Status: statusInvalidSignature, Text: "The signature is invalid"}
	}
	return nil
}

// signatureActions is /v2/signature: getnonce, signed over action, client_id and timestamp.
func (s *Simulator) signatureActions(r *http.Request, action string) (any, *apiError) {
	if action != "getnonce" {
		return nil, &apiError{Status: statusUnknownAction}
	}
	if r.Form.Get("timestamp") == "" {
		return nil, invalidParams("timestamp")
	}
	if err := s.signed(r, "action", "client_id", "timestamp"); err != nil {
		return nil, err
	}
	n := randomToken()
	s.mu.Lock()
	s.nonces[n] = s.now().Add(nonceLifetime)
	s.mu.Unlock()
	return map[string]string{"nonce": n}, nil
}

// revoke is /v2/oauth2 action=revoke, signed over action, client_id and a single-use nonce: it
// ends the app's access to the user, tokens and notification subscriptions alike.
func (s *Simulator) revoke(r *http.Request) (any, *apiError) {
	if err := s.signed(r, "action", "client_id", "nonce"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := r.Form.Get("nonce")
	exp, ok := s.nonces[n]
	delete(s.nonces, n)
	if !ok || !s.now().Before(exp) {
		return nil, &apiError{Status: statusInvalidSignature, Text: "The nonce is invalid or expired"}
	}
	a := s.byUser[r.Form.Get("userid")]
	if a == nil {
		return nil, &apiError{Status: statusBadUserID, Text: "The userid provided is absent, or incorrect"}
	}
	for k, t := range s.access {
		if t.acct == a {
			delete(s.access, k)
		}
	}
	for k, t := range s.refresh {
		if t.acct == a {
			delete(s.refresh, k)
		}
	}
	a.subs = nil
	s.log.Info("access revoked", "userid", a.userID)
	return struct{}{}, nil
}
