package providers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// Records is what the vault needs of the store's small document store (store.Records; every
// store.Store satisfies it). Errors: GetRecord store.ErrNotFound, CreateRecord store.ErrDuplicate.
type Records interface {
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	GetRecord(ctx context.Context, kind, id string) ([]byte, error)
	DeleteRecord(ctx context.Context, kind, id string) error
	ListRecords(ctx context.Context, kind string) ([]store.Record, error)
}

// Record kinds of the vault.
const (
	kindConn       = "provider-connection"  // id provider/patient: connection JSON without the token
	kindVendorUser = "provider-vendor-user" // id provider/vendorUserID: the patient id (secondary index)
	kindToken      = "provider-token"       // id connection id: the encrypted token pair
	kindLease      = "provider-token-lease" // id connection id: refresh lease, short expiry
)

// Vault stores connections and their vendor tokens, the tokens sealed with store/seal
// (AES-256-GCM), and hands out TokenSources that refresh them safely. It is safe for concurrent
// use, and several Vaults (ohx instances) may share one store.
type Vault struct {
	rec     Records
	keys    map[string]*seal.Key
	current string
	log     *slog.Logger

	leaseTTL  time.Duration
	leasePoll time.Duration
	owner     string // this vault's lease owner id

	flight singleflight.Group // refreshes in flight, by connection id
	mu     sync.Mutex
	tokens map[string]storedToken // latest known token per connection id
	// docMu serializes the read-modify-write of connection documents in this process (Save,
	// MarkNeedsReauth, Delete). Save's rule that a stale copy cannot turn a revoked connection
	// back to active reads the stored document first: a revocation written between that read
	// and Save's write was overwritten (a sync finishing as the vendor's revocation arrived).
	// Records has no compare-and-swap, so two instances can still interleave.
	docMu sync.Mutex
}

// VaultOption tunes a Vault.
type VaultOption func(*Vault)

// refreshSkew is how long before its expiry a token is refreshed.
const refreshSkew = 5 * time.Minute

// WithRefreshLease sets the lifetime of the store lease that makes a refresh single-flight
// across instances (default 60s; a refresh is abandoned shortly before its lease runs out) and
// how often an instance waiting for another's refresh looks again (default 100ms).
func WithRefreshLease(ttl, poll time.Duration) VaultOption {
	return func(v *Vault) { v.leaseTTL, v.leasePoll = ttl, poll }
}

