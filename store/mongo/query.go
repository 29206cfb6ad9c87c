package mongo

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// This file translates the search IR into MongoDB filters that reproduce search/match.go exactly;
// the comments name the match.go rule each branch implements. Only operators that MongoDB and
// FerretDB v1 both evaluate are used: equality and $in on (multikey) fields, $regex, $gt/$gte/
// $lt/$lte on dotted paths, $exists, $and, $or and $nor at the top level.

// cond is a translated filter fragment. all and none are the constant outcomes, kept apart so
// that negation and the combinators stay exact without emitting tautologies.
type cond struct {
	d    bson.D
	all  bool
	none bool
}

var (
	condAll  = cond{all: true}
	condNone = cond{none: true}
)

func mk(key string, value any) cond { return cond{d: bson.D{{Key: key, Value: value}}} }

func op(name string, value any) bson.D { return bson.D{{Key: name, Value: value}} }

// andOf is true when every fragment is.
func andOf(cs ...cond) cond {
	var parts bson.A
	for _, c := range cs {
		switch {
		case c.none:
			return condNone
		case c.all:
			continue
		}
		parts = append(parts, c.d)
	}
	switch len(parts) {
	case 0:
		return condAll
	case 1:
		return cond{d: parts[0].(bson.D)}
	}
	return mk("$and", parts)
}

// orOf is true when some fragment is; no fragment at all is false.
func orOf(cs ...cond) cond {
	var parts bson.A
	for _, c := range cs {
		switch {
		case c.all:
			return condAll
		case c.none:
			continue
		}
		parts = append(parts, c.d)
	}
	switch len(parts) {
	case 0:
		return condNone
	case 1:
		return cond{d: parts[0].(bson.D)}
	}
	return mk("$or", parts)
}

// notOf negates a fragment. $nor also matches documents lacking the field altogether, which is
// what :not and :missing=true need.
func notOf(c cond) cond {
	switch {
	case c.all:
		return condNone
	case c.none:
		return condAll
	}
	return mk("$nor", bson.A{c.d})
}

// in matches a field (or a multikey array) against a set of values.
func in(field string, vals []string) cond {
	switch len(vals) {
	case 0:
		return condNone
	case 1:
		return mk(field, vals[0])
	}
	a := make(bson.A, len(vals))
	for i, v := range vals {
		a[i] = v
	}
	return mk(field, op("$in", a))
}

func regex(field, re string) cond { return mk(field, op("$regex", re)) }

// filterOf translates every clause of q (ANDed) plus the live-resource condition.
func filterOf(q *search.Query) (cond, error) {
	parts := []cond{mk(fDeleted, false)}
	for _, c := range q.Clauses {
		if c.Param == nil {
			return cond{}, fmt.Errorf("clause without parameter")
		}
		tc, err := clauseOf(c)
		if err != nil {
			return cond{}, err
		}
		parts = append(parts, tc)
		if ids := patientHint(q.Type, c); len(ids) > 0 {
			parts = append(parts, in(fPatient, ids))
		}
	}
	return andOf(parts...), nil
}

// compartmentColumn names, per resource type, the reference column search.PatientOf reads the
// compartment from; a reference clause on it to Patient/x is then equivalent to pat = x.
var compartmentColumn = map[string]string{
	"Observation":       "subject",
	"DeviceAssociation": "subject",
}

// patientHint returns the patient ids a clause restricts the search to when that restriction is
// exactly pat ∈ ids (patient=…, subject=Patient/…), so that the pat-first indexes apply. The
// clause's own condition stays in the filter; the hint is implied by it, never an extra rule.
func patientHint(typ string, c search.Clause) []string {
	col, ok := compartmentColumn[typ]
	if !ok || c.Param.Type != search.Reference || len(c.Param.Columns) != 1 || c.Param.Columns[0] != col {
		return nil
	}
	if c.Modifier != "" && c.Modifier != "Patient" {
		return nil
	}
	var ids []string
	for _, v := range c.Values {
		if v.RefURL != "" || v.RefType != "Patient" || v.RefID == "" {
			return nil
		}
		ids = append(ids, v.RefID)
	}
	return ids
}

