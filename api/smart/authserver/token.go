package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/store"
)

// oauthError is an RFC 6749 §5.2 error response. Description is shown to the client; err is
// logged only.
type oauthError struct {
	Status      int
	Code        string
	Description string
	err         error
}

func (e *oauthError) Error() string {
	if e.err != nil {
		return e.Code + ": " + e.Description + ": " + e.err.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *oauthError) Unwrap() error { return e.err }

func oerr(status int, code, desc string, err error) *oauthError {
	return &oauthError{Status: status, Code: code, Description: desc, err: err}
}

func invalidClient(err error) *oauthError {
	return oerr(http.StatusUnauthorized, "invalid_client", "client authentication failed", err)
}

func invalidGrant(desc string, err error) *oauthError {
	return oerr(http.StatusBadRequest, "invalid_grant", desc, err)
}

func invalidRequest(desc string) *oauthError {
	return oerr(http.StatusBadRequest, "invalid_request", desc, nil)
}

// busy is the answer when no argon2 slot came free in time (errBusy): 503 with Retry-After.
func busy(err error) *oauthError {
	return oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "busy, try again", err)
}

// TokenResponse is the token endpoint's answer (RFC 6749 §5.1 with SMART launch context).
type TokenResponse struct {
	AccessToken       string `json:"access_token"`
	TokenType         string `json:"token_type"`
	ExpiresIn         int64  `json:"expires_in"`
	Scope             string `json:"scope"`
	RefreshToken      string `json:"refresh_token,omitempty"`
	Patient           string `json:"patient,omitempty"`
	NeedPatientBanner *bool  `json:"need_patient_banner,omitempty"`
	// IDToken is the OpenID Connect id_token, issued when openid was granted to a user.
	IDToken string `json:"id_token,omitempty"`
}

// IDClaims are the claims of an OpenID Connect id_token
// (https://openid.net/specs/openid-connect-core-1_0.html#IDToken) with SMART's fhirUser
// (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
type IDClaims struct {
	jwt.RegisteredClaims
	Nonce    string `json:"nonce,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
}

// noStore sets the headers RFC 6749 §5.1 and SMART require on token responses.
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
}

// writeOAuthError answers with the RFC 6749 §5.2 JSON; 5xx details stay in the log.
func (s *Server) writeOAuthError(c *gin.Context, err error) {
	noStore(c)
	var oe *oauthError
	if !errors.As(err, &oe) {
		s.log.Error("authorization server error", "route", c.FullPath(), "err", err)
		oe = oerr(http.StatusInternalServerError, "server_error", "internal error", nil)
	} else {
		s.log.Info("oauth request rejected", "route", c.FullPath(), "error", oe.Code, "err", err)
	}
	if oe.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Basic realm="ohx", charset="UTF-8"`)
	}
	if oe.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	body := gin.H{"error": oe.Code}
	if oe.Description != "" {
		body["error_description"] = oe.Description
	}
	c.JSON(oe.Status, body)
}

// authenticateClient identifies the client of a token, introspection or revocation request:
// HTTP Basic (client_secret_basic), client_secret_post, a private_key_jwt assertion, or for
// public clients the bare client_id. A confidential or backend client must authenticate.
func (s *Server) authenticateClient(c *gin.Context) (Client, error) {
	ctx := c.Request.Context()
	form := c.Request.PostForm
	id, secret, basic := c.Request.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the client id and secret are form-urlencoded inside Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, invalidClient(errors.New("bad basic credentials encoding"))
		}
	} else if form.Has("client_secret") {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	hasAssertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	switch {
	case (basic || form.Has("client_secret")) && hasAssertion:
		return Client{}, invalidRequest("use exactly one client authentication method")
	case basic || form.Has("client_secret"):
		if form.Has("client_id") && form.Get("client_id") != id {
			return Client{}, invalidClient(errors.New("client_id differs from the authenticated client"))
		}
		cl, err := s.Client(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			if _, err := checkSecret(ctx, "", secret); err != nil { // the same work as for a real client
				return Client{}, busy(err)
			}
			return Client{}, invalidClient(err)
		}
		if err != nil {
			return Client{}, err
		}
		if cl.Type != ClientConfidential {
			return Client{}, invalidClient(errors.New("bad client secret"))
		}
		ok, err := checkSecret(ctx, cl.SecretHash, secret)
		if err != nil {
			return Client{}, busy(err)
		}
		if !ok {
			return Client{}, invalidClient(errors.New("bad client secret"))
		}
		return cl, nil
	case hasAssertion:
		if form.Get("client_assertion_type") != assertionType {
			return Client{}, invalidClient(errors.New("unsupported client_assertion_type"))
		}
		cl, err := s.verifyAssertion(ctx, form.Get("client_assertion"), form.Get("client_id"))
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return Client{}, err
			}
			return Client{}, invalidClient(err)
		}
		return cl, nil
	}
	id = form.Get("client_id")
	if id == "" {
		return Client{}, invalidClient(errors.New("no client authentication"))
	}
	cl, err := s.Client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Client{}, invalidClient(err)
	}
	if err != nil {
		return Client{}, err
	}
	if cl.Type != ClientPublic {
		return Client{}, invalidClient(errors.New("confidential client did not authenticate"))
	}
	return cl, nil
}

