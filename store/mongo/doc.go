package mongo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// The document model. One collection per resource type; one document per resource:
//
//	_id   resource id
//	v     version (int64), the optimistic-concurrency token of every write
//	lu    meta.lastUpdated in Unix microseconds
//	del   true once deleted (json and index fields are dropped, v keeps counting)
//	pat   id of the patient whose compartment holds the resource, "" if none (search.PatientOf);
//	      the first field of every hot index and of the intended shard key {pat: 1, _id: 1}
//	sd    sort date in Unix µs (search.Index.SortDate; fhir.MinTime when absent)
//	h     hash of the resource JSON without id and meta: Upsert's "unchanged" test
//	json  the canonical resource JSON, meta included, served byte for byte
//	tk    token entries       "column|system|code"
//	rf    reference entries   "column|Type|id" (local) or "column||url" (absolute)
//	sn    string entries      "column|normalized"
//	se    string entries      "column|exact"
//	dt    date entries        {column: {lo, hi}}
//	qt    quantity entries    {column: {n, s, u, t}}
//
// Why composite strings instead of arrays of subdocuments queried with $elemMatch: FerretDB v1,
// our CI stand-in, rejects $elemMatch with more than one field ("unknown operator: c") or with
// $or/$and/$nor inside (NotImplemented, FerretDB issues #730 and #731), so a filter such as
// {tok: {$elemMatch: {c: "code", s: …, v: …}}} cannot run there. A token, reference or string
// entry folded into one string is matched by equality (or an anchored regular expression) on a
// multikey array, which both engines evaluate identically. On MongoDB it is also the better
// layout: one compact multikey index per kind, and a single array in the hot compound index
// {pat, tk, dt.<col>.lo} (MongoDB refuses compound indexes over two parallel arrays, so an array
// of date subdocuments could never sit beside the token array there).
//
// Dates and quantities need two fields of one entry compared together (eq: lo ≥ a and hi ≤ b),
// which without $elemMatch is exact only when the entry is not in an array. They are therefore
// stored as one subdocument per column, and a resource whose index holds two date (or two
// quantity) entries in the same column is refused at write time. No resource type in the
// registry produces such an index today (effective[x], birthDate and value[x] are single); a new
// parameter that did would fail the conformance suite loudly rather than match inexactly.

// Field names of the document model.
const (
	fID      = "_id"
	fVersion = "v"
	fLastUpd = "lu"
	fDeleted = "del"
	fPatient = "pat"
	fSort    = "sd"
	fHash    = "h"
	fJSON    = "json"
	fTok     = "tk"
	fRef     = "rf"
	fStrNorm = "sn"
	fStrExac = "se"
	fDate    = "dt"
	fQty     = "qt"
)

// identifierColumn is the index column of the identifier parameter on every resource type.
const identifierColumn = "identifier"

// document is a resource as stored.
type document struct {
	ID      string              `bson:"_id"`
	Version int64               `bson:"v"`
	LastUpd int64               `bson:"lu"`
	Deleted bool                `bson:"del"`
	Patient string              `bson:"pat"`
	Sort    int64               `bson:"sd"`
	Hash    string              `bson:"h,omitempty"`
	JSON    string              `bson:"json,omitempty"`
	Tok     []string            `bson:"tk,omitempty"`
	Ref     []string            `bson:"rf,omitempty"`
	StrNorm []string            `bson:"sn,omitempty"`
	StrExac []string            `bson:"se,omitempty"`
	Dates   map[string]dateVal  `bson:"dt,omitempty"`
	Qty     map[string]quantVal `bson:"qt,omitempty"`
}

type dateVal struct {
	Lo int64 `bson:"lo"`
	Hi int64 `bson:"hi"`
}

type quantVal struct {
	Num    float64 `bson:"n"`
	System string  `bson:"s"`
	Code   string  `bson:"u"`
	Unit   string  `bson:"t"`
}

