package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/store"
)

// parseAccessToken verifies one of our access tokens: signature by kid, typ at+jwt, iss, aud,
// exp/nbf/iat with one minute of leeway. With expiredOK the time checks are skipped (revocation).
func (s *Server) parseAccessToken(raw string, expiredOK bool) (*smart.Claims, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods(smart.AllowedAlgs), jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(s.audiences()...), jwt.WithLeeway(time.Minute), jwt.WithTimeFunc(s.now), jwt.WithExpirationRequired()}
	if expiredOK {
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	var c smart.Claims
	t, err := jwt.ParseWithClaims(raw, &c, s.Keyfunc(), opts...)
	if err != nil {
		return nil, err
	}
	if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, smart.TokenType) && !strings.EqualFold(typ, "application/"+smart.TokenType) {
		return nil, errors.New("not an access token (typ)")
	}
	return &c, nil
}

// introspect is POST /introspect (RFC 7662 with SMART's launch context). The caller must be an
// authenticated confidential or backend client (introspectionAllowed).
func (s *Server) introspect(c *gin.Context) {
	if err := limitForm(c); err != nil {
		s.writeOAuthError(c, invalidRequest("malformed form body"))
		return
	}
	if err := s.introspectionAllowed(c); err != nil {
		s.writeOAuthError(c, err)
		return
	}
	ctx := c.Request.Context()
	tok := c.Request.PostForm.Get("token")
	noStore(c)
	if tok == "" {
		s.writeOAuthError(c, invalidRequest("token required"))
		return
	}
	inactive := gin.H{"active": false}
	if strings.Count(tok, ".") == 2 {
		claims, err := s.parseAccessToken(tok, false)
		if err != nil || s.Revoked(ctx, claims.ID) {
			c.JSON(http.StatusOK, inactive)
			return
		}
		out := gin.H{"active": true, "token_type": "Bearer", "scope": claims.Scope, "client_id": claims.ClientID,
			"exp": claims.ExpiresAt.Unix(), "iss": claims.Issuer, "sub": claims.Subject, "aud": []string(claims.Audience), "jti": claims.ID}
		if claims.IssuedAt != nil {
			out["iat"] = claims.IssuedAt.Unix()
		}
		if claims.Patient != "" {
			out["patient"] = claims.Patient
		}
		if claims.FHIRUser != "" {
			out["fhirUser"] = claims.FHIRUser
		}
		c.JSON(http.StatusOK, out)
		return
	}
	var rd refreshDoc
	if err := s.getJSON(ctx, kindRefresh, hashID(tok), &rd); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.writeOAuthError(c, err)
			return
		}
		c.JSON(http.StatusOK, inactive)
		return
	}
	var f familyDoc
	if err := s.getJSON(ctx, kindFamily, rd.Family, &f); err != nil || f.Revoked {
		c.JSON(http.StatusOK, inactive)
		return
	}
	out := gin.H{"active": true, "token_type": "refresh_token", "scope": rd.Scope, "client_id": rd.ClientID,
		"exp": f.Expires.Unix(), "iss": s.cfg.Issuer, "sub": rd.Subject}
	if rd.Patient != "" {
		out["patient"] = rd.Patient
	}
	if rd.FHIRUser != "" {
		out["fhirUser"] = rd.FHIRUser
	}
	c.JSON(http.StatusOK, out)
}

// introspectionAllowed requires client authentication (RFC 7662 §2.1: the endpoint MUST
// require some form of authorization, and its answer reveals a token's patient and subject):
// client_secret_basic for a confidential client or a private_key_jwt assertion for a backend
// client, as at the token endpoint. A bearer access token does not authorize introspection:
// any app's (even a patient's) token would otherwise read any other token's context. Public
// clients cannot authenticate, so they cannot introspect either.
func (s *Server) introspectionAllowed(c *gin.Context) error {
	if h := c.GetHeader("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return invalidClient(errors.New("a bearer token is not client authentication"))
	}
	cl, err := s.authenticateClient(c)
	if err != nil {
		return err
	}
	if cl.Type == ClientPublic {
		return invalidClient(errors.New("public clients cannot introspect"))
	}
	return nil
}