// token is POST /token.
func (s *Server) token(c *gin.Context) {
	if err := limitForm(c); err != nil {
		s.writeOAuthError(c, invalidRequest("malformed form body"))
		return
	}
	resp, err := s.tokenRequest(c)
	if err != nil {
		s.writeOAuthError(c, err)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, resp)
}

func (s *Server) tokenRequest(c *gin.Context) (*TokenResponse, error) {
	form := c.Request.PostForm
	for _, p := range []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id", "aud"} {
		if len(form[p]) > 1 {
			return nil, invalidRequest("parameter " + p + " repeated")
		}
	}
	ctx := c.Request.Context()
	var client Client
	var err error
	if form.Get("grant_type") == "refresh_token" && !clientIdentified(c) {
		// RFC 6749 §6: only confidential clients authenticate to refresh, and a public client
		// need not repeat its client_id (fhirclient does not): the refresh token names its client.
		client, err = s.refreshClient(ctx, form.Get("refresh_token"))
	} else {
		client, err = s.authenticateClient(c)
	}
	if err != nil {
		return nil, err
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		if client.Type == ClientBackend {
			return nil, oerr(http.StatusBadRequest, "unauthorized_client", "backend clients use client_credentials", nil)
		}
		return s.exchangeCode(ctx, client, form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier"))
	case "refresh_token":
		return s.refresh(ctx, client, form.Get("refresh_token"), form.Get("scope"))
	case "client_credentials":
		if client.Type != ClientBackend {
			return nil, oerr(http.StatusBadRequest, "unauthorized_client", "client_credentials needs a backend client with private_key_jwt", nil)
		}
		if form.Has("aud") && !s.validAudience(form.Get("aud")) {
			// Backend Services defines no aud parameter; one that is sent must name one of our
			// bases (the token lists both).
			return nil, invalidRequest(s.audienceError())
		}
		return s.clientCredentials(ctx, client, form.Get("scope"), form.Has("scope"))
	case "":
		return nil, invalidRequest("grant_type required")
	default:
		return nil, oerr(http.StatusBadRequest, "unsupported_grant_type", "unsupported grant_type "+gt, nil)
	}
}

var verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

func (s *Server) exchangeCode(ctx context.Context, client Client, code, redirectURI, verifier string) (*TokenResponse, error) {
	if code == "" {
		return nil, invalidRequest("code required")
	}
	id := hashID(code)
	var g grant
	if err := s.takeJSON(ctx, kindCode, id, &g); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		// RFC 6749 §4.1.2: a code used twice SHOULD revoke the tokens issued from it.
		var use codeUse
		if err := s.getJSON(ctx, kindCodeUse, id, &use); err == nil {
			s.log.Warn("authorization code replayed: revoking its tokens", "client_id", client.ID)
			if err := s.revokeJTI(ctx, use.JTI, time.Time{}); err != nil {
				return nil, err
			}
			if use.Family != "" {
				if err := s.revokeFamily(ctx, use.Family); err != nil && !errors.Is(err, store.ErrNotFound) {
					return nil, err
				}
			}
		}
		return nil, invalidGrant("invalid or used authorization code", nil)
	}
	if g.ClientID != client.ID {
		return nil, invalidGrant("the code was issued to another client", nil)
	}
	if redirectURI != g.RedirectURI {
		return nil, invalidGrant("redirect_uri does not match the authorization request", nil)
	}
	if !verifierRE.MatchString(verifier) {
		return nil, invalidGrant("code_verifier missing or malformed", nil)
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.Challenge)) != 1 {
		return nil, invalidGrant("PKCE verification failed", nil)
	}
	jti := randomToken(16)
	family := ""
	if smart.ParseScopes(g.Scope).Has("offline_access") {
		family = randomToken(16)
	}
	// Record what this code issues before issuing it, so a replay racing us still revokes it.
	if err := s.putJSON(ctx, kindCodeUse, id, codeUse{JTI: jti, Family: family},
		s.now().Add(max(s.cfg.AccessTokenTTL, s.cfg.RefreshTokenTTL))); err != nil {
		return nil, err
	}
	return s.issue(ctx, g, jti, family, s.cfg.AccessTokenTTL)
}

