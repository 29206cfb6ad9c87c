package withings

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// defaultExpiresIn is the documented access-token lifetime, used when an answer omits expires_in
// (an Expiry of zero would mean "never expires" to x/oauth2).
const defaultExpiresIn = 3 * time.Hour

// AuthCodeURL returns the authorize2 consent URL: response_type=code, client_id, the scopes
// comma-separated, redirect_uri and state. Withings has no PKCE, so codeChallenge is ignored.
func (c *Client) AuthCodeURL(state, codeChallenge string) string {
	_ = codeChallenge
	u, _ := url.Parse(c.cfg.AuthURL) // validated in New
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.cfg.ClientID)
	q.Set("scope", strings.Join(c.cfg.Scopes, ","))
	q.Set("redirect_uri", c.cfg.RedirectURL)
	q.Set("state", state)
	// The documented form keeps the scope commas literal; they are legal in a query.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "%2C", ",")
	return u.String()
}

// tokenBody is the body of a successful requesttoken answer.
type tokenBody struct {
	UserID       flexString `json:"userid"`
	AccessToken  string     `json:"access_token"`
	RefreshToken string     `json:"refresh_token"`
	ExpiresIn    flexInt    `json:"expires_in"`
	Scope        string     `json:"scope"`
	TokenType    string     `json:"token_type"`
}

// Exchange trades an authorization code (valid 30 s) for tokens through POST /v2/oauth2
// action=requesttoken grant_type=authorization_code. The vendor user id is returned as a string
// and also stored in the token's Extra("userid") (Revoke needs it). Errors are
// *providers.UpstreamError: an invalid or expired code is permanent.
func (c *Client) Exchange(ctx context.Context, code, codeVerifier string) (*providers.Grant, error) {
	_ = codeVerifier
	form := url.Values{
		"action":        {"requesttoken"},
		"grant_type":    {"authorization_code"},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"code":          {code},
		"redirect_uri":  {c.cfg.RedirectURL},
	}
	body, err := c.do(ctx, request{
		endpoint: "oauth2/requesttoken",
		path:     "/v2/oauth2",
		form:     form,
		params:   url.Values{"action": {"requesttoken"}, "grant_type": {"authorization_code"}},
	})
	if err != nil {
		return nil, err
	}
	var tb tokenBody
	if err := c.decodeBody(body, &tb, "requesttoken"); err != nil {
		return nil, err
	}
	if tb.AccessToken == "" || tb.RefreshToken == "" || tb.UserID == "" {
		return nil, c.upstream(providers.KindPermanent, http.StatusOK, errors.New("token answer without access token, refresh token or userid"))
	}
	tok := c.token(tb, string(tb.UserID))
	var scopes []string
	if tb.Scope != "" {
		scopes = strings.Split(tb.Scope, ",")
	}
	return &providers.Grant{Token: tok, UserID: string(tb.UserID), Scopes: scopes}, nil
}

// Refresh uses t.RefreshToken with action=requesttoken grant_type=refresh_token. Withings rotates
// the refresh token on every refresh; the previous one stays valid until the new access token is
// first used or for 8 h (https://developer.withings.com/developer-guide/v3/integration-guide/public-health-data-api/get-access/access-and-refresh-tokens-no-recover), so the caller must persist the result before using it.
// A definitive refusal — an auth status (100–102, 200, 401, 214, 277), or 503 "Invalid Params" naming
// the refresh token, which is what Withings answers for an unknown, revoked or expired refresh
// token — returns an *UpstreamError of kind auth matching providers.ErrConsentRevoked. An answer
// without a new refresh token is a transient error (keep the old pair).
func (c *Client) Refresh(ctx context.Context, t *oauth2.Token) (*oauth2.Token, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, c.upstream(providers.KindAuth, 0, fmt.Errorf("%w: no refresh token", providers.ErrConsentRevoked))
	}
	user := tokenUserID(t)
	form := url.Values{
		"action":        {"requesttoken"},
		"grant_type":    {"refresh_token"},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"refresh_token": {t.RefreshToken},
	}
	body, err := c.do(ctx, request{
		user:     user,
		endpoint: "oauth2/requesttoken",
		path:     "/v2/oauth2",
		form:     form,
		params:   url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}},
		classify: c.classifyRefresh,
	})
	if err != nil {
		return nil, c.refusal(err)
	}
	var tb tokenBody
	if err := c.decodeBody(body, &tb, "requesttoken"); err != nil {
		return nil, err
	}
	if tb.AccessToken == "" || tb.RefreshToken == "" {
		return nil, c.upstream(providers.KindTransient, http.StatusOK, errors.New("refresh answer without a new token pair"))
	}
	if tb.UserID != "" {
		user = string(tb.UserID)
	}
	return c.token(tb, user), nil
}