// NewVault returns a vault over rec. keys maps key ids to 32-byte AES-256 keys (derived by the
// caller, e.g. with seal.Derive: the vault derives none); new tokens are
// encrypted with currentKeyID, and tokens written under another listed key can still be read
// (key rotation: add the new key, make it current, keep the old one until every token was
// rewritten — each refresh rewrites one). log nil discards.
func NewVault(rec Records, keys map[string][]byte, currentKeyID string, log *slog.Logger, opts ...VaultOption) (*Vault, error) {
	if rec == nil {
		return nil, errors.New("providers: vault: no store")
	}
	if _, ok := keys[currentKeyID]; !ok {
		return nil, fmt.Errorf("providers: vault: current key %q is not among the keys", currentKeyID)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Vault{
		rec: rec, keys: map[string]*seal.Key{}, current: currentKeyID, log: log,
		leaseTTL: time.Minute, leasePoll: 100 * time.Millisecond,
		owner: randomID(), tokens: map[string]storedToken{},
	}
	for id, k := range keys {
		if id == "" || strings.ContainsAny(id, " \t\n") {
			return nil, fmt.Errorf("providers: vault: invalid key id %q", id)
		}
		key, err := seal.NewKey(k)
		if err != nil {
			return nil, fmt.Errorf("providers: vault: key %q: %w", id, err)
		}
		v.keys[id] = key
	}
	for _, o := range opts {
		o(v)
	}
	if v.leaseTTL <= 0 || v.leasePoll <= 0 {
		return nil, errors.New("providers: vault: lease ttl and poll interval must be positive")
	}
	return v, nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// connDoc is the stored form of a Connection, without its token.
type connDoc struct {
	ID           string               `json:"id"`
	Provider     string               `json:"provider"`
	PatientID    string               `json:"patient"`
	VendorUserID string               `json:"vendorUser"`
	Status       ConnStatus           `json:"status"`
	Scopes       []string             `json:"scopes,omitempty"`
	Created      time.Time            `json:"created"`
	LastSync     time.Time            `json:"lastSync,omitzero"`
	LastError    string               `json:"lastError,omitempty"`
	SyncCursors  map[string]time.Time `json:"syncCursors,omitempty"`
	Predecessor  *Predecessor         `json:"predecessor,omitempty"`
}

// tokenDoc is the stored form of a token pair: sealed (seal.Key.Seal) under key KeyID, with the
// connection id as associated data (a ciphertext copied to another connection does not
// decrypt). The sealed value nonce ‖ ciphertext is kept split in two fields, the format of the
// records written before store/seal existed.
type tokenDoc struct {
	KeyID      string `json:"kid"`
	Gen        uint64 `json:"gen"` // incremented on every write: tells stale copies from fresh ones
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ct"`
}

// tokenPlain is what gets encrypted.
type tokenPlain struct {
	AccessToken  string    `json:"a"`
	TokenType    string    `json:"t,omitempty"`
	RefreshToken string    `json:"r,omitempty"`
	Expiry       time.Time `json:"e,omitzero"`
}

type storedToken struct {
	tok *oauth2.Token
	gen uint64
}

func (v *Vault) seal(connID string, t *oauth2.Token, gen uint64) ([]byte, error) {
	plain, err := json.Marshal(tokenPlain{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken, Expiry: t.Expiry})
	if err != nil {
		return nil, err
	}
	k := v.keys[v.current]
	sealed := k.Seal(plain, []byte(connID))
	n := k.NonceSize()
	return json.Marshal(tokenDoc{KeyID: v.current, Gen: gen, Nonce: sealed[:n:n], Ciphertext: sealed[n:]})
}

func (v *Vault) open(connID string, doc []byte) (storedToken, error) {
	var d tokenDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return storedToken{}, fmt.Errorf("providers: vault: token record of connection %s: %w", connID, err)
	}
	k, ok := v.keys[d.KeyID]
	if !ok {
		return storedToken{}, fmt.Errorf("providers: vault: token of connection %s is encrypted with unknown key %q", connID, d.KeyID)
	}
	if len(d.Nonce) != k.NonceSize() {
		return storedToken{}, fmt.Errorf("providers: vault: token of connection %s: bad nonce", connID)
	}
	plain, err := k.Open(slices.Concat(d.Nonce, d.Ciphertext), []byte(connID))
	if err != nil {
		return storedToken{}, fmt.Errorf("providers: vault: token of connection %s does not decrypt with key %q: %w", connID, d.KeyID, err)
	}
	var p tokenPlain
	if err := json.Unmarshal(plain, &p); err != nil {
		return storedToken{}, fmt.Errorf("providers: vault: token of connection %s: bad plaintext", connID)
	}
	return storedToken{gen: d.Gen, tok: &oauth2.Token{AccessToken: p.AccessToken, TokenType: p.TokenType, RefreshToken: p.RefreshToken, Expiry: p.Expiry}}, nil
}

// loadToken reads the stored token; ok false if there is none.
func (v *Vault) loadToken(ctx context.Context, connID string) (st storedToken, ok bool, err error) {
	doc, err := v.rec.GetRecord(ctx, kindToken, connID)
	if errors.Is(err, store.ErrNotFound) {
		return storedToken{}, false, nil
	}
	if err != nil {
		return storedToken{}, false, fmt.Errorf("providers: vault: read token: %w", err)
	}
	st, err = v.open(connID, doc)
	if err != nil {
		return storedToken{}, false, err
	}
	v.remember(connID, st)
	return st, true, nil
}

// putToken writes the token as generation gen.
func (v *Vault) putToken(ctx context.Context, connID string, t *oauth2.Token, gen uint64) error {
	doc, err := v.seal(connID, t, gen)
	if err != nil {
		return fmt.Errorf("providers: vault: seal token: %w", err)
	}
	if err := v.rec.PutRecord(ctx, kindToken, connID, doc, time.Time{}); err != nil {
		return fmt.Errorf("providers: vault: write token: %w", err)
	}
	v.remember(connID, storedToken{tok: t, gen: gen})
	return nil
}

// remember keeps the newest token seen for a connection in memory.
func (v *Vault) remember(connID string, st storedToken) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur, ok := v.tokens[connID]; !ok || st.gen >= cur.gen {
		v.tokens[connID] = st
	}
}

