package search

import "slices"

// This file is the normative definition of how a Query matches an Index. Every store translates
// these rules into its own query language; the conformance suite (store/storetest) checks that
// they agree. Special parameters: _id compares Value.Code with the resource id (exact,
// case-sensitive) and _lastUpdated treats meta.lastUpdated as the range [t, t+1µs).

// Matches reports whether a resource with the given id, lastUpdated (Unix µs) and index satisfies
// every clause of q. A chained clause needs the targets' indexes: here it matches nothing (see
// MatchesWith).
func Matches(q *Query, id string, lastUpdated int64, idx Index) bool {
	return MatchesWith(q, id, lastUpdated, idx, nil)
}

// Resolver returns the index of the live resource typ/id; ok is false when there is none (never
// stored, or deleted).
type Resolver func(typ, id string) (idx Index, ok bool)

// MatchesWith is Matches with chained clauses decided on the targets resolve returns. A nil
// resolve resolves nothing, so that chained clauses match nothing.
func MatchesWith(q *Query, id string, lastUpdated int64, idx Index, resolve Resolver) bool {
	for _, c := range q.Clauses {
		if !clauseMatches(c, id, lastUpdated, idx, resolve) {
			return false
		}
	}
	return true
}

func clauseMatches(c Clause, id string, lastUpdated int64, idx Index, resolve Resolver) bool {
	var entries []Entry
	switch c.Param.Name {
	case "_id":
		entries = []Entry{{Column: "_id", Type: Token, Code: id}}
	case "_lastUpdated":
		entries = []Entry{{Column: "_lastUpdated", Type: Date, Lo: lastUpdated, Hi: lastUpdated + 1}}
	default:
		for _, e := range idx.Entries {
			for _, col := range c.Param.Columns {
				if e.Column == col && (!c.Param.IsView() || slices.Contains(c.Param.Targets, e.RefType)) {
					entries = append(entries, e)
				}
			}
		}
	}
	if c.Chain != nil {
		return chainMatches(c.Chain, entries, resolve)
	}
	if c.Modifier == "missing" {
		// :missing=true matches resources with no value for the parameter.
		return (len(entries) == 0) == c.Missing
	}
	any := false
	for _, v := range c.Values {
		for _, e := range entries {
			if entryMatches(c, v, e) {
				any = true
			}
		}
	}
	// :not matches resources where no value matches, including those without a value
	// (https://hl7.org/fhir/R5/search.html#modifiernot).
	if c.Modifier == "not" {
		return !any
	}
	return any
}

// chainMatches: some entry is a local reference (Type/id) to a live resource of one of the
// chain's target types that has a value of the target parameter matching one of the chain's
// values. Absolute URLs never resolve (they name no stored resource), and a reference to a
// deleted or missing resource matches nothing, so a chain whose value no target has matches
// nothing (https://hl7.org/fhir/R5/search.html#chaining).
func chainMatches(ch *Chain, entries []Entry, resolve Resolver) bool {
	if resolve == nil {
		return false
	}
	for _, e := range entries {
		if e.RefURL != "" || e.RefID == "" {
			continue
		}
		for _, tp := range ch.Targets {
			if e.RefType != tp.Resource {
				continue
			}
			if tidx, ok := resolve(e.RefType, e.RefID); ok && clauseMatches(Clause{Param: tp, Values: ch.Values}, e.RefID, 0, tidx, nil) {
				return true
			}
		}
	}
	return false
}

// entryMatches decides one value against one entry; ne and :not are handled by the caller
// (ne inside DateMatches/QuantityMatches, which are per entry).
func entryMatches(c Clause, v Value, e Entry) bool {
	switch c.Param.Type {
	case Token:
		return TokenMatches(v, e)
	case String:
		return StringMatches(c.Modifier, v, e)
	case Reference:
		return ReferenceMatches(v, e)
	case Date:
		return DateMatches(v.Prefix, v.Lo, v.Hi, e.Lo, e.Hi)
	case Quantity:
		return QuantityMatches(v, e)
	}
	return false
}

// TokenMatches: code (any system), |code (no system), system|code, system| (any code).
func TokenMatches(v Value, e Entry) bool {
	if !v.AnySystem && v.System != e.System {
		return false
	}
	return v.AnyCode || v.Code == e.Code
}

// StringMatches: default is a case- and accent-insensitive prefix match on Norm; :contains a
// substring match on Norm; :exact an exact, case-sensitive match on Exact.
func StringMatches(mod string, v Value, e Entry) bool {
	switch mod {
	case "exact":
		return e.Exact == v.Str
	case "contains":
		return contains(e.Norm, v.Norm)
	}
	return len(e.Norm) >= len(v.Norm) && e.Norm[:len(v.Norm)] == v.Norm
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// ReferenceMatches: an id alone matches a local reference of any type with that id (or of
// RefType when the parameter has a single target or a type modifier); Type/id matches exactly; an
// absolute URL matches RefURL.
func ReferenceMatches(v Value, e Entry) bool {
	if v.RefURL != "" {
		return e.RefURL == v.RefURL
	}
	if e.RefID != v.RefID {
		return false
	}
	return v.RefType == "" || v.RefType == e.RefType
}

// DateMatches applies a date prefix to search range [sLo, sHi) and target range [tLo, tHi)
// (half-open; https://hl7.org/fhir/R5/search.html#prefix).
// For ap the search range arrives already widened and ap means overlap.
func DateMatches(prefix string, sLo, sHi, tLo, tHi int64) bool {
	eq := sLo <= tLo && tHi <= sHi
	switch prefix {
	case "", "eq":
		return eq
	case "ne":
		return !eq
	case "gt":
		return tHi > sHi
	case "lt":
		return tLo < sLo
	case "ge":
		return tHi > sHi || eq
	case "le":
		return tLo < sLo || eq
	case "sa":
		return tLo >= sHi
	case "eb":
		return tHi <= sLo
	case "ap":
		return tLo < sHi && tHi > sLo
	}
	return false
}

// QuantityMatches compares a stored quantity (a point) with a search number whose precision
// implies the range [NumLo, NumHi): eq/ne use the range, gt/lt/ge/le/sa/eb compare with the exact
// number, ap accepts values within 10 % of it. The unit must match when one is given: system and
// code, or (UnitAny, "5.4||mg") the code or the unit text.
func QuantityMatches(v Value, e Entry) bool {
	if v.UnitAny {
		if e.Code != v.Code && e.Unit != v.Code {
			return false
		}
	} else {
		if !v.AnySystem && e.System != v.System {
			return false
		}
		if !v.AnyCode && e.Code != v.Code {
			return false
		}
	}
	x := e.Num
	switch v.Prefix {
	case "", "eq":
		return v.NumLo <= x && x < v.NumHi
	case "ne":
		return !(v.NumLo <= x && x < v.NumHi)
	case "gt", "sa":
		return x > v.Num
	case "lt", "eb":
		return x < v.Num
	case "ge":
		return x >= v.Num
	case "le":
		return x <= v.Num
	case "ap":
		d := v.Num * 0.1
		if d < 0 {
			d = -d
		}
		return x >= v.Num-d && x <= v.Num+d
	}
	return false
}