// clauseOf implements match.go's clauseMatches for one clause.
func clauseOf(c search.Clause) (cond, error) {
	var present, any cond
	switch c.Param.Name {
	case "_id":
		// Entries are [{Type: Token, Code: id}]: always present.
		present = condAll
		any = idCond(c.Values)
	case "_lastUpdated":
		// Entries are [{Lo: lastUpdated, Hi: lastUpdated+1}]: always present.
		present = condAll
		var cs []cond
		for _, v := range c.Values {
			cs = append(cs, dateCond(v.Prefix, v.Lo, v.Hi, fLastUpd, fLastUpd, 1))
		}
		any = orOf(cs...)
	default:
		present = presence(c.Param)
		var err error
		if any, err = valuesCond(c); err != nil {
			return cond{}, err
		}
	}
	switch c.Modifier {
	case "missing":
		// :missing=true matches resources with no value for the parameter.
		if c.Missing {
			return notOf(present), nil
		}
		return present, nil
	case "not":
		// :not matches resources where no value matches, including those without a value.
		return notOf(any), nil
	}
	return any, nil
}

// idCond: TokenMatches against the entry {System: "", Code: id}.
func idCond(vals []search.Value) cond {
	var ids []string
	for _, v := range vals {
		if !v.AnySystem && v.System != "" {
			continue // no id has a system
		}
		if v.AnyCode {
			return condAll
		}
		ids = append(ids, v.Code)
	}
	return in(fID, ids)
}

// presence matches resources having at least one entry in one of the parameter's columns.
func presence(p *search.Param) cond {
	cols := p.Columns
	switch p.Type {
	case search.Token:
		return regex(fTok, "^"+colsRE(cols))
	case search.Reference:
		if p.IsView() { // only entries of the view's target types count (match.go)
			t := make([]string, len(p.Targets))
			for i, x := range p.Targets {
				t[i] = quoteRE(x)
			}
			// Local "col|Type|id", or an absolute URL "col||…/Type/id" (see search.Extract).
			types := `(?:` + strings.Join(t, "|") + `)`
			return regex(fRef, "^"+colsRE(cols)+`(?:`+types+`\||\|.*/`+types+`/[^/]+$)`)
		}
		return regex(fRef, "^"+colsRE(cols))
	case search.String:
		return regex(fStrNorm, "^"+colsRE(cols))
	case search.Date:
		var cs []cond
		for _, col := range cols {
			cs = append(cs, mk(fDate+"."+col, op("$exists", true)))
		}
		return orOf(cs...)
	case search.Quantity:
		var cs []cond
		for _, col := range cols {
			cs = append(cs, mk(fQty+"."+col, op("$exists", true)))
		}
		return orOf(cs...)
	}
	// Other types are never indexed: entryMatches is false and nothing is present.
	return condNone
}

// valuesCond is "some value matches some entry of the parameter's columns" (entryMatches).
func valuesCond(c search.Clause) (cond, error) {
	p := c.Param
	var exact []string // keys matched by equality, gathered into one $in
	exactField := ""
	var cs []cond
	addExact := func(field string, keys ...string) {
		exactField = field
		exact = append(exact, keys...)
	}
	for _, v := range c.Values {
		switch p.Type {
		case search.Token:
			// TokenMatches: code (any system), |code (no system), system|code, system| (any code).
			switch {
			case v.AnySystem && v.AnyCode:
				cs = append(cs, presence(p))
			case v.AnyCode:
				cs = append(cs, regex(fTok, "^"+colsRE(p.Columns)+quoteRE(esc(v.System))+`\|`))
			case v.AnySystem:
				cs = append(cs, regex(fTok, "^"+colsRE(p.Columns)+escComponentRE+`*\|`+quoteRE(esc(v.Code))+`\z`))
			default:
				for _, col := range p.Columns {
					addExact(fTok, tokenKey(col, v.System, v.Code))
				}
			}
		case search.String:
			// StringMatches: default prefix on Norm, :contains substring on Norm, :exact on Exact.
			switch c.Modifier {
			case "exact":
				for _, col := range p.Columns {
					addExact(fStrExac, stringKey(col, v.Str))
				}
			case "contains":
				cs = append(cs, regex(fStrNorm, "^"+colsRE(p.Columns)+`[\s\S]*`+quoteRE(v.Norm)))
			default:
				cs = append(cs, regex(fStrNorm, "^"+colsRE(p.Columns)+quoteRE(v.Norm)))
			}
		case search.Reference:
			// ReferenceMatches: URL to RefURL; id alone to a local reference of any type; Type/id exactly.
			switch {
			case v.RefURL != "":
				for _, col := range p.Columns {
					addExact(fRef, urlRefKey(col, v.RefURL))
				}
			case v.RefType != "":
				for _, col := range p.Columns {
					addExact(fRef, localRefKey(col, v.RefType, v.RefID))
				}
			case v.RefID == "":
				// An empty id matches no local entry and no URL entry.
			default:
				// A local key has a non-empty type, which keeps "column||url" keys out.
				cs = append(cs, regex(fRef, "^"+colsRE(p.Columns)+escComponentRE+`+\|`+quoteRE(esc(v.RefID))+`\z`))
			}
		case search.Date:
			for _, col := range p.Columns {
				base := fDate + "." + col
				cs = append(cs, dateCond(v.Prefix, v.Lo, v.Hi, base+".lo", base+".hi", 0))
			}
		case search.Quantity:
			for _, col := range p.Columns {
				cs = append(cs, quantityCond(v, fQty+"."+col))
			}
		default:
			// entryMatches is false for every other type.
		}
	}
	if len(exact) > 0 {
		cs = append(cs, in(exactField, uniq(exact)))
	}
	return orOf(cs...), nil
}