// revoke is POST /revoke (RFC 7009). Revoking a refresh token revokes its whole family and the
// access tokens issued from it; revoking an access token records its jti until it expires.
// Unknown tokens and other clients' tokens answer 200 without effect, as RFC 7009 §2.2 asks.
func (s *Server) revoke(c *gin.Context) {
	if err := limitForm(c); err != nil {
		s.writeOAuthError(c, invalidRequest("malformed form body"))
		return
	}
	client, err := s.authenticateClient(c)
	if err != nil {
		s.writeOAuthError(c, err)
		return
	}
	tok := c.Request.PostForm.Get("token")
	if tok == "" {
		s.writeOAuthError(c, invalidRequest("token required"))
		return
	}
	if err := s.revokeToken(c.Request.Context(), client, tok); err != nil {
		s.writeOAuthError(c, err)
		return
	}
	noStore(c)
	c.Status(http.StatusOK)
}

func (s *Server) revokeToken(ctx context.Context, client Client, tok string) error {
	if strings.Count(tok, ".") == 2 {
		claims, err := s.parseAccessToken(tok, true)
		if err != nil || claims.ClientID != client.ID || claims.ID == "" {
			return nil
		}
		var exp time.Time
		if claims.ExpiresAt != nil {
			exp = claims.ExpiresAt.Time
		}
		return s.revokeJTI(ctx, claims.ID, exp)
	}
	var rd refreshDoc
	if err := s.getJSON(ctx, kindRefresh, hashID(tok), &rd); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	if rd.ClientID != client.ID {
		return nil
	}
	if err := s.revokeFamily(ctx, rd.Family); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := s.st.DeleteRecord(ctx, kindRefresh, hashID(tok)); err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	return nil
}

// launchDoc is the context an EHR launch value stands for.
type launchDoc struct {
	// ClientID restricts the launch to one app ("" for any).
	ClientID   string `json:"client_id,omitempty"`
	Patient    string `json:"patient"`
	NeedBanner bool   `json:"need_patient_banner,omitempty"`
}

// launchTTL bounds the time between an EHR minting a launch and the app's authorize request.
const launchTTL = 5 * time.Minute

// MintLaunch creates an opaque EHR launch value carrying patient as launch context, valid for
// five minutes, optionally only for app client appClientID. The Patient must exist.
func (s *Server) MintLaunch(ctx context.Context, appClientID, patient string, needBanner bool) (string, error) {
	if patient == "" {
		return "", errors.New("authserver: launch needs a patient")
	}
	if _, err := s.st.Read(ctx, "Patient", patient); err != nil {
		return "", fmt.Errorf("authserver: launch patient: %w", err)
	}
	v := randomToken(24)
	if err := s.putJSON(ctx, kindLaunch, hashID(v), launchDoc{ClientID: appClientID, Patient: patient, NeedBanner: needBanner},
		s.now().Add(launchTTL)); err != nil {
		return "", fmt.Errorf("authserver: mint launch: %w", err)
	}
	return v, nil
}

// launch is POST /launch: an authenticated client registered as a launch minter (an EHR)
// obtains a launch value for patient (form: patient, optional app_client_id,
// need_patient_banner).
func (s *Server) launch(c *gin.Context) {
	if err := limitForm(c); err != nil {
		s.writeOAuthError(c, invalidRequest("malformed form body"))
		return
	}
	client, err := s.authenticateClient(c)
	if err != nil {
		s.writeOAuthError(c, err)
		return
	}
	if !client.LaunchMinter || client.Type == ClientPublic {
		s.writeOAuthError(c, oerr(http.StatusForbidden, "unauthorized_client", "this client may not mint launch contexts", nil))
		return
	}
	f := c.Request.PostForm
	v, err := s.MintLaunch(c.Request.Context(), f.Get("app_client_id"), f.Get("patient"), f.Get("need_patient_banner") == "true")
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) || (err != nil && f.Get("patient") == "") {
		s.writeOAuthError(c, invalidRequest("unknown patient"))
		return
	}
	if err != nil {
		s.writeOAuthError(c, err)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, gin.H{"launch": v, "expires_in": int(launchTTL / time.Second)})
}
