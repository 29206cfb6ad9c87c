package fhir

import "encoding/json"

// Bundle is a container for a collection of resources; ohx emits searchset bundles.
type Bundle struct {
	Base
	Identifier *Identifier   `json:"identifier,omitempty"`
	BundleType string        `json:"type"`
	Timestamp  string        `json:"timestamp,omitempty"`
	Total      *int          `json:"total,omitempty"`
	Link       []BundleLink  `json:"link,omitempty"`
	Entry      []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is a link related to a bundle (self, next, previous…).
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one entry of a bundle. Resource is kept raw: search results are served from the
// stored bytes without re-encoding.
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *BundleSearch   `json:"search,omitempty"`
}

// BundleSearch tells why an entry is in a searchset.
type BundleSearch struct {
	Mode  string   `json:"mode,omitempty"`
	Score *Decimal `json:"score,omitempty"`
}

// Type implements Resource.
func (*Bundle) Type() string { return "Bundle" }

// Validate implements Resource.
func (b *Bundle) Validate() error {
	var v validator
	v.required("Bundle.type", b.BundleType != "")
	return errOrNil(v.err)
}

// Type implements Resource.
func (*OperationOutcome) Type() string { return "OperationOutcome" }

// Validate implements Resource.
func (o *OperationOutcome) Validate() error {
	var v validator
	v.required("OperationOutcome.issue", len(o.Issue) > 0)
	return errOrNil(v.err)
}