// issue signs an access token for g and, with family set, starts or continues a refresh family.
func (s *Server) issue(ctx context.Context, g grant, jti, family string, ttl time.Duration) (*TokenResponse, error) {
	now := s.now()
	exp := now.Add(ttl)
	at, err := s.keys.sign(&smart.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   g.Subject,
			Audience:  s.audiences(),
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		ClientID: g.ClientID,
		Scope:    g.Scope,
		Patient:  g.Patient,
		FHIRUser: g.FHIRUser,
	})
	if err != nil {
		return nil, err
	}
	resp := &TokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Scope: g.Scope, Patient: g.Patient}
	if g.Patient != "" {
		b := g.NeedBanner
		resp.NeedPatientBanner = &b
	}
	if sc := smart.ParseScopes(g.Scope); sc.Has("openid") && g.Subject != "" && g.Subject != g.ClientID {
		idc := &IDClaims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: g.Subject, Audience: jwt.ClaimStrings{g.ClientID},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now),
		}, Nonce: g.Nonce}
		if sc.Has("fhirUser") && g.FHIRUser != "" {
			// fhirUser is an absolute URL of the user's resource on our FHIR server.
			idc.FHIRUser = s.cfg.FHIRBaseURL + "/" + g.FHIRUser
		}
		if resp.IDToken, err = s.keys.signTyped(idc, "JWT"); err != nil {
			return nil, err
		}
	}
	if family == "" {
		return resp, nil
	}
	var f familyDoc
	err = s.getJSON(ctx, kindFamily, family, &f)
	switch {
	case errors.Is(err, store.ErrNotFound):
		f = familyDoc{ClientID: g.ClientID}
	case err != nil:
		return nil, err
	}
	refreshExp := now.Add(s.cfg.RefreshTokenTTL)
	f.Expires = refreshExp
	f.JTIs = slices.DeleteFunc(f.JTIs, func(j jtiExp) bool { return !j.Exp.After(now) })
	f.JTIs = append(f.JTIs, jtiExp{JTI: jti, Exp: exp})
	if err := s.putJSON(ctx, kindFamily, family, f, refreshExp); err != nil {
		return nil, err
	}
	rt := randomToken(32)
	g.RedirectURI, g.Challenge = "", ""
	if err := s.putJSON(ctx, kindRefresh, hashID(rt), refreshDoc{grant: g, Family: family}, refreshExp); err != nil {
		return nil, err
	}
	resp.RefreshToken = rt
	return resp, nil
}

// refresh rotates a refresh token (RFC 9700 §4.14.2,
// https://www.rfc-editor.org/rfc/rfc9700#section-4.14.2): the presented token is consumed, a
// new one issued in the same family; presenting a consumed token again revokes the whole family
// and its access tokens.
func (s *Server) refresh(ctx context.Context, client Client, token, scope string) (*TokenResponse, error) {
	if token == "" {
		return nil, invalidRequest("refresh_token required")
	}
	id := hashID(token)
	var rd refreshDoc
	if err := s.takeJSON(ctx, kindRefresh, id, &rd); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, s.unknownRefresh(ctx, id, client.ID)
	}
	var f familyDoc
	if err := s.getJSON(ctx, kindFamily, rd.Family, &f); err != nil || f.Revoked {
		return nil, invalidGrant("invalid refresh token", err)
	}
	if err := s.putJSON(ctx, kindRotated, id, rd.Family, f.Expires); err != nil {
		return nil, err
	}
	if rd.ClientID != client.ID {
		// Someone else's token: burn the family, it has leaked.
		if err := s.revokeFamily(ctx, rd.Family); err != nil {
			return nil, err
		}
		return nil, invalidGrant("invalid refresh token", nil)
	}
	if _, err := s.Client(ctx, client.ID); err != nil {
		return nil, invalidGrant("client no longer registered", err)
	}
	g := rd.grant
	if scope != "" {
		// RFC 6749 §6: the new scope must not exceed the original grant.
		granted := strings.Fields(g.Scope)
		for f := range strings.FieldsSeq(scope) {
			if !slices.Contains(granted, f) {
				return nil, oerr(http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant", nil)
			}
		}
		g.Scope = strings.Join(strings.Fields(scope), " ")
		if !smart.ParseScopes(g.Scope).Has("offline_access") {
			g.Scope += " offline_access" // the family continues; the client asked for less access only
		}
	}
	return s.issue(ctx, g, randomToken(16), rd.Family, s.cfg.AccessTokenTTL)
}

