package search

import (
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openhealthexchange/ohx/fhir"
)

// Limits on the size of one search. Every value becomes a condition in the store's query, and
// every parameter a subquery or a filter ANDed to the others: unbounded, a single request could
// ask for a query no store should run (SQLite refuses an expression tree deeper than 1000, and
// has at most 32766 bind variables). Beyond them Parse answers 400 too-costly
// (https://hl7.org/fhir/R5/codesystem-issue-type.html#issue-type-too-costly). They are far above
// what real clients send: a few parameters with a handful of codes each.
const (
	// MaxParams is the most parameters one search may have. Every occurrence of a filter
	// parameter counts (known or not, empty or not, "code=a&code=b" is two), and so does every
	// _include and _revinclude; the result parameters that may appear only once (_count, _sort,
	// _summary, _total, _elements, _page) and _format and _pretty do not.
	MaxParams = 100
	// MaxParamValues is the most comma-separated values of one parameter: the values a filter
	// ORs ("code=a,b,c" is three), the keys of _sort and the names of _elements.
	MaxParamValues = 100
	// MaxValues is the most filter values of a whole search, over all its parameters, so that
	// MaxParams parameters of MaxParamValues values each are not allowed together.
	MaxValues = 1000
)

// Options controls parsing.
type Options struct {
	// BaseURL is our FHIR base ("https://ohx.example/fhir"): absolute references on it are local.
	BaseURL string
	// DefaultCount and MaxCount bound _count (defaults 50 and 1000).
	DefaultCount, MaxCount int
	// Strict rejects unknown or unsupported parameters (Prefer: handling=strict) instead of
	// ignoring them.
	Strict bool
	// Now is the reference time for the ap prefix (defaults to time.Now).
	Now time.Time
}

// ParseRawQuery splits an application/x-www-form-urlencoded string into name/value pairs in order
// (url.Values would lose the order the self link should keep).
func ParseRawQuery(raw string) ([]NameValue, error) {
	var out []NameValue
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fhir.Invalid(fhir.CodeInvalid, "malformed query parameter name %q", truncate(k))
		}
		// Percent-decoding yields any bytes: refuse what is not text rather than let it reach
		// the index and the links (where encoding/json would turn it into U+FFFD).
		if !utf8.ValidString(name) {
			return nil, fhir.Invalid(fhir.CodeInvalid, "a query parameter name is not valid UTF-8")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fhir.Invalid(fhir.CodeInvalid, "malformed value of query parameter %q", truncate(name))
		}
		if !utf8.ValidString(val) {
			return nil, fhir.Invalid(fhir.CodeInvalid, "the value of query parameter %q is not valid UTF-8", truncate(name))
		}
		out = append(out, NameValue{Name: name, Value: val})
	}
	return out, nil
}

// truncate shortens s for diagnostics, never inside a UTF-8 sequence.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// formatParams are handled by the HTTP layer and are never "unknown".
var formatParams = map[string]bool{"_format": true, "_pretty": true}

// Parse turns the parameters of a search on typ into a Query. Invalid values are a 400 *fhir.Error,
// and so is a search beyond MaxParams, MaxParamValues or MaxValues (code too-costly); unknown
// parameters are dropped (and left out of Applied) unless opt.Strict.
func (r *Registry) Parse(typ string, params []NameValue, opt Options) (*Query, string, error) {
	p := &parser{r: r, typ: typ, opt: opt.withDefaults(), seenResult: map[string]bool{}}
	p.q = &Query{Type: typ, Count: p.opt.DefaultCount}
	for _, nv := range params {
		if err := p.param(nv.Name, nv.Value); err != nil {
			return nil, "", err
		}
	}
	p.q.Sort = withTieBreaker(p.q.Sort)
	return p.q, p.page, nil
}

