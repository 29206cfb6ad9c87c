package fitbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// defaultExpiresIn is the documented access-token lifetime (8 h), used when an answer omits
// expires_in (a zero Expiry would mean "never expires" to x/oauth2).
const defaultExpiresIn = 8 * time.Hour

// AuthCodeURL returns the consent URL
// (https://dev.fitbit.com/build/reference/web-api/authorization/authorize/): response_type=code,
// client_id, redirect_uri, the scopes space-separated, state and the PKCE S256 challenge.
func (c *Client) AuthCodeURL(state, codeChallenge string) string {
	u, _ := url.Parse(c.cfg.AuthURL) // validated in New
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.cfg.ClientID)
	q.Set("redirect_uri", c.cfg.RedirectURL)
	q.Set("scope", strings.Join(c.cfg.Scopes, " "))
	q.Set("state", state)
	if codeChallenge != "" {
		q.Set("code_challenge", codeChallenge)
		q.Set("code_challenge_method", "S256")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// tokenAnswer is the token endpoint's answer
// (https://dev.fitbit.com/build/reference/web-api/authorization/oauth2-token/).
type tokenAnswer struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	Scope        string      `json:"scope"`
	TokenType    string      `json:"token_type"`
	UserID       string      `json:"user_id"`
}

// Exchange trades an authorization code (valid 10 min) and its PKCE verifier for tokens: POST
// /oauth2/token grant_type=authorization_code with HTTP Basic client authentication. The Grant's
// UserID is the answer's user_id (the encoded Fitbit id). Errors are *providers.UpstreamError; an
// invalid code is permanent.
func (c *Client) Exchange(ctx context.Context, code, codeVerifier string) (*providers.Grant, error) {
	form := url.Values{
		"grant_type":   {"authorization_code"},
		"code":         {code},
		"redirect_uri": {c.cfg.RedirectURL},
		"client_id":    {c.cfg.ClientID},
	}
	if codeVerifier != "" {
		form.Set("code_verifier", codeVerifier)
	}
	ta, err := c.token(ctx, "", form, c.classifyToken(false))
	if err != nil {
		return nil, err
	}
	if ta.RefreshToken == "" || ta.UserID == "" {
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("token answer without refresh token or user_id"))
	}
	scopes := strings.Fields(ta.Scope)
	if len(scopes) > 0 && !slices.Contains(scopes, "profile") {
		// Fitbit's consent page lets the user untick scopes; without profile there is no time
		// zone, and without it no local time can become an instant.
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("the profile scope (the user's time zone) was not granted"))
	}
	return &providers.Grant{Token: c.oauthToken(ta), UserID: ta.UserID, Scopes: scopes}, nil
}

// Refresh uses t.RefreshToken (grant_type=refresh_token, Basic client authentication). Fitbit
// refresh tokens are single-use: the answer carries the new pair and the old refresh token is dead,
// so the caller (providers.Vault) persists the result before using it. invalid_grant or
// invalid_token returns an *UpstreamError of kind auth matching providers.ErrConsentRevoked; an
// answer without a new refresh token is transient (keep the old pair).
func (c *Client) Refresh(ctx context.Context, t *oauth2.Token) (*oauth2.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, upstream(providers.KindAuth, 0, fmt.Errorf("%w: no refresh token", providers.ErrConsentRevoked))
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.RefreshToken}}
	ta, err := c.token(ctx, tokenUser(t), form, c.classifyToken(true))
	if err != nil {
		return nil, err
	}
	if ta.RefreshToken == "" {
		return nil, upstream(providers.KindTransient, http.StatusOK, errors.New("refresh answer without a new refresh token"))
	}
	return c.oauthToken(ta), nil
}

// token posts form to the token endpoint.
func (c *Client) token(ctx context.Context, user string, form url.Values, classify func(int, http.Header, []byte) error) (*tokenAnswer, error) {
	a, err := c.do(ctx, request{
		user:     user,
		endpoint: "oauth2/token",
		method:   http.MethodPost,
		path:     "/oauth2/token",
		form:     form,
		params:   url.Values{"grant_type": {form.Get("grant_type")}},
		basic:    true,
		classify: classify,
	})
	if err != nil {
		return nil, err
	}
	var ta tokenAnswer
	if err := decode(a.body, &ta, "token"); err != nil {
		return nil, err
	}
	if ta.AccessToken == "" {
		return nil, upstream(providers.KindTransient, http.StatusOK, errors.New("token answer without an access token"))
	}
	return &ta, nil
}

