package providers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/store"
)

// TokenSource returns the connection's token source for adapter calls. It returns the current
// token while it is valid for longer than the refresh skew, and otherwise refreshes it through
// p.Refresh — once per connection at a time, across goroutines (in-process single-flight) and
// across ohx instances (a lease record in the store; an instance that loses waits and re-reads
// the token the winner stored). The rotated token pair is stored before the new access token is
// returned, so a crash can never lose the only valid refresh token. A definitive refusal marks
// the connection needs-reauth and returns an error matching ErrConsentRevoked; other refresh
// failures are returned as they are (usually a transient *UpstreamError).
//
// Refreshes run under ctx's values (and, detached from its cancellation, within the lease).
// c is read now and never modified: after a refresh c.Token is stale, which Save detects.
// Pass the source to RetryOnAuth to refresh once more after a vendor auth error.
func (v *Vault) TokenSource(ctx context.Context, c *Connection, p Provider) oauth2.TokenSource {
	return &tokenSource{
		v: v, ctx: ctx, p: p,
		conn: Connection{ID: c.ID, Provider: c.Provider, PatientID: c.PatientID, VendorUserID: c.VendorUserID},
		cur:  storedToken{tok: c.Token, gen: c.tokenGen},
	}
}

type tokenSource struct {
	v    *Vault
	ctx  context.Context
	p    Provider
	conn Connection // identity only, no token

	mu  sync.Mutex
	cur storedToken
	bad string // access token the vendor refused (Invalidate), "" if none
}

// Token implements oauth2.TokenSource. It returns a copy of the token.
func (s *tokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.v.remembered(s.conn.ID); ok && st.gen > s.cur.gen {
		s.cur = st // refreshed by another source of this vault
	}
	if s.bad == "" && s.v.fresh(s.cur.tok) {
		return copyToken(s.cur.tok), nil
	}
	st, err := s.v.refresh(s.ctx, s.conn, s.p, s.cur.gen, s.bad)
	if err != nil {
		return nil, err
	}
	s.cur, s.bad = st, ""
	return copyToken(st.tok), nil
}

// invalidate marks the current access token as refused by the vendor: the next Token call
// refreshes, unless another caller has already replaced it.
func (s *tokenSource) invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.tok != nil {
		s.bad = s.cur.tok.AccessToken
	}
}

func copyToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}

// fresh reports whether t can be used without a refresh.
func (v *Vault) fresh(t *oauth2.Token) bool {
	return t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || time.Now().Add(refreshSkew).Before(t.Expiry))
}

// usable reports whether a stored token can replace the caller's generation known (with the
// refused access token bad) without a refresh.
func (v *Vault) usable(st storedToken, known uint64, bad string) bool {
	return st.gen > known && st.tok.AccessToken != bad && v.fresh(st.tok)
}

// refresh returns a token newer than generation known. Concurrent calls for one connection
// share one flight; the flight runs detached from the first caller's cancellation.
func (v *Vault) refresh(ctx context.Context, c Connection, p Provider, known uint64, bad string) (storedToken, error) {
	for range 2 {
		ch := v.flight.DoChan(c.ID, func() (any, error) {
			// Room to wait out another instance's lease and then hold our own.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*v.leaseTTL)
			defer cancel()
			return v.refreshShared(fctx, c, p, known, bad)
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				return storedToken{}, r.Err
			}
			st := r.Val.(storedToken)
			if st.tok.AccessToken == bad {
				continue // joined a flight started before our token was refused: once more
			}
			return st, nil
		case <-ctx.Done():
			return storedToken{}, ctx.Err()
		}
	}
	return storedToken{}, &UpstreamError{Provider: c.Provider, Kind: KindTransient, Err: errors.New("token refresh did not replace the refused token")}
}

// refreshShared is the cross-instance part: take the lease, or wait for its holder.
func (v *Vault) refreshShared(ctx context.Context, c Connection, p Provider, known uint64, bad string) (storedToken, error) {
	for {
		st, ok, err := v.loadToken(ctx, c.ID)
		if err != nil {
			return storedToken{}, err
		}
		if !ok {
			return storedToken{}, fmt.Errorf("providers: %s connection of patient %s has no token: %w", c.Provider, c.PatientID, ErrNotConnected)
		}
		if v.usable(st, known, bad) {
			return st, nil
		}
		err = v.rec.CreateRecord(ctx, kindLease, c.ID, []byte(v.owner), time.Now().Add(v.leaseTTL))
		if errors.Is(err, store.ErrDuplicate) {
			// Another instance is refreshing: wait, then read what it stored.
			if err := sleep(ctx, v.leasePoll); err != nil {
				return storedToken{}, fmt.Errorf("providers: waiting for another instance's token refresh: %w", err)
			}
			continue
		}
		if err != nil {
			return storedToken{}, fmt.Errorf("providers: vault: take refresh lease: %w", err)
		}
		st, err = v.refreshLeased(ctx, c, p, known, bad)
		v.releaseLease(c.ID)
		return st, err
	}
}