// withDefaults fills in the zero fields of opt.
func (opt Options) withDefaults() Options {
	if opt.DefaultCount <= 0 {
		opt.DefaultCount = 50
	}
	if opt.MaxCount <= 0 {
		opt.MaxCount = 1000
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	return opt
}

// parser is the state of one Parse: the query built so far and what the limits count.
type parser struct {
	r   *Registry
	typ string
	opt Options
	q   *Query
	// page is the _page cursor, returned apart from the query.
	page string
	// seenResult holds the result parameters seen, which may appear only once.
	seenResult map[string]bool
	// nParams and nValues count towards MaxParams and MaxValues.
	nParams, nValues int
}

// param adds one name=value of the search to the query.
func (p *parser) param(name, value string) error {
	if formatParams[name] {
		return nil
	}
	if strings.HasPrefix(name, "_") && p.r.Param(p.typ, name) == nil && !strings.Contains(name, ":") {
		if name != "_include" && name != "_revinclude" && p.seenResult[name] {
			return fhir.Invalid(fhir.CodeInvalid, "parameter %s may appear only once", name)
		}
		p.seenResult[name] = true
	}
	switch base, _, _ := strings.Cut(name, ":"); base {
	case "_count":
		return p.count(value)
	case "_page":
		p.page = value
		return nil
	case "_sort":
		keys, err := p.r.parseSort(p.typ, value)
		if err != nil {
			return err
		}
		p.q.Sort = keys
		p.applied("_sort", value)
		return nil
	case "_summary":
		return p.summary(value)
	case "_total":
		return p.total(value)
	case "_elements":
		return p.elements(value)
	case "_include", "_revinclude":
		return p.include(name, value, base == "_revinclude")
	}
	return p.filter(name, value)
}

// applied records a parameter the query honours, for the self link.
func (p *parser) applied(name, value string) {
	p.q.Applied = append(p.q.Applied, NameValue{name, value})
}

// countParam counts one parameter towards MaxParams.
func (p *parser) countParam() error {
	if p.nParams++; p.nParams > MaxParams {
		return fhir.Invalid(fhir.CodeTooCostly, "too many search parameters: at most %d are allowed", MaxParams)
	}
	return nil
}

// unsupported is the answer to a parameter the registry does not support: an error under
// opt.Strict (Prefer: handling=strict), else nil and the parameter is ignored.
func (p *parser) unsupported(name, why string) error {
	if p.opt.Strict {
		return fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "parameter %q: %s", truncate(name), why)
	}
	return nil
}

// count is _count: a page size of at most opt.MaxCount; 0 asks for the total only.
func (p *parser) count(value string) error {
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 {
		return fhir.Invalid(fhir.CodeValue, "_count: %q is not a non-negative integer", truncate(value))
	}
	p.q.Count = min(n, p.opt.MaxCount)
	if n == 0 {
		p.q.SummaryCount = true
	}
	return nil
}

// summary is _summary (https://hl7.org/fhir/R5/search.html#_summary).
func (p *parser) summary(value string) error {
	switch value {
	case "count":
		p.q.SummaryCount = true
	case "true", "data", "text", "false":
		p.q.Summary = value
	default:
		return fhir.Invalid(fhir.CodeValue, "_summary: %q is not one of true, text, data, count, false", truncate(value))
	}
	p.applied("_summary", value)
	return nil
}

// total is _total (https://hl7.org/fhir/R5/search.html#_total).
func (p *parser) total(value string) error {
	switch value {
	case "none", "estimate", "accurate":
		p.q.Total = value
	default:
		return fhir.Invalid(fhir.CodeValue, "_total: %q is not one of none, estimate, accurate", truncate(value))
	}
	p.applied("_total", value)
	return nil
}

// elements is _elements: at most MaxParamValues element names.
func (p *parser) elements(value string) error {
	if n := strings.Count(value, ",") + 1; n > MaxParamValues {
		return tooManyValues("_elements", n)
	}
	for e := range strings.SplitSeq(value, ",") {
		if e = strings.TrimSpace(e); e != "" {
			p.q.Elements = append(p.q.Elements, e)
		}
	}
	p.applied("_elements", value)
	return nil
}

// include is _include or (rev) _revinclude; each counts towards MaxParams.
func (p *parser) include(name, value string, rev bool) error {
	if err := p.countParam(); err != nil {
		return err
	}
	incs, ok := p.r.parseInclude(p.typ, name, value, rev)
	if !ok {
		return p.unsupported(name+"="+value, "unsupported include")
	}
	if rev {
		p.q.RevInclude = appendUnique(p.q.RevInclude, incs...)
	} else {
		p.q.Include = appendUnique(p.q.Include, incs...)
	}
	p.applied(name, value)
	return nil
}