func (v *Vault) remembered(connID string) (storedToken, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, ok := v.tokens[connID]
	return st, ok
}

func (v *Vault) forget(connID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.tokens, connID)
}

func connKey(provider, patientID string) string { return provider + "/" + patientID }

func (v *Vault) getDoc(ctx context.Context, provider, patientID string) (*connDoc, error) {
	b, err := v.rec.GetRecord(ctx, kindConn, connKey(provider, patientID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotConnected
	}
	if err != nil {
		return nil, fmt.Errorf("providers: vault: read connection: %w", err)
	}
	var d connDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("providers: vault: connection %s: %w", connKey(provider, patientID), err)
	}
	return &d, nil
}

func (v *Vault) putDoc(ctx context.Context, c *Connection) error {
	b, err := json.Marshal(connDoc{
		ID: c.ID, Provider: c.Provider, PatientID: c.PatientID, VendorUserID: c.VendorUserID, Status: c.Status,
		Scopes: c.Scopes, Created: c.Created, LastSync: c.LastSync, LastError: c.LastError, SyncCursors: c.SyncCursors,
		Predecessor: c.Predecessor,
	})
	if err != nil {
		return err
	}
	if err := v.rec.PutRecord(ctx, kindConn, connKey(c.Provider, c.PatientID), b, time.Time{}); err != nil {
		return fmt.Errorf("providers: vault: write connection: %w", err)
	}
	return nil
}

func (d *connDoc) connection() *Connection {
	return &Connection{
		ID: d.ID, Provider: d.Provider, PatientID: d.PatientID, VendorUserID: d.VendorUserID, Status: d.Status,
		Scopes: d.Scopes, Created: d.Created, LastSync: d.LastSync, LastError: d.LastError, SyncCursors: d.SyncCursors,
		Predecessor: d.Predecessor,
	}
}