// refreshLeased refreshes while holding the lease.
func (v *Vault) refreshLeased(ctx context.Context, c Connection, p Provider, known uint64, bad string) (storedToken, error) {
	// Look again: the previous holder may have finished between our read and our lease.
	st, ok, err := v.loadToken(ctx, c.ID)
	if err != nil {
		return storedToken{}, err
	}
	if !ok {
		return storedToken{}, fmt.Errorf("providers: %s connection of patient %s has no token: %w", c.Provider, c.PatientID, ErrNotConnected)
	}
	if v.usable(st, known, bad) {
		return st, nil
	}
	d, err := v.getDoc(ctx, c.Provider, c.PatientID)
	if err != nil {
		return storedToken{}, err
	}
	if d.ID != c.ID {
		return storedToken{}, fmt.Errorf("providers: %s connection of patient %s was replaced: %w", c.Provider, c.PatientID, ErrNotConnected)
	}
	if d.Status == StatusNeedsReauth {
		// Another caller already learnt that the vendor refuses these tokens.
		return storedToken{}, fmt.Errorf("providers: %s connection of patient %s needs a new consent: %w", c.Provider, c.PatientID, ErrConsentRevoked)
	}
	if st.tok.RefreshToken == "" {
		v.markNeedsReauth(ctx, c, "the vendor token expired and cannot be refreshed: connect again")
		return storedToken{}, fmt.Errorf("providers: %s connection of patient %s has no refresh token: %w", c.Provider, c.PatientID, ErrConsentRevoked)
	}

	// Give up before the lease runs out, so that no other instance refreshes meanwhile.
	rctx, cancel := context.WithTimeout(ctx, v.leaseTTL-v.leaseTTL/10)
	defer cancel()
	nt, err := p.Refresh(rctx, copyToken(st.tok))
	if err != nil {
		if errors.Is(err, ErrConsentRevoked) || KindOf(err) == KindAuth {
			v.markNeedsReauth(ctx, c, "the vendor refused the tokens: connect again")
			if !errors.Is(err, ErrConsentRevoked) {
				err = fmt.Errorf("%w: %w", ErrConsentRevoked, err)
			}
			return storedToken{}, fmt.Errorf("providers: refresh %s token: %w", c.Provider, err)
		}
		return storedToken{}, fmt.Errorf("providers: refresh %s token: %w", c.Provider, err)
	}
	if nt == nil || nt.AccessToken == "" {
		return storedToken{}, &UpstreamError{Provider: c.Provider, Kind: KindTransient, Err: errors.New("refresh returned no access token")}
	}
	nt = copyToken(nt)
	if nt.RefreshToken == "" {
		nt.RefreshToken = st.tok.RefreshToken // the vendor did not rotate it
	}
	// Persist before anyone uses the new access token: the vendor may invalidate the old
	// refresh token as soon as it is used (https://www.rfc-editor.org/rfc/rfc6749#section-6;
	// Withings does, https://developer.withings.com/developer-guide/v3/integration-guide/public-health-data-api/get-access/access-and-refresh-tokens-no-recover).
	next := storedToken{tok: nt, gen: st.gen + 1}
	if err := v.putToken(ctx, c.ID, nt, next.gen); err != nil {
		return storedToken{}, err
	}
	v.log.Debug("vendor token refreshed", "provider", c.Provider, "connection", c.ID)
	return next, nil
}

// releaseLease deletes the refresh lease if this vault still holds it.
func (v *Vault) releaseLease(connID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := v.rec.GetRecord(ctx, kindLease, connID)
	if err != nil || string(b) != v.owner {
		return
	}
	if err := v.rec.DeleteRecord(ctx, kindLease, connID); err != nil {
		v.log.Warn("vault: releasing the refresh lease failed (it expires by itself)", "connection", connID, "err", err)
	}
}

func (v *Vault) markNeedsReauth(ctx context.Context, c Connection, reason string) {
	if err := v.MarkNeedsReauth(ctx, &c, reason); err != nil {
		v.log.Error("vault: marking the connection needs-reauth failed", "provider", c.Provider, "connection", c.ID, "err", err)
	}
}

// RetryOnAuth runs fn, a vendor call using ts. If fn fails with an auth error (*UpstreamError
// of kind auth, e.g. a 401 on a data call) and ts came from Vault.TokenSource, the access token
// is invalidated — forcing one refresh, unless another caller has already refreshed — and fn
// runs once more. A second auth failure marks the connection needs-reauth and returns an error
// matching ErrConsentRevoked (and the *UpstreamError). With other token sources fn runs once.
func RetryOnAuth(ctx context.Context, ts oauth2.TokenSource, fn func() error) error {
	err := fn()
	s, ok := ts.(*tokenSource)
	if err == nil || !ok || KindOf(err) != KindAuth || errors.Is(err, ErrConsentRevoked) {
		return err
	}
	s.invalidate()
	if err = fn(); err == nil || KindOf(err) != KindAuth || errors.Is(err, ErrConsentRevoked) {
		return err
	}
	s.v.markNeedsReauth(ctx, s.conn, "the vendor refused the tokens: connect again")
	return fmt.Errorf("%w: %w", ErrConsentRevoked, err)
}
