package mongo

import (
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// maxChainTargets bounds the resources one chained clause may reach. A chain is answered in two
// steps, the targets' ids first (on their collection's tk index, as a plain search of the target
// would find them), then an $in of their reference keys: FerretDB v1 has no $lookup, and a join
// across collections would cross shards anyway. A chain reaching more targets than this (the
// system-only patient.identifier=urn:mrn| over a large population) is refused as too costly.
const maxChainTargets = 1000

// resolveChains returns q with every chained clause replaced by the plain reference clause to
// the targets it reaches — search.ReferenceMatches on Type/id is chainMatches once the targets
// are known, and patientHint then puts patient chains on the pat-first indexes. A chain without
// targets keeps no values, which valuesCond turns into a condition nothing matches. q itself is
// not changed. The error is a 400 too-costly beyond maxChainTargets targets.
func (s *Store) resolveChains(ctx context.Context, q *search.Query) (*search.Query, error) {
	if !slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return c.Chain != nil }) {
		return q, nil
	}
	out := *q
	out.Clauses = slices.Clone(q.Clauses)
	for i, c := range out.Clauses {
		if c.Chain == nil {
			continue
		}
		vals, err := s.chainTargets(ctx, c.Chain)
		if err != nil {
			return nil, err
		}
		out.Clauses[i] = search.Clause{Param: c.Param, Values: vals}
	}
	return &out, nil
}

// chainTargets lists the live resources a chain reaches as reference values.
func (s *Store) chainTargets(ctx context.Context, ch *search.Chain) ([]search.Value, error) {
	limit := s.chainLimit
	if limit <= 0 {
		limit = maxChainTargets
	}
	var vals []search.Value
	for _, tp := range ch.Targets {
		c, err := s.coll(tp.Resource)
		if err != nil {
			return nil, fmt.Errorf("mongo: chain: %w", err)
		}
		f, err := valuesCond(search.Clause{Param: tp, Values: ch.Values})
		if err != nil {
			return nil, fmt.Errorf("mongo: chain to %s.%s: %w", tp.Resource, tp.Name, err)
		}
		f = andOf(mk(fDeleted, false), f)
		if f.none {
			continue
		}
		opts := options.Find().SetProjection(bson.D{{Key: fID, Value: 1}}).SetLimit(int64(limit - len(vals) + 1))
		cur, err := c.Find(ctx, f.doc(), opts)
		if err != nil {
			return nil, fmt.Errorf("mongo: chain to %s.%s: %w", tp.Resource, tp.Name, err)
		}
		for cur.Next(ctx) {
			id, ok := cur.Current.Lookup(fID).StringValueOK()
			if !ok {
				cur.Close(context.WithoutCancel(ctx))
				return nil, fmt.Errorf("mongo: chain to %s.%s: stored document without a string _id", tp.Resource, tp.Name)
			}
			vals = append(vals, search.Value{RefType: tp.Resource, RefID: id})
		}
		err = cur.Err()
		cur.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("mongo: chain to %s.%s: %w", tp.Resource, tp.Name, err)
		}
		if len(vals) > limit {
			return nil, fhir.Invalid(fhir.CodeTooCostly, "a chained search may reach at most %d resources; %s.%s matches more: narrow the value", limit, tp.Resource, tp.Name)
		}
	}
	return vals, nil
}
