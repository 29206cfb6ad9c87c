package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record kinds in store.Records. Bearer secrets (codes, refresh tokens, sessions, launch values)
// are stored under the SHA-256 of their value, so a read of the store does not reveal them.
const (
	kindClient  = "smart.client"
	kindUser    = "smart.user"
	kindKey     = "smart.key"
	kindCode    = "smart.code"     // id: hash(code) → grant
	kindCodeUse = "smart.codeused" // id: hash(code) → what was issued from it
	kindRefresh = "smart.refresh"  // id: hash(refresh token) → refreshDoc
	kindRotated = "smart.rotated"  // id: hash(rotated refresh token) → family id
	kindFamily  = "smart.family"   // id: family → familyDoc
	kindRevoked = "smart.revoked"  // id: jti of a revoked access token
	kindJTI     = "smart.jti"      // id: client_id "|" assertion jti (replay cache)
	kindSession = "smart.session"  // id: hash(browser session id) → authSession
	kindLaunch  = "smart.launch"   // id: hash(launch value) → launchDoc
)

// grant is what an authorization code, a refresh token or a launch carries.
type grant struct {
	ClientID    string `json:"client_id"`
	Scope       string `json:"scope"`
	Subject     string `json:"sub,omitempty"`
	Patient     string `json:"patient,omitempty"`
	FHIRUser    string `json:"fhirUser,omitempty"`
	NeedBanner  bool   `json:"need_patient_banner,omitempty"`
	RedirectURI string `json:"redirect_uri,omitempty"`
	Challenge   string `json:"code_challenge,omitempty"`
	// Nonce is the OpenID Connect nonce of the authorization request, echoed in id_tokens.
	Nonce string `json:"nonce,omitempty"`
}

// codeUse records what was issued from a code, so that a replay revokes it.
type codeUse struct {
	JTI    string `json:"jti"`
	Family string `json:"family,omitempty"`
}

type refreshDoc struct {
	grant
	Family string `json:"family"`
}

// familyDoc tracks one chain of rotated refresh tokens and the access tokens issued from it.
type familyDoc struct {
	ClientID string    `json:"client_id"`
	Revoked  bool      `json:"revoked,omitempty"`
	JTIs     []jtiExp  `json:"jtis,omitempty"`
	Expires  time.Time `json:"expires"`
}

type jtiExp struct {
	JTI string    `json:"jti"`
	Exp time.Time `json:"exp"`
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func (s *Server) putJSON(ctx context.Context, kind, id string, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	return s.st.PutRecord(ctx, kind, id, b, expires)
}

func (s *Server) getJSON(ctx context.Context, kind, id string, v any) error {
	b, err := s.st.GetRecord(ctx, kind, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", kind, err)
	}
	return nil
}

func (s *Server) takeJSON(ctx context.Context, kind, id string, v any) error {
	b, err := s.st.TakeRecord(ctx, kind, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", kind, err)
	}
	return nil
}

// revokeJTI marks an access token revoked until it would have expired anyway.
func (s *Server) revokeJTI(ctx context.Context, jti string, exp time.Time) error {
	if exp.IsZero() {
		exp = s.now().Add(s.cfg.AccessTokenTTL)
	}
	if err := s.st.PutRecord(ctx, kindRevoked, jti, []byte("{}"), exp.Add(time.Minute)); err != nil {
		return fmt.Errorf("revoke access token: %w", err)
	}
	return nil
}

// revokeFamily revokes a refresh-token family and every access token issued from it.
func (s *Server) revokeFamily(ctx context.Context, family string) error {
	var f familyDoc
	if err := s.getJSON(ctx, kindFamily, family, &f); err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	f.Revoked = true
	if err := s.putJSON(ctx, kindFamily, family, f, f.Expires); err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	for _, j := range f.JTIs {
		if j.Exp.After(s.now()) {
			if err := s.revokeJTI(ctx, j.JTI, j.Exp); err != nil {
				return err
			}
		}
	}
	return nil
}
