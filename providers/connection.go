package providers

import (
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/oauth2"
)

// ConnStatus is the state of a patient's connection to a vendor account.
type ConnStatus string

// Connection states.
const (
	StatusActive      ConnStatus = "active"       // tokens work
	StatusNeedsReauth ConnStatus = "needs-reauth" // the vendor refused the tokens: connect again
	StatusRevoked     ConnStatus = "revoked"      // disconnected
)

// Connection links a patient to a vendor account. Its Token is stored encrypted by the Vault
// and never appears in JSON, logs or String output.
type Connection struct {
	ID           string     `json:"id"`
	Provider     string     `json:"provider"`
	PatientID    string     `json:"patientId"`
	VendorUserID string     `json:"vendorUserId"`
	Status       ConnStatus `json:"status"`
	// Token is the vendor token pair as loaded. Vault.TokenSource keeps the current one: after
	// a refresh this field is a stale snapshot, which Save recognises and never writes back.
	Token    *oauth2.Token `json:"-"`
	Scopes   []string      `json:"scopes,omitempty"`
	Created  time.Time     `json:"created"`
	LastSync time.Time     `json:"lastSync,omitzero"`
	// LastError is a short public description of the last failure, "" after a success. Never
	// raw vendor text.
	LastError string `json:"lastError,omitempty"`
	// SyncCursors are the incremental-sync positions per data kind (or "all").
	SyncCursors map[string]time.Time `json:"syncCursors,omitempty"`
	// Predecessor is the account at an earlier vendor API this one continues (Grant.Predecessor),
	// nil for none.
	Predecessor *Predecessor `json:"predecessor,omitempty"`

	// tokenGen is the generation of Token in the vault (0: not loaded from the vault).
	tokenGen uint64
}

// Predecessor is the earlier account a connection continues, and until when that account's
// adapter can have stored measurements for the patient.
type Predecessor struct {
	Account
	// Until is when the patient moved to the new account: only measurements taken before it
	// can exist twice, once as stored by the predecessor's adapter and once as the new account
	// delivers them again, so only those are matched against what is stored.
	Until time.Time `json:"until"`
}

// String describes the connection without its tokens.
func (c Connection) String() string {
	return fmt.Sprintf("connection %s (%s, patient %s, vendor user %s, %s, token %s)",
		c.ID, c.Provider, c.PatientID, c.VendorUserID, c.Status, redacted(c.Token))
}

// GoString keeps %#v from printing the token.
func (c Connection) GoString() string { return c.String() }

// LogValue implements slog.LogValuer: the connection's identity and state, never its tokens.
func (c Connection) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", c.ID),
		slog.String("provider", c.Provider),
		slog.String("patient", c.PatientID),
		slog.String("status", string(c.Status)),
		slog.String("token", redacted(c.Token)),
	)
}

func redacted(t *oauth2.Token) string {
	if t == nil {
		return "none"
	}
	if t.Expiry.IsZero() {
		return "[redacted]"
	}
	return "[redacted, expires " + t.Expiry.UTC().Format(time.RFC3339) + "]"
}