func (c *Client) oauthToken(ta *tokenAnswer) *oauth2.Token {
	exp := defaultExpiresIn
	if n, err := ta.ExpiresIn.Int64(); err == nil && n > 0 {
		exp = time.Duration(n) * time.Second
	}
	tok := &oauth2.Token{
		AccessToken:  ta.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: ta.RefreshToken,
		Expiry:       c.now().Add(exp), // the client's clock, as for every other time it takes
		ExpiresIn:    int64(exp / time.Second),
	}
	extra := map[string]any{}
	if ta.UserID != "" {
		extra["user_id"] = ta.UserID
	}
	if ta.Scope != "" {
		extra["scope"] = ta.Scope
	}
	return tok.WithExtra(extra)
}

// tokenUser is the Fitbit user id carried in t.Extra("user_id"), "" when absent (tokens loaded
// from the vault carry no extras).
func tokenUser(t *oauth2.Token) string {
	if s, ok := t.Extra("user_id").(string); ok {
		return s
	}
	return ""
}

// oauthErrors is the error body of the OAuth endpoints: Fitbit's {"errors":[{"errorType":…}]}
// (https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/) or the
// RFC 6749 §5.2 {"error":…}.
type oauthErrors struct {
	Errors []struct {
		ErrorType string `json:"errorType"`
	} `json:"errors"`
	Error string `json:"error"`
}

func (e oauthErrors) has(types ...string) bool {
	for _, t := range types {
		if e.Error == t {
			return true
		}
		for _, x := range e.Errors {
			if x.ErrorType == t {
				return true
			}
		}
	}
	return false
}

// classifyToken classifies token-endpoint answers: with refresh set, invalid_grant and
// invalid_token (a dead or reused single-use refresh token) are a revoked consent; invalid_client
// and unauthorized_client are our configuration (permanent, never a patient's re-consent); other
// failures by HTTP status.
func (c *Client) classifyToken(refresh bool) func(int, http.Header, []byte) error {
	return func(status int, header http.Header, body []byte) error {
		err := c.classifyHTTP(status, header, body)
		if err == nil || status < 400 || status >= 500 || status == http.StatusTooManyRequests {
			return err
		}
		var oe oauthErrors
		_ = json.Unmarshal(body, &oe) // a body we cannot read keeps the HTTP classification
		switch {
		case refresh && oe.has("invalid_grant", "invalid_token", "expired_token"):
			return &providers.UpstreamError{Provider: Name, Kind: providers.KindAuth, Status: status,
				Err: fmt.Errorf("%w: fitbit refused the refresh token", providers.ErrConsentRevoked)}
		case oe.has("invalid_client", "unauthorized_client"):
			return upstream(providers.KindPermanent, status, errors.New("fitbit refused the client credentials"))
		case !refresh && oe.has("invalid_grant"):
			return upstream(providers.KindPermanent, status, errors.New("fitbit refused the authorization code"))
		}
		return err
	}
}

// Revoke revokes the user's tokens (POST /oauth2/revoke token=…, Basic client authentication,
// https://dev.fitbit.com/build/reference/web-api/authorization/revoke-token/). Revoking the refresh
// token revokes the whole grant; the access token is used when there is no refresh token.
func (c *Client) Revoke(ctx context.Context, user string, t *oauth2.Token) error {
	if t == nil || (t.RefreshToken == "" && t.AccessToken == "") {
		return upstream(providers.KindPermanent, 0, errors.New("no token to revoke"))
	}
	tok := t.RefreshToken
	if tok == "" {
		tok = t.AccessToken
	}
	_, err := c.do(ctx, request{
		user:     user,
		endpoint: "oauth2/revoke",
		method:   http.MethodPost,
		path:     "/oauth2/revoke",
		form:     url.Values{"token": {tok}},
		params:   url.Values{},
		basic:    true,
	})
	return err
}
