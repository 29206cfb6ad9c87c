package providers

import (
	"context"
	"fmt"
	"time"
)

// ExpiresWithin reports whether the access token of c expires before now+ahead (or has
// expired). A connection without a token, or whose token carries no expiry (the vendor gave no
// lifetime: it does not expire on a schedule), does not.
func (c *Connection) ExpiresWithin(now time.Time, ahead time.Duration) bool {
	return c.Token != nil && !c.Token.Expiry.IsZero() && c.Token.Expiry.Before(now.Add(ahead))
}

// RefreshAhead refreshes the connection's token now if, as stored, its access token expires
// within ahead: the proactive refresh that keeps an idle connection's tokens usable, so that
// the next webhook fetch or read-through does not wait for the vendor's token endpoint. It
// takes the same single-flight path as TokenSource (one refresh per connection at a time, in
// this process and, through the store lease, across instances) and persists the rotated pair
// before returning. refreshed reports whether the stored token was replaced, by this call or by
// a refresh that ran meanwhile; false with a nil error means the token is good for longer than
// ahead (or never expires). A definitive refusal (a revoked or expired refresh token) marks the
// connection needs-reauth and returns an error matching ErrConsentRevoked, so a periodic caller
// that only refreshes active connections never asks the vendor again with the dead token. It
// returns ErrNotConnected if the connection or its token is gone; other refresh failures
// (usually a transient *UpstreamError) are returned as they are.
func (v *Vault) RefreshAhead(ctx context.Context, c *Connection, p Provider, ahead time.Duration) (refreshed bool, err error) {
	st, ok, err := v.loadToken(ctx, c.ID)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("providers: %s connection of patient %s has no token: %w", c.Provider, c.PatientID, ErrNotConnected)
	}
	if !(&Connection{Token: st.tok}).ExpiresWithin(time.Now(), ahead) {
		return false, nil
	}
	// known = the stored generation: a token another caller stores meanwhile (a newer
	// generation, fresh) ends the flight without a vendor call; otherwise the lease holder
	// refreshes even though the token is not yet within the usual refresh skew.
	id := Connection{ID: c.ID, Provider: c.Provider, PatientID: c.PatientID, VendorUserID: c.VendorUserID}
	next, err := v.refresh(ctx, id, p, st.gen, "")
	if err != nil {
		return false, err
	}
	return next.gen > st.gen, nil
}
