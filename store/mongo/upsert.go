package mongo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// lookupChunk bounds the identifier keys of one $in lookup.
const lookupChunk = 500

// upsertID is the id of a resource Upsert creates without one: derived from its type and first
// identifier, so that two writers creating the same resource at once collide on _id (and the
// loser turns into an update) instead of storing it twice; there is no transaction and no
// unique index on identifiers to prevent that otherwise.
func upsertID(typ, key string) string {
	sum := sha256.Sum256([]byte(typ + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// setMeta records a stored version on r without writing (an unchanged upsert).
func setMeta(r fhir.Resource, h head) {
	b := r.Common()
	b.ID = h.ID
	if b.Meta == nil {
		b.Meta = &fhir.Meta{}
	}
	b.Meta.VersionID = strconv.FormatInt(h.Version, 10)
	b.Meta.LastUpdated = fhir.Instant(time.UnixMicro(h.LastUpd))
}

// Upsert writes many resources, matching each to a stored resource of its type by its first
// identifier (system and value, both required). Unchanged content (everything but id and meta)
// writes nothing. A resource matching several stored ones fails the whole call with
// store.ErrDuplicate before anything is written. Writes are single-document: an error part-way
// may leave earlier resources written; running the call again is idempotent.
func (s *Store) Upsert(ctx context.Context, rs []fhir.Resource) ([]store.UpsertResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mongo: upsert: %w", err)
	}
	keys := make([]string, len(rs))
	orig := make([]string, len(rs))
	byType := map[string][]int{}
	var types []string
	for i, r := range rs {
		typ := r.Type()
		if _, err := s.coll(typ); err != nil {
			return nil, fmt.Errorf("mongo: upsert: %w", err)
		}
		system, value, ok := store.FirstIdentifier(r)
		if !ok {
			return nil, fhir.Invalid(fhir.CodeRequired, "%s.identifier: upsert needs a first identifier with system and value", typ)
		}
		if rid := r.Common().ID; rid != "" && !fhir.ValidID(rid) {
			return nil, fhir.Invalid(fhir.CodeValue, "%s.id: invalid id", typ)
		}
		keys[i] = tokenKey(identifierColumn, system, value)
		orig[i] = r.Common().ID
		if _, ok := byType[typ]; !ok {
			types = append(types, typ)
		}
		byType[typ] = append(byType[typ], i)
	}
	// Plan every type before writing any: a duplicate anywhere fails the call with nothing written.
	out := make([]store.UpsertResult, len(rs))
	plans := make([][]upsertOp, len(types))
	for j, typ := range types {
		ops, err := s.planUpsert(ctx, typ, byType[typ], rs, keys, orig, out)
		if err != nil {
			return nil, fmt.Errorf("mongo: upsert %s: %w", typ, err)
		}
		plans[j] = ops
	}
	for j, typ := range types {
		if err := s.runUpsert(ctx, typ, plans[j], rs, keys, orig, out); err != nil {
			return nil, fmt.Errorf("mongo: upsert %s: %w", typ, err)
		}
	}
	return out, nil
}

// lookup returns the live documents carrying each identifier key.
func lookup(ctx context.Context, c *mongo.Collection, keys []string) (map[string][]head, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	uk := uniq(append([]string(nil), keys...))
	found := map[string][]head{}
	proj := append(slices.Clone(headProjection), bson.E{Key: fTok, Value: 1})
	for start := 0; start < len(uk); start += lookupChunk {
		chunk := uk[start:min(start+lookupChunk, len(uk))]
		filter := andOf(mk(fDeleted, false), in(fTok, chunk)).doc()
		cur, err := c.Find(ctx, filter, options.Find().SetProjection(proj))
		if err != nil {
			return nil, err
		}
		for cur.Next(ctx) {
			var d struct {
				Head head     `bson:",inline"`
				Tok  []string `bson:"tk"`
			}
			if err := cur.Decode(&d); err != nil {
				_ = cur.Close(context.WithoutCancel(ctx))
				return nil, err
			}
			d.Head.Amends = amends(d.Tok)
			for _, k := range d.Tok {
				if want[k] {
					found[k] = append(found[k], d.Head)
				}
			}
		}
		err = cur.Err()
		_ = cur.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

// statusPrefix starts the token key of an Observation's status.
var statusPrefix = tokenKey("status", search.ObservationStatusSystem, "")

// amends reports whether the token keys tok hold an Observation status that a change makes
// amended (store.Amends).
func amends(tok []string) bool {
	for _, k := range tok {
		if code, ok := strings.CutPrefix(k, statusPrefix); ok && store.Amends(code) {
			return true
		}
	}
	return false
}

// sameAs reports whether r, whose content hash is h, equals the stored version st. One that
// differs from a stored Observation that a change amends is made amended first
// (store.SetAmended) and compared again, so that it equals a stored version that is already its
// amended form. amended reports that it changed r's status.
func sameAs(r fhir.Resource, h string, st head) (same, amended bool, err error) {
	if st.Hash == h {
		return true, false, nil
	}
	if !st.Amends || !store.SetAmended(r, true) {
		return false, false, nil
	}
	ha, err := contentHash(r)
	return err == nil && st.Hash == ha, true, err
}

// statusAmends reports whether r, stored, is an Observation that a change amends.
func statusAmends(r fhir.Resource) bool {
	o, ok := r.(*fhir.Observation)
	return ok && store.Amends(o.Status)
}

// upsertOp is one planned write of the bulk path.
type upsertOp struct {
	i       int // index into rs
	model   mongo.WriteModel
	replace bool
	// prev is the stored version a replacement replaces (its copy goes to history first).
	prev head
	// deferred ops are not in the bulk write: with history kept, a resource written twice in
	// one call is written the second time by upsertOne, after the bulk write, so that the
	// version it replaces is copied once it really exists (history.go).
	deferred bool
	// amended: planning made the resource amended (store.SetAmended); a redo by upsertOne
	// decides again from what it finds.
	amended bool
}

// planUpsert looks up the stored resources matching rs[idxs] (all of type typ) in one query and
// plans their writes, filling out with the planned outcomes.
func (s *Store) planUpsert(ctx context.Context, typ string, idxs []int, rs []fhir.Resource, keys, orig []string, out []store.UpsertResult) ([]upsertOp, error) {
	c := s.colls[typ]
	var ks []string
	for _, i := range idxs {
		ks = append(ks, keys[i])
	}
	found, err := lookup(ctx, c, ks)
	if err != nil {
		return nil, fmt.Errorf("lookup identifiers: %w", err)
	}
	state := map[string]head{}
	for k, hs := range found {
		if len(hs) > 1 {
			return nil, fmt.Errorf("an identifier matches %d stored resources: %w", len(hs), store.ErrDuplicate)
		}
		state[k] = hs[0]
	}
	lu := now(0)
	var ops []upsertOp
	planned, deferred := map[string]bool{}, map[string]bool{}
	for _, i := range idxs {
		r, key := rs[i], keys[i]
		if deferred[key] || (planned[key] && s.historyOn()) {
			deferred[key] = true
			ops = append(ops, upsertOp{i: i, deferred: true})
			continue
		}
		planned[key] = true
		h, err := contentHash(r)
		if err != nil {
			return nil, err
		}
		st, exists := state[key]
		var same, amended bool
		if exists {
			if same, amended, err = sameAs(r, h, st); err != nil {
				return nil, err
			}
		}
		if same {
			setMeta(r, st)
			out[i] = store.UpsertResult{ID: st.ID, VersionID: st.Version}
			continue
		}
		if !exists {
			id := orig[i]
			if id == "" {
				id = upsertID(typ, key)
			}
			d, err := s.prepare(r, id, 1, lu)
			if err != nil {
				return nil, err
			}
			ops = append(ops, upsertOp{i: i, model: mongo.NewInsertOneModel().SetDocument(d)})
			state[key] = head{ID: id, Version: 1, LastUpd: lu, Patient: d.Patient, Hash: d.Hash, Amends: statusAmends(r)}
			out[i] = store.UpsertResult{ID: id, VersionID: 1, Created: true}
			continue
		}
		d, err := s.prepare(r, st.ID, st.Version+1, max(lu, st.LastUpd+1))
		if err != nil {
			return nil, err
		}
		ops = append(ops, upsertOp{i: i, replace: true, prev: st, amended: amended, model: mongo.NewReplaceOneModel().SetFilter(versionFilter(st)).SetReplacement(d)})
		state[key] = head{ID: st.ID, Version: d.Version, LastUpd: d.LastUpd, Patient: d.Patient, Hash: d.Hash, Amends: statusAmends(r)}
		out[i] = store.UpsertResult{ID: st.ID, VersionID: d.Version, Changed: true}
	}
	return ops, nil
}

// runUpsert executes planned writes of one type in one ordered BulkWrite, and redoes through
// upsertOne the writes that lost a race.
func (s *Store) runUpsert(ctx context.Context, typ string, ops []upsertOp, rs []fhir.Resource, keys, orig []string, out []store.UpsertResult) error {
	c := s.colls[typ]
	var later []upsertOp
	ops = slices.DeleteFunc(slices.Clone(ops), func(o upsertOp) bool {
		if o.deferred {
			later = append(later, o)
		}
		return o.deferred
	})
	if err := s.bulkUpsert(ctx, c, typ, ops, rs, keys, orig, out); err != nil {
		return err
	}
	for _, o := range later {
		r, err := s.upsertOne(ctx, c, typ, rs[o.i], keys[o.i], orig[o.i])
		if err != nil {
			return err
		}
		r.Created = r.Created || out[o.i].Created
		out[o.i] = r
	}
	var ws []written
	for _, o := range append(ops, later...) {
		if r := out[o.i]; r.Created || r.Changed {
			ws = append(ws, written{r.ID, r.VersionID})
		}
	}
	s.prune(ctx, typ, ws...)
	return nil
}

// bulkUpsert runs the bulk part of runUpsert.
func (s *Store) bulkUpsert(ctx context.Context, c *mongo.Collection, typ string, ops []upsertOp, rs []fhir.Resource, keys, orig []string, out []store.UpsertResult) error {
	if len(ops) == 0 {
		return nil
	}
	priors, err := s.priorsOf(ctx, c, typ, ops)
	if err != nil {
		return err
	}
	if err := s.keepPriors(ctx, priors); err != nil {
		return err
	}
	models := make([]mongo.WriteModel, len(ops))
	for j, o := range ops {
		models[j] = o.model
	}
	ids := make([]string, len(ops))
	for j, o := range ops {
		ids[j] = rs[o.i].Common().ID
	}
	unlock := s.locks.lock(typ, ids...)
	res, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(true))
	unlock()
	done := len(ops) // ops[:done] ran
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 || !mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("bulk write: %w", err)
		}
		// Ordered: everything before the first error ran, nothing after it did. A duplicate
		// _id means someone else created or once deleted that resource: redo from there.
		done = bwe.WriteErrors[0].Index
	}
	replaced := 0
	for _, o := range ops[:done] {
		if o.replace {
			replaced++
		}
	}
	var matched int64
	if res != nil {
		matched = res.MatchedCount
	}
	for j, o := range ops {
		switch {
		case j >= done:
			// Never ran: its planned outcome is void.
			if o.amended {
				store.SetAmended(rs[o.i], false)
			}
			r, err := s.upsertOne(ctx, c, typ, rs[o.i], keys[o.i], orig[o.i])
			if err != nil {
				return err
			}
			out[o.i] = r
		case o.replace && matched < int64(replaced):
			// Some replacement found its version gone; which one the result does not say, so
			// recheck them all. One that did apply reads back as unchanged and stays "Changed".
			if o.amended {
				store.SetAmended(rs[o.i], false)
			}
			r, err := s.upsertOne(ctx, c, typ, rs[o.i], keys[o.i], orig[o.i])
			if err != nil {
				return err
			}
			r.Created = r.Created || out[o.i].Created
			r.Changed = r.Changed || out[o.i].Changed
			out[o.i] = r
		}
	}
	return nil
}

// upsertOne upserts one resource by its identifier key with the single-document
// optimistic-concurrency loop.
func (s *Store) upsertOne(ctx context.Context, c *mongo.Collection, typ string, r fhir.Resource, key, origID string) (store.UpsertResult, error) {
	h, err := contentHash(r)
	if err != nil {
		return store.UpsertResult{}, err
	}
	amended := false
	for attempt := range maxAttempts {
		if amended { // an attempt that lost a race decides again
			store.SetAmended(r, false)
			amended = false
		}
		found, err := lookup(ctx, c, []string{key})
		if err != nil {
			return store.UpsertResult{}, fmt.Errorf("lookup identifier: %w", err)
		}
		hs := found[key]
		if len(hs) > 1 {
			return store.UpsertResult{}, fmt.Errorf("an identifier matches %d stored resources: %w", len(hs), store.ErrDuplicate)
		}
		if len(hs) == 1 {
			st := hs[0]
			var same bool
			if same, amended, err = sameAs(r, h, st); err != nil {
				return store.UpsertResult{}, err
			}
			if same {
				setMeta(r, st)
				return store.UpsertResult{ID: st.ID, VersionID: st.Version}, nil
			}
			d, err := s.prepare(r, st.ID, st.Version+1, now(st.LastUpd))
			if err != nil {
				return store.UpsertResult{}, err
			}
			saved, err := s.keepPriorAt(ctx, c, typ, st)
			if err != nil {
				return store.UpsertResult{}, err
			}
			if saved {
				res, err := s.replace(ctx, c, typ, st, d)
				if err != nil {
					return store.UpsertResult{}, err
				}
				if res.MatchedCount == 1 {
					return store.UpsertResult{ID: st.ID, VersionID: d.Version, Changed: true}, nil
				}
			}
		} else {
			id := origID
			if id == "" {
				id = upsertID(typ, key)
			}
			cur, exists, err := readHead(ctx, c, id)
			if err != nil {
				return store.UpsertResult{}, err
			}
			switch {
			case exists && cur.Deleted:
				// The resource was deleted; the upsert brings it back with its next version.
				d, err := s.prepare(r, id, cur.Version+1, now(cur.LastUpd))
				if err != nil {
					return store.UpsertResult{}, err
				}
				if err := s.keepPriors(ctx, []historyDoc{priorOf(typ, cur, "")}); err != nil {
					return store.UpsertResult{}, err
				}
				res, err := s.replace(ctx, c, typ, cur, d)
				if err != nil {
					return store.UpsertResult{}, err
				}
				if res.MatchedCount == 1 {
					return store.UpsertResult{ID: id, VersionID: d.Version, Created: true}, nil
				}
			case exists && origID != "":
				return store.UpsertResult{}, fmt.Errorf("id taken by a resource with another identifier: %w", store.ErrDuplicate)
			default:
				if exists {
					id = newID() // the derived id is taken by a resource that lost this identifier
				}
				d, err := s.prepare(r, id, 1, now(0))
				if err != nil {
					return store.UpsertResult{}, err
				}
				err = s.insert(ctx, c, typ, d)
				if err == nil {
					return store.UpsertResult{ID: id, VersionID: 1, Created: true}, nil
				}
				if !mongo.IsDuplicateKeyError(err) {
					return store.UpsertResult{}, err
				}
			}
		}
		s.log.DebugContext(ctx, "mongo: upsert lost a race, retrying", "type", typ, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return store.UpsertResult{}, err
		}
	}
	return store.UpsertResult{}, fmt.Errorf("%d concurrent writers won in a row: %w", maxAttempts, store.ErrVersionConflict)
}
