package googlehealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// defaultExpiresIn is the access-token lifetime Google documents (about an hour,
// https://developers.google.com/identity/protocols/oauth2/web-server), used when an answer
// omits expires_in (a zero Expiry would mean "never expires" to x/oauth2).
const defaultExpiresIn = time.Hour

// userIDRE is the shape of healthUserId and legacyUserId: 1–63 letters, digits and hyphens
// (https://developers.google.com/health/reference/rest/v4/users/getIdentity).
var userIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,63}$`)

// AuthCodeURL returns Google's consent URL for the web-server flow
// (https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient):
// response_type=code, client_id, redirect_uri, the read-only scopes the enabled kinds need
// (space-separated), state, PKCE S256 (code_challenge, code_challenge_method), access_type=offline
// (a refresh token), prompt=consent (a refresh token again when the user reconnects) and
// include_granted_scopes=true.
func (c *Client) AuthCodeURL(state, codeChallenge string) string {
	oc := oauth2.Config{
		ClientID:    c.cfg.ClientID,
		RedirectURL: c.cfg.RedirectURL,
		Scopes:      c.scopes(),
		Endpoint:    oauth2.Endpoint{AuthURL: c.cfg.AuthURL, TokenURL: c.cfg.TokenURL},
	}
	opts := []oauth2.AuthCodeOption{
		oauth2.AccessTypeOffline,
		oauth2.SetAuthURLParam("prompt", "consent"),
		oauth2.SetAuthURLParam("include_granted_scopes", "true"),
	}
	if codeChallenge != "" {
		opts = append(opts, oauth2.SetAuthURLParam("code_challenge", codeChallenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	}
	return oc.AuthCodeURL(state, opts...)
}

// tokenAnswer is the token endpoint's JSON answer (RFC 6749 §5.1).
type tokenAnswer struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	Scope        string      `json:"scope"`
	TokenType    string      `json:"token_type"`
}

// tokenError is the token endpoint's error answer (RFC 6749 §5.2).
type tokenError struct {
	Error string `json:"error"`
}

// oauthError is the cause of a refused token request: the HTTP status and the RFC 6749 error
// code, never the description.
type oauthError struct {
	HTTP int
	Code string
}

func (e *oauthError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("google oauth http %d", e.HTTP)
	}
	return fmt.Sprintf("google oauth http %d: %s", e.HTTP, e.Code)
}

// oauthCodeRE keeps only RFC 6749 error codes ("invalid_grant").
var oauthCodeRE = regexp.MustCompile(`^[a-z_]{1,40}$`)

// classifyToken classifies a token endpoint answer. invalid_grant (400, or 401 from some
// proxies) on a refresh means the refresh token was revoked or expired: kind auth wrapping
// providers.ErrConsentRevoked; on a code exchange it means a bad or reused code: permanent.
// 429 is throttled (Retry-After), 408 and 5xx transient, anything else permanent (invalid_client
// is our configuration, which no retry fixes).
func classifyToken(refresh bool) func(int, http.Header, []byte) error {
	return func(status int, header http.Header, body []byte) error {
		if status >= 200 && status < 300 {
			return nil
		}
		var te tokenError
		_ = json.Unmarshal(body, &te)
		oe := &oauthError{HTTP: status}
		if oauthCodeRE.MatchString(te.Error) {
			oe.Code = te.Error
		}
		switch {
		case refresh && oe.Code == "invalid_grant" && (status == http.StatusBadRequest || status == http.StatusUnauthorized):
			return upstream(providers.KindAuth, status, fmt.Errorf("%w: %w", providers.ErrConsentRevoked, oe))
		case status == http.StatusTooManyRequests:
			e := upstream(providers.KindThrottled, status, oe)
			e.RetryAfter = providers.RetryAfter(header, time.Now())
			return e
		case status == http.StatusRequestTimeout || status >= 500:
			e := upstream(providers.KindTransient, status, oe)
			e.RetryAfter = providers.RetryAfter(header, time.Now())
			return e
		}
		return upstream(providers.KindPermanent, status, oe)
	}
}

// postForm sends a form to an OAuth endpoint through the caller. Client authentication is
// client_id and client_secret in the body, as Google documents for web-server apps
// (https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code).
func (c *Client) postForm(ctx context.Context, user, endpoint, target string, form url.Values, classify func(int, http.Header, []byte) error) ([]byte, error) {
	encoded := form.Encode()
	return c.caller.Call(ctx, providers.Call{
		User:     user,
		Endpoint: endpoint,
		Params:   url.Values{"grant_type": {form.Get("grant_type")}}, // never codes, tokens or secrets
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(encoded))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "application/json")
			return req, nil
		},
		Classify: classify,
	})
}

// token builds the oauth2.Token of an answer; refresh is kept when the answer has none.
func (c *Client) token(ta tokenAnswer, refresh string) *oauth2.Token {
	exp := defaultExpiresIn
	if n, err := ta.ExpiresIn.Int64(); err == nil && n > 0 {
		exp = time.Duration(n) * time.Second
	}
	if ta.RefreshToken != "" {
		refresh = ta.RefreshToken
	}
	tok := &oauth2.Token{
		AccessToken:  ta.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: refresh,
		Expiry:       c.now().Add(exp),
		ExpiresIn:    int64(exp / time.Second),
	}
	if ta.Scope != "" {
		tok = tok.WithExtra(map[string]any{"scope": ta.Scope})
	}
	return tok
}

// identity is GET /v4/users/me/identity
// (https://developers.google.com/health/reference/rest/v4/users/getIdentity).
type identity struct {
	Name         string `json:"name"`
	HealthUserID string `json:"healthUserId"`
	LegacyUserID string `json:"legacyUserId"`
}

// Exchange trades an authorization code (and the PKCE verifier) for tokens at the token endpoint,
// then reads the user's identity with the new access token: Grant.UserID is the healthUserId,
// Scopes the granted scopes, and Predecessor the legacy Fitbit account ("fitbit", legacyUserId)
// when Google reports one, so that a patient migrated from the legacy Fitbit adapter keeps one
// Observation per measurement. Errors are *providers.UpstreamError: a bad code is permanent.
func (c *Client) Exchange(ctx context.Context, code, codeVerifier string) (*providers.Grant, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.cfg.RedirectURL},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
	}
	if codeVerifier != "" {
		form.Set("code_verifier", codeVerifier)
	}
	body, err := c.postForm(ctx, "", "oauth2/token", c.cfg.TokenURL, form, classifyToken(false))
	if err != nil {
		return nil, err
	}
	var ta tokenAnswer
	if err := decode(body, &ta, "token"); err != nil {
		return nil, err
	}
	if ta.AccessToken == "" || ta.RefreshToken == "" {
		// access_type=offline and prompt=consent always yield a refresh token; without one the
		// connection could not outlive the hour.
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("token answer without access token or refresh token"))
	}
	tok := c.token(ta, "")
	body, err = c.do(ctx, apiRequest{endpoint: "users/getIdentity", path: "/v4/users/me/identity", ts: oauth2.StaticTokenSource(tok)})
	if err != nil {
		return nil, err
	}
	var id identity
	if err := decode(body, &id, "identity"); err != nil {
		return nil, err
	}
	if !userIDRE.MatchString(id.HealthUserID) {
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("identity without a valid healthUserId"))
	}
	g := &providers.Grant{Token: tok, UserID: id.HealthUserID, Scopes: strings.Fields(ta.Scope)}
	switch {
	case id.LegacyUserID == "":
	case userIDRE.MatchString(id.LegacyUserID):
		g.Predecessor = &providers.Account{Provider: "fitbit", User: id.LegacyUserID}
	default:
		c.log.Warn("identity with a malformed legacyUserId, no predecessor recorded")
	}
	return g, nil
}

// Refresh uses t.RefreshToken (grant_type=refresh_token). Google refresh tokens normally do not
// rotate: an answer without refresh_token keeps the one sent; a new one, when Google issues it,
// is returned (the caller persists it before use). invalid_grant returns an *UpstreamError of
// kind auth matching providers.ErrConsentRevoked; other failures are classified as in
// classifyToken.
func (c *Client) Refresh(ctx context.Context, t *oauth2.Token) (*oauth2.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, upstream(providers.KindAuth, 0, fmt.Errorf("%w: no refresh token", providers.ErrConsentRevoked))
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {t.RefreshToken},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
	}
	body, err := c.postForm(ctx, "", "oauth2/refresh", c.cfg.TokenURL, form, classifyToken(true))
	if err != nil {
		return nil, err
	}
	var ta tokenAnswer
	if err := decode(body, &ta, "token"); err != nil {
		return nil, err
	}
	if ta.AccessToken == "" {
		return nil, upstream(providers.KindTransient, http.StatusOK, errors.New("refresh answer without an access token"))
	}
	return c.token(ta, t.RefreshToken), nil
}

// Revoke revokes the grant at Google's revoke endpoint
// (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke): the refresh
// token when there is one (which revokes the whole grant), else the access token. A token Google
// already considers invalid (400 invalid_token) counts as revoked.
func (c *Client) Revoke(ctx context.Context, user string, t *oauth2.Token) error {
	if t == nil || (t.RefreshToken == "" && t.AccessToken == "") {
		return upstream(providers.KindPermanent, 0, errors.New("no token to revoke"))
	}
	tok := t.RefreshToken
	if tok == "" {
		tok = t.AccessToken
	}
	base := classifyToken(false)
	_, err := c.postForm(ctx, user, "oauth2/revoke", c.cfg.RevokeURL, url.Values{"token": {tok}},
		func(status int, header http.Header, body []byte) error {
			var te tokenError
			if status == http.StatusBadRequest && json.Unmarshal(body, &te) == nil && te.Error == "invalid_token" {
				return nil
			}
			return base(status, header, body)
		})
	return err
}
