package mongo

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// LastN implements store.Store in two steps, because FerretDB v1, our CI stand-in, has none of
// the accumulators a single aggregation would need ($push with $slice, $topN, $first: its $group
// knows $count and $sum only):
//
//  1. the codings: an aggregation that matches the patient's matching Observations (on MongoDB
//     through the pat-first indexes), unwinds their token keys only — never the JSON — and
//     groups the "code|…" ones. Not a distinct on tk: that would return every other token of
//     the matched documents too, one identifier per Observation;
//  2. per coding one find on the hot index {pat, tk, dt.date.lo}, sorted newest first,
//     limited to n.
func (s *Store) LastN(ctx context.Context, q *search.Query, n int) ([]store.CodeGroup, error) {
	// Chained filters (device.identifier=…) become plain clauses first, as in Search.
	q, err := s.resolveChains(ctx, q)
	if err != nil {
		return nil, err
	}
	lq, err := store.SplitLastN(q)
	if err != nil {
		return nil, fmt.Errorf("mongo: lastn: %w", err)
	}
	if n <= 0 {
		return nil, fmt.Errorf("mongo: lastn: n = %d", n)
	}
	c, err := s.coll("Observation")
	if err != nil {
		return nil, fmt.Errorf("mongo: lastn: %w", err)
	}
	codings := lq.Named
	if codings == nil {
		if codings, err = s.codings(ctx, lq.Clauses); err != nil {
			return nil, fmt.Errorf("mongo: lastn codings: %w", err)
		}
	}
	fields := []sortField{{field: fSort, desc: true}, {field: fID, desc: true}}
	var out []store.CodeGroup
	for _, cd := range codings {
		f, err := filterOf(lq.GroupQuery(s.reg, cd, n))
		if err != nil {
			return nil, fmt.Errorf("mongo: lastn: %w", err)
		}
		rows, err := s.fetchPage(ctx, c, "Observation", f, fields, false, n, false)
		if err != nil {
			return nil, fmt.Errorf("mongo: lastn: %w", err)
		}
		if len(rows) == 0 {
			continue
		}
		g := store.CodeGroup{Coding: cd, Entries: make([]store.Entry, len(rows))}
		for i := range rows {
			g.Entries[i] = rows[i].entry
		}
		out = append(out, g)
	}
	return out, nil
}

// codings returns the distinct codings of Observation.code among the Observations matching
// clauses, ordered by system then code.
func (s *Store) codings(ctx context.Context, clauses []search.Clause) ([]store.Coding, error) {
	f, err := filterOf(&search.Query{Type: "Observation", Clauses: clauses})
	if err != nil || f.none {
		return nil, err
	}
	prefix := regex(fTok, "^"+colsRE([]string{"code"})).doc()
	pipeline := bson.A{
		bson.D{{Key: "$match", Value: f.doc()}},
		bson.D{{Key: "$project", Value: bson.D{{Key: fTok, Value: 1}}}},
		bson.D{{Key: "$unwind", Value: "$" + fTok}},
		bson.D{{Key: "$match", Value: prefix}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + fTok}}}},
	}
	cur, err := s.colls["Observation"].Aggregate(ctx, pipeline)
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []store.Coding
	for cur.Next(ctx) {
		key, ok := cur.Current.Lookup("_id").StringValueOK()
		if !ok {
			return nil, fmt.Errorf("token key is not a string")
		}
		col, system, code, ok := splitTokenKey(key)
		if !ok || col != "code" {
			return nil, fmt.Errorf("malformed token key %q", key)
		}
		out = append(out, store.Coding{System: system, Code: code})
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, store.CompareCoding)
	return slices.Compact(out), nil
}

// splitTokenKey parses a token key "column|system|code" (see tokenKey).
func splitTokenKey(k string) (col, system, code string, ok bool) {
	col, rest, found := strings.Cut(k, "|")
	if !found {
		return "", "", "", false
	}
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '\\':
			i++
		case '|':
			return col, unesc(rest[:i]), unesc(rest[i+1:]), true
		}
	}
	return "", "", "", false
}