// dateCond implements DateMatches(prefix, sLo, sHi, tLo, tHi) with tLo read from loField and tHi
// from hiField + hiOffset (_lastUpdated stores the instant t and matches as [t, t+1µs), so
// tHi = lu + 1: "tHi > x" becomes "lu > x-1" and "tHi ≤ x" becomes "lu ≤ x-1").
func dateCond(prefix string, sLo, sHi int64, loField, hiField string, hiOffset int64) cond {
	lo := func(o string, x int64) cond { return mk(loField, op(o, x)) }
	hi := func(o string, x int64) cond { return mk(hiField, op(o, x-hiOffset)) }
	eq := func() cond {
		// sLo ≤ tLo && tHi ≤ sHi; one field for both bounds when lo and hi share it.
		if loField == hiField {
			return mk(loField, bson.D{{Key: "$gte", Value: sLo}, {Key: "$lte", Value: sHi - hiOffset}})
		}
		return andOf(lo("$gte", sLo), hi("$lte", sHi))
	}
	switch prefix {
	case "", "eq":
		return eq()
	case "ne":
		return orOf(lo("$lt", sLo), hi("$gt", sHi))
	case "gt":
		return hi("$gt", sHi)
	case "lt":
		return lo("$lt", sLo)
	case "ge":
		return orOf(hi("$gt", sHi), eq())
	case "le":
		return orOf(lo("$lt", sLo), eq())
	case "sa":
		return lo("$gte", sHi)
	case "eb":
		return hi("$lte", sLo)
	case "ap":
		return andOf(lo("$lt", sHi), hi("$gt", sLo))
	}
	return condNone
}

// quantityCond implements QuantityMatches against the quantity stored under base.
func quantityCond(v search.Value, base string) cond {
	var unit cond
	switch {
	case v.UnitAny:
		unit = orOf(mk(base+".u", v.Code), mk(base+".t", v.Code))
	default:
		var us []cond
		if !v.AnySystem {
			us = append(us, mk(base+".s", v.System))
		}
		if !v.AnyCode {
			us = append(us, mk(base+".u", v.Code))
		}
		unit = andOf(us...)
	}
	n := base + ".n"
	var num cond
	switch v.Prefix {
	case "", "eq":
		num = mk(n, bson.D{{Key: "$gte", Value: v.NumLo}, {Key: "$lt", Value: v.NumHi}})
	case "ne":
		num = orOf(mk(n, op("$lt", v.NumLo)), mk(n, op("$gte", v.NumHi)))
	case "gt", "sa":
		num = mk(n, op("$gt", v.Num))
	case "lt", "eb":
		num = mk(n, op("$lt", v.Num))
	case "ge":
		num = mk(n, op("$gte", v.Num))
	case "le":
		num = mk(n, op("$lte", v.Num))
	case "ap":
		d := v.Num * 0.1
		if d < 0 {
			d = -d
		}
		num = mk(n, bson.D{{Key: "$gte", Value: v.Num - d}, {Key: "$lte", Value: v.Num + d}})
	default:
		return condNone
	}
	// A number condition alone also requires the quantity to exist: comparisons never match a
	// missing field.
	return andOf(unit, num)
}