// Get returns the patient's connection to the provider, its token decrypted. It returns
// ErrNotConnected if there is none; an error if the token does not decrypt (unknown key).
func (v *Vault) Get(ctx context.Context, provider, patientID string) (*Connection, error) {
	d, err := v.getDoc(ctx, provider, patientID)
	if err != nil {
		return nil, err
	}
	c := d.connection()
	st, ok, err := v.loadToken(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if ok {
		c.Token, c.tokenGen = st.tok, st.gen
	}
	return c, nil
}

// ByVendorUser returns the connection of a vendor account (webhooks name the vendor user), or
// ErrNotConnected. The connection comes without its token (Token nil): it answers webhooks,
// whose acknowledgement path must not decrypt anything; use Get for a connection to call the
// vendor with.
func (v *Vault) ByVendorUser(ctx context.Context, provider, vendorUserID string) (*Connection, error) {
	b, err := v.rec.GetRecord(ctx, kindVendorUser, connKey(provider, vendorUserID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotConnected
	}
	if err != nil {
		return nil, fmt.Errorf("providers: vault: read vendor user index: %w", err)
	}
	d, err := v.getDoc(ctx, provider, string(b))
	if err != nil {
		return nil, err
	}
	c := d.connection()
	if c.VendorUserID != vendorUserID { // a stale index entry
		return nil, ErrNotConnected
	}
	return c, nil
}

// List returns every connection of every provider (ordered by provider and patient id), with
// tokens.
func (v *Vault) List(ctx context.Context) ([]*Connection, error) {
	docs, err := v.rec.ListRecords(ctx, kindConn)
	if err != nil {
		return nil, fmt.Errorf("providers: vault: list connections: %w", err)
	}
	toks, err := v.rec.ListRecords(ctx, kindToken)
	if err != nil {
		return nil, fmt.Errorf("providers: vault: list tokens: %w", err)
	}
	byID := make(map[string][]byte, len(toks))
	for _, r := range toks {
		byID[r.ID] = r.Doc
	}
	out := make([]*Connection, 0, len(docs))
	for _, r := range docs {
		var d connDoc
		if err := json.Unmarshal(r.Doc, &d); err != nil {
			return nil, fmt.Errorf("providers: vault: connection %s: %w", r.ID, err)
		}
		c := d.connection()
		if doc, ok := byID[c.ID]; ok {
			st, err := v.open(c.ID, doc)
			if err != nil {
				return nil, err
			}
			c.Token, c.tokenGen = st.tok, st.gen
		}
		out = append(out, c)
	}
	return out, nil
}

// Save stores the connection: creates it (ID assigned when empty) or updates it. The token is
// written only when it is new: a connection built from a fresh Grant (not loaded from the vault)
// or a loaded one whose Token the caller replaced. A loaded copy whose token was refreshed since
// it was read is stale: Save keeps the stored token (and puts it into c.Token) instead of
// overwriting the rotated one. Likewise a stale copy cannot turn a needs-reauth connection back
// to active: only a new token does. Save returns ErrVendorUserLinked, and writes nothing, if the
// vendor account is connected to another patient (not revoked): the one place of that rule.
// It returns ErrNotConnected, and writes nothing, for a connection loaded from the vault that
// has been deleted since.
func (v *Vault) Save(ctx context.Context, c *Connection) error {
	if c.Provider == "" || c.PatientID == "" || c.VendorUserID == "" {
		return errors.New("providers: vault: connection needs provider, patient and vendor user")
	}
	if c.Status == "" {
		c.Status = StatusActive
	}
	if c.Created.IsZero() {
		c.Created = time.Now().UTC()
	}
	v.docMu.Lock()
	defer v.docMu.Unlock()
	prev, err := v.getDoc(ctx, c.Provider, c.PatientID)
	if err != nil && !errors.Is(err, ErrNotConnected) {
		return err
	}
	if c.tokenGen != 0 && (prev == nil || prev.ID != c.ID) {
		// c was loaded from the vault, and its connection has been deleted (or replaced by a
		// new one) since: a disconnect the patient asked for must not be undone by a sync that
		// finishes after it.
		return fmt.Errorf("providers: vault: save a connection deleted since it was read: %w", ErrNotConnected)
	}
	if c.ID == "" {
		if prev != nil {
			c.ID = prev.ID
		} else {
			c.ID = randomID()
		}
	}
	if err := v.checkVendorUser(ctx, c); err != nil {
		return err
	}

	// The token first: a crash must not leave a connection that claims a token it lacks.
	wroteToken := false
	if c.Token != nil {
		st, ok, err := v.loadToken(ctx, c.ID)
		if err != nil {
			return err
		}
		switch {
		case !ok || c.tokenGen == 0 || c.tokenGen > st.gen:
			// new connection, a fresh grant, or the stored one vanished
			err = v.putToken(ctx, c.ID, c.Token, st.gen+1)
			c.tokenGen, wroteToken = st.gen+1, true
		case c.tokenGen < st.gen:
			c.Token, c.tokenGen = st.tok, st.gen // stale copy: the stored token is newer
		case !sameToken(c.Token, st.tok):
			err = v.putToken(ctx, c.ID, c.Token, st.gen+1)
			c.tokenGen, wroteToken = st.gen+1, true
		}
		if err != nil {
			return err
		}
	}
	if prev != nil && prev.ID == c.ID && prev.Status != StatusActive && c.Status == StatusActive && !wroteToken {
		c.Status = prev.Status
	}
	if err := v.putDoc(ctx, c); err != nil {
		return err
	}
	if err := v.rec.PutRecord(ctx, kindVendorUser, connKey(c.Provider, c.VendorUserID), []byte(c.PatientID), time.Time{}); err != nil {
		return fmt.Errorf("providers: vault: write vendor user index: %w", err)
	}
	if prev != nil {
		if prev.VendorUserID != c.VendorUserID {
			v.dropIndex(ctx, c.Provider, prev.VendorUserID, c.PatientID)
		}
		if prev.ID != c.ID {
			// The connection was replaced: its old token must not linger.
			if err := v.rec.DeleteRecord(ctx, kindToken, prev.ID); err != nil {
				return fmt.Errorf("providers: vault: delete replaced token: %w", err)
			}
			v.forget(prev.ID)
		}
	}
	return nil
}

// checkVendorUser refuses to link a vendor account that another patient's live connection holds.
func (v *Vault) checkVendorUser(ctx context.Context, c *Connection) error {
	b, err := v.rec.GetRecord(ctx, kindVendorUser, connKey(c.Provider, c.VendorUserID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("providers: vault: read vendor user index: %w", err)
	}
	if other := string(b); other != c.PatientID {
		d, err := v.getDoc(ctx, c.Provider, other)
		if errors.Is(err, ErrNotConnected) {
			return nil // stale index entry
		}
		if err != nil {
			return err
		}
		if d.VendorUserID == c.VendorUserID && d.Status != StatusRevoked {
			return ErrVendorUserLinked
		}
	}
	return nil
}

// dropIndex deletes the vendor user index entry if it still points at patientID (best effort).
func (v *Vault) dropIndex(ctx context.Context, provider, vendorUserID, patientID string) {
	b, err := v.rec.GetRecord(ctx, kindVendorUser, connKey(provider, vendorUserID))
	if err == nil && string(b) == patientID {
		if err := v.rec.DeleteRecord(ctx, kindVendorUser, connKey(provider, vendorUserID)); err != nil {
			v.log.Warn("vault: dropping a vendor user index entry failed", "provider", provider, "err", err)
		}
	}
}

func sameToken(a, b *oauth2.Token) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.TokenType == b.TokenType && a.Expiry.Equal(b.Expiry)
}

// Delete forgets the connection and its tokens (the token first). Deleting an absent
// connection is not an error.
func (v *Vault) Delete(ctx context.Context, c *Connection) error {
	v.docMu.Lock()
	defer v.docMu.Unlock()
	id := c.ID
	if d, err := v.getDoc(ctx, c.Provider, c.PatientID); err == nil {
		id = d.ID
	} else if !errors.Is(err, ErrNotConnected) {
		return err
	}
	if id != "" {
		if err := v.rec.DeleteRecord(ctx, kindToken, id); err != nil {
			return fmt.Errorf("providers: vault: delete token: %w", err)
		}
		if err := v.rec.DeleteRecord(ctx, kindLease, id); err != nil {
			return fmt.Errorf("providers: vault: delete lease: %w", err)
		}
		v.forget(id)
	}
	if err := v.rec.DeleteRecord(ctx, kindConn, connKey(c.Provider, c.PatientID)); err != nil {
		return fmt.Errorf("providers: vault: delete connection: %w", err)
	}
	v.dropIndex(ctx, c.Provider, c.VendorUserID, c.PatientID)
	return nil
}

// MarkNeedsReauth records that the vendor refused the connection's tokens: the patient must
// connect again. reason is a short public text (never raw vendor text). It updates c too, and
// returns ErrNotConnected if the connection is gone.
func (v *Vault) MarkNeedsReauth(ctx context.Context, c *Connection, reason string) error {
	v.docMu.Lock()
	defer v.docMu.Unlock()
	d, err := v.getDoc(ctx, c.Provider, c.PatientID)
	if err != nil {
		return err
	}
	d.Status, d.LastError = StatusNeedsReauth, reason
	cur := d.connection()
	if err := v.putDoc(ctx, cur); err != nil {
		return err
	}
	c.Status, c.LastError = cur.Status, cur.LastError
	return nil
}