// filter is a search parameter proper: one clause of the query, its values counted towards
// MaxValues.
func (p *parser) filter(name, value string) error {
	if err := p.countParam(); err != nil {
		return err
	}
	if value == "" {
		return nil // empty parameters are ignored (https://hl7.org/fhir/R5/search.html#errors)
	}
	c, ok, err := p.r.parseClause(p.typ, name, value, p.opt)
	if err != nil {
		return err
	}
	if !ok {
		return p.unsupported(name, "unknown or unsupported search parameter")
	}
	n := len(c.Values)
	if c.Chain != nil {
		n = len(c.Chain.Values) // a chain's values are searched like the target's own
	}
	if p.nValues += max(1, n); p.nValues > MaxValues {
		return fhir.Invalid(fhir.CodeTooCostly, "too many search values: at most %d are allowed in all parameters together", MaxValues)
	}
	p.q.Clauses = append(p.q.Clauses, c)
	p.applied(name, value)
	return nil
}

// withTieBreaker ends the sort keys with _id, so that paging is stable. The implicit tie-breaker
// follows the direction of the last key, so that one index (…, date, id) serves both
// "_sort=date" and "_sort=-date" without a sort step.
func withTieBreaker(keys []SortKey) []SortKey {
	if len(keys) > 0 && keys[len(keys)-1].Param == "_id" {
		return keys
	}
	desc := len(keys) > 0 && keys[len(keys)-1].Desc
	return append(keys, SortKey{Param: "_id", Desc: desc})
}

func tooManyValues(name string, n int) error {
	return fhir.Invalid(fhir.CodeTooCostly, "%s: %d values, at most %d are allowed", truncate(name), n, MaxParamValues)
}

func appendUnique(list []Include, add ...Include) []Include {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

func (r *Registry) parseSort(typ, value string) ([]SortKey, error) {
	if n := strings.Count(value, ",") + 1; n > MaxParamValues {
		return nil, tooManyValues("_sort", n)
	}
	var keys []SortKey
	for k := range strings.SplitSeq(value, ",") {
		k = strings.TrimSpace(k)
		desc := strings.HasPrefix(k, "-")
		k = strings.TrimPrefix(k, "-")
		p := r.Param(typ, k)
		if p == nil || !p.Sortable {
			return nil, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "_sort: %q is not a sortable parameter of %s", truncate(k), typ)
		}
		if slices.ContainsFunc(keys, func(s SortKey) bool { return s.Param == k }) {
			continue // a repeated key cannot change the order: rows still tied by then tie on it too
		}
		keys = append(keys, SortKey{Param: k, Desc: desc})
		if k == "_id" {
			break // _id is unique: later keys cannot change the order
		}
	}
	return keys, nil
}

func (r *Registry) parseInclude(typ, name, value string, rev bool) ([]Include, bool) {
	if name != "_include" && name != "_revinclude" {
		return nil, false // :iterate and other modifiers are not supported
	}
	candidates := r.Includes(typ)
	if rev {
		candidates = r.RevIncludes(typ)
	}
	if value == "*" {
		return candidates, len(candidates) > 0
	}
	parts := strings.Split(value, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, false
	}
	for _, c := range candidates {
		if c.Source == parts[0] && c.Param == parts[1] && (len(parts) == 2 || parts[2] == c.Target) {
			return []Include{c}, true
		}
	}
	return nil, false
}

// parseClause parses one filter parameter; ok is false for unknown parameters or modifiers.
func (r *Registry) parseClause(typ, name, value string, opt Options) (Clause, bool, error) {
	if ref, chained, ok := strings.Cut(name, "."); ok {
		return r.parseChain(typ, name, ref, chained, value, opt)
	}
	pname, mod, _ := strings.Cut(name, ":")
	p := r.Param(typ, pname)
	if p == nil {
		return Clause{}, false, nil
	}
	c := Clause{Param: p, Modifier: mod}
	if mod == "missing" {
		switch value {
		case "true":
			c.Missing = true
		case "false":
		default:
			return c, false, fhir.Invalid(fhir.CodeValue, "%s: :missing takes true or false, got %q", name, truncate(value))
		}
		return c, true, nil
	}
	if mod != "" && !slices.Contains(p.Modifiers, mod) && !(p.Type == Reference && slices.Contains(p.Targets, mod)) {
		return c, false, nil
	}
	raws := splitEscaped(value, ',')
	if len(raws) > MaxParamValues {
		return c, false, tooManyValues(name, len(raws))
	}
	for _, raw := range raws {
		v, err := parseValue(p, mod, raw, opt)
		if err != nil {
			return c, false, err
		}
		c.Values = append(c.Values, v)
	}
	return c, true, nil
}