// classifyRefresh classifies like every service, then turns a definitive refusal into an error
// matching ErrConsentRevoked (see Refresh).
func (c *Client) classifyRefresh(status int, header http.Header, body []byte) error {
	return c.refusal(c.classify(status, header, body))
}

func (c *Client) refusal(err error) error {
	var ue *providers.UpstreamError
	if err == nil || !errors.As(err, &ue) || errors.Is(err, providers.ErrConsentRevoked) {
		return err
	}
	var se *statusError
	if !errors.As(ue.Err, &se) {
		return err
	}
	if authStatuses[se.Status] ||
		se.Status == statusInvalidParams && strings.Contains(strings.ToLower(se.Text), "refresh_token") {
		return &providers.UpstreamError{Provider: Name, Kind: providers.KindAuth, Status: se.Status,
			Err: fmt.Errorf("%w: %w", providers.ErrConsentRevoked, se)}
	}
	return err
}

func (c *Client) token(tb tokenBody, user string) *oauth2.Token {
	exp := time.Duration(tb.ExpiresIn.Int()) * time.Second
	if exp <= 0 {
		exp = defaultExpiresIn
	}
	tok := &oauth2.Token{
		AccessToken:  tb.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: tb.RefreshToken,
		Expiry:       c.now().Add(exp),
		ExpiresIn:    int64(exp / time.Second),
	}
	extra := map[string]any{}
	if user != "" {
		extra["userid"] = user
	}
	if tb.Scope != "" {
		extra["scope"] = tb.Scope
	}
	return tok.WithExtra(extra)
}

// tokenUserID is the Withings user id carried in t.Extra("userid") ("" when absent).
func tokenUserID(t *oauth2.Token) string {
	if t == nil {
		return ""
	}
	switch v := t.Extra("userid").(type) {
	case string:
		return v
	case float64:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	}
	return ""
}

// Revoke revokes the app's access to the user's data (POST /v2/oauth2 action=revoke), which also
// removes the user's notification subscriptions. It is signed (Signature v2 in
// https://developer.withings.com/api-reference): a single-use nonce from
// /v2/signature action=getnonce, then HMAC-SHA256 under the client secret over the values of
// action, client_id and nonce sorted by name. Withings identifies the user by userid, which is taken
// from t.Extra("userid") (set by Exchange and Refresh); a token without it is a permanent error.
func (c *Client) Revoke(ctx context.Context, user string, t *oauth2.Token) error {
	if user == "" {
		user = tokenUserID(t)
	}
	if user == "" {
		return c.upstream(providers.KindPermanent, 0, errors.New("token carries no withings userid"))
	}
	nonce, err := c.nonce(ctx)
	if err != nil {
		return err
	}
	form := url.Values{
		"action":    {"revoke"},
		"client_id": {c.cfg.ClientID},
		"nonce":     {nonce},
		"userid":    {user},
	}
	form.Set("signature", c.sign(form, "action", "client_id", "nonce"))
	_, err = c.do(ctx, request{
		user:     user,
		endpoint: "oauth2/revoke",
		path:     "/v2/oauth2",
		form:     form,
		params:   url.Values{"action": {"revoke"}},
	})
	return err
}

// nonce gets a single-use nonce (valid 30 min) for a signed call.
func (c *Client) nonce(ctx context.Context) (string, error) {
	form := url.Values{
		"action":    {"getnonce"},
		"client_id": {c.cfg.ClientID},
		"timestamp": {strconv.FormatInt(c.now().Unix(), 10)},
	}
	form.Set("signature", c.sign(form, "action", "client_id", "timestamp"))
	body, err := c.do(ctx, request{
		endpoint: "signature/getnonce",
		path:     "/v2/signature",
		form:     form,
		params:   url.Values{"action": {"getnonce"}},
	})
	if err != nil {
		return "", err
	}
	var nb struct {
		Nonce string `json:"nonce"`
	}
	if err := c.decodeBody(body, &nb, "getnonce"); err != nil {
		return "", err
	}
	if nb.Nonce == "" {
		return "", c.upstream(providers.KindPermanent, http.StatusOK, errors.New("getnonce answer without a nonce"))
	}
	return nb.Nonce, nil
}

// sign is the Withings request signature: the values of the named parameters, sorted by name,
// joined with commas, HMAC-SHA256 under the client secret, hex-encoded.
func (c *Client) sign(form url.Values, names ...string) string {
	names = append([]string(nil), names...)
	sort.Strings(names)
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = form.Get(n)
	}
	m := hmac.New(sha256.New, []byte(c.cfg.ClientSecret))
	m.Write([]byte(strings.Join(vals, ",")))
	return hex.EncodeToString(m.Sum(nil))
}
