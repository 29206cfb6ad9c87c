package fhir

import "encoding/json"

// Bundle is a container for a collection of resources; ohx emits searchset bundles and the
// responses to batch and transaction bundles, which it accepts.
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
// stored bytes without re-encoding, and each entry of a batch or transaction is decoded for its
// own resource type.
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *BundleSearch   `json:"search,omitempty"`
	Request  *BundleRequest  `json:"request,omitempty"`
	Response *BundleResponse `json:"response,omitempty"`
}

// BundleRequest is the HTTP request of a batch or transaction entry.
type BundleRequest struct {
	Method          string `json:"method"`
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch,omitempty"`
	IfModifiedSince string `json:"ifModifiedSince,omitempty"`
	IfMatch         string `json:"ifMatch,omitempty"`
	IfNoneExist     string `json:"ifNoneExist,omitempty"`
}

// BundleResponse is the outcome of one entry of a batch or transaction.
type BundleResponse struct {
	Status       string `json:"status"`
	Location     string `json:"location,omitempty"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// Outcome is an OperationOutcome, raw like BundleEntry.Resource (already in the version
	// being served).
	Outcome json.RawMessage `json:"outcome,omitempty"`
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