// parseChain parses a chained parameter ref.chained, where ref is a reference parameter with an
// optional type modifier ("patient", "subject:Patient") and chained a parameter of the target
// type (https://hl7.org/fhir/R5/search.html#chaining). Only the chains of
// Registry.ChainTargets are answered; deeper chains (patient.organization.name), modifiers on
// the chained parameter (patient.identifier:not) and chains on other parameter types are
// unsupported: ok is false, or under opt.Strict a 400 not-supported.
func (r *Registry) parseChain(typ, name, ref, chained, value string, opt Options) (Clause, bool, error) {
	pname, typeMod, _ := strings.Cut(ref, ":")
	p := r.Param(typ, pname)
	var targets []*Param
	if !strings.ContainsAny(chained, ".:") {
		targets = r.ChainTargets(p, typeMod, chained)
	}
	if len(targets) == 0 {
		if opt.Strict {
			return Clause{}, false, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported,
				"parameter %q: unsupported chained search; supported are a reference parameter to Patient or Device followed by .identifier (patient.identifier, subject:Patient.identifier, device.identifier), with no modifier after the chain", truncate(name))
		}
		return Clause{}, false, nil
	}
	raws := splitEscaped(value, ',')
	if len(raws) > MaxParamValues {
		return Clause{}, false, tooManyValues(name, len(raws))
	}
	// The values are the target parameter's; diagnostics name the chain as the client wrote it.
	named := *targets[0]
	named.Name = name
	ch := &Chain{Targets: targets}
	for _, raw := range raws {
		v, err := parseValue(&named, "", raw, opt)
		if err != nil {
			return Clause{}, false, err
		}
		ch.Values = append(ch.Values, v)
	}
	return Clause{Param: p, Chain: ch}, true, nil
}

// splitEscaped splits s on sep, honouring the FHIR escapes \, \| \$ and \\.
func splitEscaped(s string, sep byte) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			if s[i+1] == sep {
				cur.WriteByte(sep)
			} else {
				cur.WriteByte('\\')
				cur.WriteByte(s[i+1])
			}
			i++
		case s[i] == sep:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

