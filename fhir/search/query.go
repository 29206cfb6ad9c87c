package search

// Query is a parsed search: the store-neutral intermediate representation that every store
// translates into its own query language.
type Query struct {
	Type string
	// Clauses are ANDed; the values inside one clause are ORed.
	Clauses []Clause
	// Sort always ends with _id, the tie-breaker that makes keyset paging exact.
	Sort []SortKey
	// Count is the page size (matches only); 0 with SummaryCount asks for the total alone.
	Count int
	// SummaryCount is set for _summary=count and _count=0: total only, no entries.
	SummaryCount bool
	// Summary is the _summary value other than count ("true", "data", "text", "false" or "").
	Summary string
	// Total is the _total hint: "", "none", "estimate" or "accurate".
	Total string
	// Elements is the _elements list (top-level element names).
	Elements   []string
	Include    []Include
	RevInclude []Include
	// Cursor positions the page after (or, with Prev, before) a row; nil is the first page.
	Cursor *Cursor
	// Applied lists the parameters actually applied, in request order, for the self link.
	Applied []NameValue
}

// NameValue is one applied query parameter as it will appear in links.
type NameValue struct{ Name, Value string }

// Clause is one search parameter occurrence: its values are ORed.
type Clause struct {
	Param    *Param
	Modifier string // "", "not", "exact", "contains", "missing", or a resource type for references
	Values   []Value
	// Missing is the :missing value when Modifier is "missing".
	Missing bool
	// Chain, when set, makes this a chained clause ("patient.identifier=urn:mrn|42"): Param is
	// the reference parameter followed, Values and Modifier are empty (a type modifier, as in
	// subject:Patient.identifier, only narrows Chain.Targets), and the clause matches resources
	// whose Param refers to a live resource that satisfies the chain.
	Chain *Chain
}

// Chain is the chained part of a clause, one level deep
// (https://hl7.org/fhir/R5/search.html#chaining): the clause matches resources whose parameter
// holds a local reference (Type/id) to a live resource of a Targets type that has a value of
// that type's target parameter matching one of Values (see MatchesWith).
type Chain struct {
	// Targets holds the chained parameter of each resource type the chain may reach, Resource
	// naming the type: [Patient.identifier] for patient.identifier and
	// subject:Patient.identifier, [Patient.identifier, Device.identifier] for subject.identifier.
	// All have the same name and type.
	Targets []*Param
	// Values are ORed, parsed as values of the target parameter.
	Values []Value
}

// Value is one parsed search value. Which fields are set depends on the parameter type.
type Value struct {
	Prefix string // date and quantity: eq ne gt lt ge le sa eb ap
	// Token: Code is required unless AnyCode; System is compared unless AnySystem. "|code" has
	// System "" and AnySystem false.
	System    string
	Code      string
	AnySystem bool
	AnyCode   bool
	// Reference: RefType may be empty (any of the parameter's targets) when only an id was given.
	RefType string
	RefID   string
	RefURL  string
	// Date: search range [Lo, Hi) in Unix microseconds. For ap, Lo and Hi are already widened.
	Lo, Hi int64
	// String: Norm is folded, Str as given.
	Str  string
	Norm string
	// Quantity: Num with the implied precision range [NumLo, NumHi); unit by System/Code, or by
	// code-or-unit-text when UnitAny is set ("5.4||mg").
	Num          float64
	NumLo, NumHi float64
	UnitAny      bool
}

// SortKey is one _sort key: a sortable parameter name (_id, _lastUpdated or the sort date).
type SortKey struct {
	Param string
	Desc  bool
}

// Cursor is a keyset position: the sort values of the last row of the previous page.
type Cursor struct {
	// Prev asks for the page before the row instead of after it.
	Prev bool `json:"p,omitempty"`
	// Keys are the int64 sort values of the row for every sort key except the final _id.
	Keys []int64 `json:"k,omitempty"`
	ID   string  `json:"i"`
}