// unknownRefresh is the answer to a refresh token that is not (or no longer) valid. A rotated
// token presented again has leaked: its whole family is revoked (RFC 9700 §4.14.2), whoever
// presents it.
func (s *Server) unknownRefresh(ctx context.Context, id, clientID string) error {
	var family string
	if err := s.getJSON(ctx, kindRotated, id, &family); err == nil {
		s.log.Warn("rotated refresh token reused: revoking its family", "client_id", clientID)
		if err := s.revokeFamily(ctx, family); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return invalidGrant("invalid refresh token", nil)
}

// clientIdentified reports whether a token request says who its client is: HTTP Basic, a
// client_secret, a client assertion or a client_id.
func clientIdentified(c *gin.Context) bool {
	form := c.Request.PostForm
	_, _, basic := c.Request.BasicAuth()
	return basic || form.Has("client_id") || form.Has("client_secret") || form.Has("client_assertion") || form.Has("client_assertion_type")
}

// refreshClient finds the client of a refresh token presented without client identification.
// The token is bound to the client it was issued to (refreshDoc.ClientID), so that client is
// the caller, provided it is a public client: a confidential client's refresh token still needs
// its client authentication (invalid_client, the token stays usable). The token is only looked
// at here; refresh consumes it. An unknown token is invalid_grant, and a rotated one revokes its
// family, exactly as with client identification.
func (s *Server) refreshClient(ctx context.Context, token string) (Client, error) {
	if token == "" {
		return Client{}, invalidRequest("refresh_token required")
	}
	id := hashID(token)
	var rd refreshDoc
	if err := s.getJSON(ctx, kindRefresh, id, &rd); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return Client{}, err
		}
		return Client{}, s.unknownRefresh(ctx, id, "")
	}
	cl, err := s.Client(ctx, rd.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return Client{}, invalidGrant("client no longer registered", err)
	}
	if err != nil {
		return Client{}, err
	}
	if cl.Type != ClientPublic {
		return Client{}, invalidClient(errors.New("confidential client did not authenticate"))
	}
	return cl, nil
}

// clientCredentials is SMART Backend Services: system scopes (and smart.AdminScope) only, no
// refresh token, ≤ 300 s.
func (s *Server) clientCredentials(ctx context.Context, client Client, scope string, hasScope bool) (*TokenResponse, error) {
	if !hasScope {
		scope = strings.Join(client.Scopes, " ")
	}
	var keep []string
	for _, f := range grantScopes(scope, client.Scopes) {
		// The operator API's scope is a backend's too (an operator's script), granted only to
		// a client registered with it.
		if strings.HasPrefix(f, "system/") || f == smart.AdminScope {
			keep = append(keep, f)
		}
	}
	if len(keep) == 0 {
		return nil, oerr(http.StatusBadRequest, "invalid_scope", "no requested scope is allowed for this client", nil)
	}
	g := grant{ClientID: client.ID, Subject: client.ID, Scope: strings.Join(keep, " ")}
	return s.issue(ctx, g, randomToken(16), "", s.cfg.BackendTokenTTL)
}

// IssueBackendToken runs the client_credentials grant in process for a signed client
// assertion, exactly as the token endpoint would (used by `ohx token`). Errors carry the
// OAuth error code in their text.
func (s *Server) IssueBackendToken(ctx context.Context, assertion, scope string) (*TokenResponse, error) {
	client, err := s.verifyAssertion(ctx, assertion, "")
	if err != nil {
		return nil, invalidClient(err)
	}
	return s.clientCredentials(ctx, client, scope, scope != "")
}

// grantScopes keeps the requested scopes the client is allowed: listed verbatim, or a resource
// scope covered by an allowed one (same context, type or *, a subset of the permissions, and
// either no query in the allowed scope or the same query).
func grantScopes(requested string, allowed []string) []string {
	allowedRes := smart.ParseScopes(strings.Join(allowed, " "))
	var out []string
	for f := range strings.FieldsSeq(requested) {
		if slices.Contains(out, f) {
			continue
		}
		if slices.Contains(allowed, f) {
			out = append(out, f)
			continue
		}
		req, ok := smart.ParseScope(f)
		if !ok {
			continue
		}
		for _, a := range allowedRes.Resource {
			if covers(a, req) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

func covers(a, r smart.Scope) bool {
	if a.Context != r.Context || (a.Resource != "*" && a.Resource != r.Resource) {
		return false
	}
	for _, p := range r.Perms {
		if !strings.ContainsRune(a.Perms, p) {
			return false
		}
	}
	return len(a.Query) == 0 || a.Query.Encode() == r.Query.Encode()
}
