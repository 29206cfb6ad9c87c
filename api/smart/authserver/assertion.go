package authserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/store"
)

// assertionType is the only client_assertion_type (RFC 7523 §2.2).
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLifetime: SMART asymmetric auth, "exp … no more than five minutes in the future".
const maxAssertionLifetime = 5 * time.Minute

// assertionLeeway tolerates clock skew between the client and us.
const assertionLeeway = 30 * time.Second

// verifyAssertion authenticates a private_key_jwt client assertion (RFC 7523 §3 as profiled by
// SMART): alg RS384 or ES384, kid required and matching exactly one registered key of the
// alg's key type, iss = sub = client_id, aud = our token URL, exp at most five minutes ahead,
// jti never seen before for this client. clientID is the client_id form parameter ("" if absent).
func (s *Server) verifyAssertion(ctx context.Context, assertion, clientID string) (Client, error) {
	var client Client
	var claims jwt.RegisteredClaims
	keyfunc := func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.GetIssuer()
		if iss == "" || (clientID != "" && iss != clientID) {
			return nil, errors.New("iss must be the client_id")
		}
		c, err := s.Client(ctx, iss)
		if err != nil {
			return nil, err
		}
		if c.Type != ClientBackend {
			return nil, fmt.Errorf("client %q is not registered for private_key_jwt", iss)
		}
		client = c
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("kid header required")
		}
		if jku, ok := t.Header["jku"].(string); ok && jku != c.JWKSURL {
			return nil, errors.New("jku does not match the registered JWKS URL")
		}
		return s.clientKey(ctx, c, kid, t.Method.Alg())
	}
	_, err := jwt.ParseWithClaims(assertion, &claims, keyfunc,
		jwt.WithValidMethods([]string{"RS384", "ES384"}),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(s.ep.Token),
		jwt.WithLeeway(assertionLeeway),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return Client{}, fmt.Errorf("client assertion: %w", err)
	}
	if claims.Subject != client.ID {
		return Client{}, errors.New("client assertion: sub must be the client_id")
	}
	exp := claims.ExpiresAt.Time
	if exp.After(s.now().Add(maxAssertionLifetime + assertionLeeway)) {
		return Client{}, errors.New("client assertion: exp more than five minutes ahead")
	}
	if claims.ID == "" {
		return Client{}, errors.New("client assertion: jti required")
	}
	// The replay entry lives as long as the assertion could be accepted.
	err = s.st.CreateRecord(ctx, kindJTI, client.ID+"|"+claims.ID, []byte("{}"), exp.Add(assertionLeeway))
	if errors.Is(err, store.ErrDuplicate) {
		return Client{}, errors.New("client assertion: jti replayed")
	}
	if err != nil {
		return Client{}, fmt.Errorf("client assertion: record jti: %w", err)
	}
	return client, nil
}

// clientKey selects exactly one registered key by kid and the alg's key type.
func (s *Server) clientKey(ctx context.Context, c Client, kid, alg string) (any, error) {
	wantKty := jwkset.KtyRSA
	if strings.HasPrefix(alg, "ES") {
		wantKty = jwkset.KtyEC
	}
	pick := func(keys []jwkset.JWK) (any, int) {
		var key any
		n := 0
		for _, k := range keys {
			m := k.Marshal()
			if m.KID == kid && m.KTY == wantKty && (m.ALG == "" || string(m.ALG) == alg) {
				key, n = k.Key(), n+1
			}
		}
		return key, n
	}
	if len(c.JWKS) > 0 {
		keys, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, err
		}
		if key, n := pick(keys); n == 1 {
			return key, nil
		}
		return nil, fmt.Errorf("no unique registered key with kid %q for %s", kid, alg)
	}
	keys, err := s.jwks.get(ctx, c.JWKSURL, false)
	if err != nil {
		return nil, err
	}
	key, n := pick(keys)
	if n == 0 {
		// The client may have rotated: refetch (rate limited).
		if keys, err = s.jwks.get(ctx, c.JWKSURL, true); err != nil {
			return nil, err
		}
		key, n = pick(keys)
	}
	if n != 1 {
		return nil, fmt.Errorf("no unique key with kid %q for %s at the JWKS URL", kid, alg)
	}
	return key, nil
}

// jwksCache fetches client JWKS URLs and keeps a set no longer than its Cache-Control allows
// (SMART asymmetric auth: "SHALL NOT cache a JWKS for longer than the client's cache-control
// header indicates"). jwkset parses and validates the keys; its own HTTP storage refreshes on a
// fixed interval and ignores Cache-Control, so the fetching is done here.
type jwksCache struct {
	hc  *http.Client
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*jwksEntry
}

type jwksEntry struct {
	mu      sync.Mutex // one fetch per URL at a time
	keys    []jwkset.JWK
	expires time.Time
	fetched time.Time
}

// jwksDefaultTTL applies when the response has no Cache-Control max-age; jwksMaxTTL caps it.
const (
	jwksDefaultTTL   = 5 * time.Minute
	jwksMaxTTL       = time.Hour
	jwksMinRefetch   = 10 * time.Second // unknown kid refetches at most this often
	jwksMaxBodyBytes = 256 << 10
)

func newJWKSCache(hc *http.Client, now func() time.Time) *jwksCache {
	return &jwksCache{hc: hc, now: now, entries: map[string]*jwksEntry{}}
}

func (j *jwksCache) get(ctx context.Context, u string, refresh bool) ([]jwkset.JWK, error) {
	j.mu.Lock()
	e := j.entries[u]
	if e == nil {
		e = &jwksEntry{}
		j.entries[u] = e
	}
	j.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := j.now()
	fresh := now.Before(e.expires)
	if fresh && (!refresh || now.Sub(e.fetched) < jwksMinRefetch) {
		return e.keys, nil
	}
	if refresh && now.Sub(e.fetched) < jwksMinRefetch {
		return e.keys, nil
	}
	keys, ttl, err := j.fetch(ctx, u)
	e.fetched = now
	if err != nil {
		e.keys, e.expires = nil, time.Time{}
		return nil, err
	}
	e.keys, e.expires = keys, now.Add(ttl)
	return keys, nil
}

func (j *jwksCache) fetch(ctx context.Context, u string) ([]jwkset.JWK, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBodyBytes))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	return keys, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// cacheTTL reads how long a response may be reused: 0 for no-store/no-cache, max-age capped at
// an hour, a default when absent.
func cacheTTL(cc string) time.Duration {
	ttl := jwksDefaultTTL
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(strings.Trim(d[len("max-age="):], `"`))
			if err != nil || n < 0 {
				return 0
			}
			ttl = time.Duration(n) * time.Second
		}
	}
	return min(ttl, jwksMaxTTL)
}
