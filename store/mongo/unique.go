package mongo

import (
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// CreateUnique without transactions. The one unique index every collection has, on _id, is the
// arbiter: the id of the new resource is derived from its type and the identifier, as a keyed
// hash over a slot number 0, 1, 2, …, so that every writer registering one identifier — in this
// process or in another one on the same database — tries the same ids in the same order, and of
// concurrent inserts of one id exactly one succeeds (single-document atomicity). A loser finds
// the winner through the identifier index and returns it. A slot held by a resource that no
// longer carries the identifier (deleted, or updated to another one) is skipped: the next
// registration of the identifier takes the next slot. Nothing is reserved apart from the
// resource itself, so a failed write leaves nothing to clean up, and a retried call finds the
// resource it created.
//
// The key of the hash is random, made once per database and kept in the records collection:
// ids derived from identifiers with a public function would let anyone holding a Patient id
// guess the medical record number behind it. Correctness does not depend on the key, only on
// every writer using the same one.
//
// On a sharded cluster MongoDB enforces _id uniqueness per shard. The intended shard key
// {pat, _id} routes two inserts of one Patient id to the same shard (a Patient's pat is its own
// id), so the guarantee holds for Patients, the only type the API registers this way.

const (
	slotKeyKind = "mongo.store"
	slotKeyID   = "create-unique-key"
)

// uniqueKey returns the database's key for derived ids, creating it on first use.
func (s *Store) uniqueKey(ctx context.Context) ([]byte, error) {
	if k := s.slotKey.Load(); k != nil {
		return *k, nil
	}
	k, err := s.GetRecord(ctx, slotKeyKind, slotKeyID)
	if errors.Is(err, store.ErrNotFound) {
		fresh := make([]byte, 32)
		_, _ = crand.Read(fresh) // crypto/rand.Read never fails
		switch err = s.CreateRecord(ctx, slotKeyKind, slotKeyID, fresh, time.Time{}); {
		case err == nil:
			k = fresh
		case errors.Is(err, store.ErrDuplicate): // another writer made it first
			k, err = s.GetRecord(ctx, slotKeyKind, slotKeyID)
		}
	}
	if err != nil {
		return nil, err
	}
	s.slotKey.Store(&k)
	return k, nil
}

// slotID is the id of slot n of an identifier key of typ.
func slotID(key []byte, typ, ident string, n int) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(typ + "\x00" + ident + "\x00" + strconv.Itoa(n)))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// CreateUnique implements store.Store (see the comment above for how).
func (s *Store) CreateUnique(ctx context.Context, r fhir.Resource, system, value string) (store.Entry, bool, error) {
	typ := r.Type()
	c, err := s.coll(typ)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("mongo: create unique: %w", err)
	}
	if !store.CarriesIdentifier(r, system, value) {
		return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: the resource does not carry the identifier", typ)
	}
	key, err := s.uniqueKey(ctx)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: key: %w", typ, err)
	}
	ident := tokenKey(identifierColumn, system, value)
	slot := 0
	for attempt := range maxAttempts {
		found, err := lookup(ctx, c, []string{ident})
		if err != nil {
			return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: lookup identifier: %w", typ, err)
		}
		switch hs := found[ident]; {
		case len(hs) > 1:
			return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: the identifier is carried by %d resources: %w", typ, len(hs), store.ErrDuplicate)
		case len(hs) == 1:
			e, err := s.Read(ctx, typ, hs[0].ID)
			if err == nil {
				return e, false, nil
			}
			if !errors.Is(err, store.ErrDeleted) && !errors.Is(err, store.ErrNotFound) {
				return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: %w", typ, err)
			}
			continue // deleted since the lookup: look again
		}
		id := slotID(key, typ, ident, slot)
		d, err := s.prepare(r, id, 1, now(0))
		if err != nil {
			return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: %w", typ, err)
		}
		err = s.insert(ctx, c, typ, d)
		if err == nil {
			return entryOf(typ, d), true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return store.Entry{}, false, fmt.Errorf("mongo: create unique %s/%s: %w", typ, id, err)
		}
		// The slot is taken: by a writer that has just registered the identifier (the next
		// lookup finds it) or by a resource that no longer carries it (then the next slot).
		s.log.DebugContext(ctx, "mongo: create unique found its slot taken", "type", typ, "slot", slot, "attempt", attempt+1)
		slot++
	}
	return store.Entry{}, false, fmt.Errorf("mongo: create unique %s: no free slot after %d attempts: %w", typ, maxAttempts, store.ErrVersionConflict)
}