// esc makes a key component unambiguous: "\" and "|" are backslash-escaped, so "|" alone
// always separates components.
func esc(s string) string {
	if !strings.ContainsAny(s, `\|`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`).Replace(s)
}

// unesc reverses esc.
func unesc(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func tokenKey(col, system, code string) string { return col + "|" + esc(system) + "|" + esc(code) }
func localRefKey(col, typ, id string) string   { return col + "|" + esc(typ) + "|" + esc(id) }
func urlRefKey(col, url string) string         { return col + "||" + esc(url) }

// stringKey needs no escaping: the column name never contains "|" and the value is the last
// component, matched only by anchored prefix, substring or equality.
func stringKey(col, s string) string { return col + "|" + s }

// splitRefKey parses a local reference key; ok is false for absolute URLs.
func splitRefKey(k string) (col, typ, id string, ok bool) {
	// An absolute URL is stored with an empty type component ("col||url").
	if _, rest, found := strings.Cut(k, "|"); !found || strings.HasPrefix(rest, "|") {
		return "", "", "", false
	}
	// The same escaped two-component layout as a token key.
	return splitTokenKey(k)
}

// quoteRE escapes s for a regular expression that MongoDB (PCRE) and FerretDB (Go RE2) read the
// same way: every ASCII character other than a letter or digit is backslash-escaped (literal in
// both dialects) and control characters are written as \xHH.
func quoteRE(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// colsRE is a regular expression matching the column part of a key, "|" included.
func colsRE(cols []string) string {
	if len(cols) == 1 {
		return quoteRE(cols[0]) + `\|`
	}
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteRE(c)
	}
	return `(?:` + strings.Join(q, "|") + `)\|`
}

// escComponentRE matches one escaped key component (see esc).
const escComponentRE = `(?:[^\\|]|\\[\\|])`

// buildIndex fills the index fields of d from idx.
func buildIndex(d *document, idx search.Index) error {
	d.Patient = idx.Patient
	d.Sort = idx.SortDate
	for _, e := range idx.Entries {
		switch e.Type {
		case search.Token:
			d.Tok = append(d.Tok, tokenKey(e.Column, e.System, e.Code))
		case search.Reference:
			if e.RefURL != "" {
				d.Ref = append(d.Ref, urlRefKey(e.Column, e.RefURL))
			} else {
				d.Ref = append(d.Ref, localRefKey(e.Column, e.RefType, e.RefID))
			}
		case search.String:
			d.StrNorm = append(d.StrNorm, stringKey(e.Column, e.Norm))
			d.StrExac = append(d.StrExac, stringKey(e.Column, e.Exact))
		case search.Date:
			if d.Dates == nil {
				d.Dates = map[string]dateVal{}
			}
			if _, dup := d.Dates[e.Column]; dup {
				return fmt.Errorf("index column %s holds more than one date; the mongo document model keeps one", e.Column)
			}
			d.Dates[e.Column] = dateVal{Lo: e.Lo, Hi: e.Hi}
		case search.Quantity:
			if d.Qty == nil {
				d.Qty = map[string]quantVal{}
			}
			if _, dup := d.Qty[e.Column]; dup {
				return fmt.Errorf("index column %s holds more than one quantity; the mongo document model keeps one", e.Column)
			}
			d.Qty[e.Column] = quantVal{Num: e.Num, System: e.System, Code: e.Code, Unit: e.Unit}
		default:
			return fmt.Errorf("index column %s: unsupported entry type %s", e.Column, e.Type)
		}
	}
	d.Tok = uniq(d.Tok)
	d.Ref = uniq(d.Ref)
	d.StrNorm = uniq(d.StrNorm)
	d.StrExac = uniq(d.StrExac)
	return nil
}

// uniq sorts and deduplicates keys (two spellings of a name can fold to the same key).
func uniq(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// contentHash hashes the resource JSON without id and meta: two resources with the same hash
// carry the same content, whatever their ids and versions.
func contentHash(r fhir.Resource) (string, error) {
	b := r.Common()
	id, meta := b.ID, b.Meta
	b.ID, b.Meta = "", nil
	js, err := json.Marshal(r)
	b.ID, b.Meta = id, meta
	if err != nil {
		return "", fmt.Errorf("marshal %s: %w", r.Type(), err)
	}
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:16]), nil
}