func unescape(s string) string {
	r := strings.NewReplacer(`\,`, ",", `\|`, "|", `\$`, "$", `\\`, `\`)
	return r.Replace(s)
}

var prefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func splitPrefix(s string) (string, string) {
	if len(s) > 2 && slices.Contains(prefixes, s[:2]) {
		return s[:2], s[2:]
	}
	return "eq", s
}

func parseValue(p *Param, mod, raw string, opt Options) (Value, error) {
	bad := func(format string, args ...any) (Value, error) {
		return Value{}, fhir.Invalid(fhir.CodeValue, "%s: "+format, append([]any{p.Name}, args...)...)
	}
	switch p.Type {
	case Token:
		parts := splitEscaped(raw, '|')
		switch len(parts) {
		case 1:
			return Value{Code: unescape(parts[0]), AnySystem: true}, nil
		case 2:
			v := Value{System: unescape(parts[0]), Code: unescape(parts[1])}
			if v.Code == "" {
				if v.System == "" {
					return bad("%q has neither system nor code", truncate(raw))
				}
				v.AnyCode = true
			}
			return v, nil
		}
		return bad("%q is not a token (code, system|code, |code or system|)", truncate(raw))
	case String:
		s := unescape(raw)
		return Value{Str: s, Norm: Normalize(s)}, nil
	case Reference:
		return parseReference(p, mod, unescape(raw), opt)
	case Date:
		prefix, d := splitPrefix(raw)
		lo, hi, err := fhir.TimeRange(d)
		if err != nil || !validSearchDate(d) {
			return bad("%q is not a valid date", truncate(raw))
		}
		if prefix == "ap" {
			// ap: we widen the range by 10 % of the distance between the value and now (at least
			// one day), as the spec recommends; documented in the CapabilityStatement.
			gap := opt.Now.UnixMicro() - lo
			if gap < 0 {
				gap = -gap
			}
			w := max(gap/10, int64(24*time.Hour/time.Microsecond))
			lo, hi = lo-w, hi+w
		}
		return Value{Prefix: prefix, Lo: lo, Hi: hi}, nil
	case Quantity:
		prefix, rest := splitPrefix(raw)
		parts := splitEscaped(rest, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return bad("%q is not a quantity ([prefix]number|system|code)", truncate(raw))
		}
		num, lo, hi, ok := parseNumber(parts[0])
		if !ok {
			return bad("%q is not a number", truncate(parts[0]))
		}
		v := Value{Prefix: prefix, Num: num, NumLo: lo, NumHi: hi, AnySystem: true, AnyCode: true}
		if len(parts) == 3 {
			v.System, v.Code = unescape(parts[1]), unescape(parts[2])
			v.AnySystem = v.System == ""
			v.AnyCode = v.Code == ""
			v.UnitAny = v.System == "" && v.Code != ""
		}
		return v, nil
	}
	return bad("unsupported parameter type %s", p.Type)
}

// searchDateRE is the date syntax of search values: like dateTime, but minutes without seconds
// are allowed and the zone is optional (then UTC) (https://hl7.org/fhir/R5/search.html#date).
var searchDateRE = regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9])(\.[0-9]{1,9})?)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?$`)

func validSearchDate(d string) bool { return searchDateRE.MatchString(d) }

// parseNumber parses a decimal and the range its precision implies: 100 → [99.5, 100.5),
// 100.00 → [99.995, 100.005) (https://hl7.org/fhir/R5/search.html#number).
func parseNumber(s string) (num, lo, hi float64, ok bool) {
	if !fhir.Decimal(s).Valid() {
		return 0, 0, 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		exp, _ = strconv.Atoi(s[i+1:])
	}
	dec := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		dec = len(mant) - i - 1
	}
	// An exponent form states its significant digits: 1e2 is [95, 105) (search.html#number).
	if strings.ContainsAny(s, "eE") {
		exp--
	}
	half := 0.5 * math.Pow10(exp-dec)
	return f, f - half, f + half, true
}

func parseReference(p *Param, mod, s string, opt Options) (Value, error) {
	v := Value{}
	base := strings.TrimSuffix(opt.BaseURL, "/")
	if base != "" && strings.HasPrefix(s, base+"/") {
		s = strings.TrimPrefix(s, base+"/")
	}
	if strings.Contains(s, "/_history/") {
		return v, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "%s: versioned references are not supported", p.Name)
	}
	switch {
	case strings.Contains(s, "://") || strings.HasPrefix(s, "urn:"):
		v.RefURL = s
	case strings.Contains(s, "/"):
		t, id, ok := fhir.SplitReference(s)
		if !ok {
			return v, fhir.Invalid(fhir.CodeValue, "%s: %q is not a reference", p.Name, truncate(s))
		}
		v.RefType, v.RefID = t, id
	default:
		if !fhir.ValidID(s) {
			return v, fhir.Invalid(fhir.CodeValue, "%s: %q is not a valid id", p.Name, truncate(s))
		}
		v.RefID = s
	}
	if mod != "" { // type modifier, e.g. subject:Patient=23
		if v.RefType != "" && v.RefType != mod {
			return v, fhir.Invalid(fhir.CodeValue, "%s:%s: reference %q has another type", p.Name, mod, truncate(s))
		}
		v.RefType = mod
	}
	if v.RefType == "" && len(p.Targets) == 1 {
		v.RefType = p.Targets[0]
	}
	if v.RefType != "" && v.RefURL == "" && !slices.Contains(p.Targets, v.RefType) {
		return v, fhir.Invalid(fhir.CodeValue, "%s: cannot refer to %s (want %s)", p.Name, v.RefType, strings.Join(p.Targets, " | "))
	}
	return v, nil
}
