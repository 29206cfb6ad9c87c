package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// Prepared is a resource made ready for writing: meta set, canonical JSON encoded once, index
// extracted. Store implementations share it so that they write identical bytes.
type Prepared struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	JSON        []byte
	Index       search.Index
}

// Prepare sets r's meta.versionId and meta.lastUpdated (truncated to microseconds, the precision
// stores keep), encodes it and extracts its index. r must have an id.
func Prepare(r fhir.Resource, version int64, now time.Time) (Prepared, error) {
	b := r.Common()
	if b.ID == "" {
		return Prepared{}, fmt.Errorf("prepare %s: missing id", r.Type())
	}
	b.ResourceType = r.Type()
	now = now.UTC().Truncate(time.Microsecond)
	m := fhir.Meta{}
	if b.Meta != nil {
		m = *b.Meta
	}
	m.VersionID = fmt.Sprint(version)
	m.LastUpdated = fhir.Instant(now)
	b.Meta = &m
	data, err := json.Marshal(r)
	if err != nil {
		return Prepared{}, fmt.Errorf("encode %s/%s: %w", r.Type(), b.ID, err)
	}
	idx, err := search.Extract(r)
	if err != nil {
		return Prepared{}, fmt.Errorf("index %s/%s: %w", r.Type(), b.ID, err)
	}
	return Prepared{Type: r.Type(), ID: b.ID, VersionID: version, LastUpdated: now, JSON: data, Index: idx}, nil
}

// SameContent reports whether r, given the stored version's meta, encodes to exactly the stored
// bytes, i.e. whether writing it would change nothing but meta. It sets r's id and meta.
func SameContent(r fhir.Resource, stored Entry) (bool, error) {
	b := r.Common()
	b.ID = stored.ID
	b.ResourceType = r.Type()
	m := fhir.Meta{}
	if b.Meta != nil {
		m = *b.Meta
	}
	m.VersionID = fmt.Sprint(stored.VersionID)
	m.LastUpdated = fhir.Instant(stored.LastUpdated)
	b.Meta = &m
	data, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode %s/%s: %w", r.Type(), b.ID, err)
	}
	return bytes.Equal(data, stored.JSON), nil
}

// SetAmended gives an Observation that an upsert writes as the next version of a stored final
// one (Amends) the status amended in place of final: "subsequent to being final, the
// observation has been modified" (https://hl7.org/fhir/R5/valueset-observation-status.html),
// which tells a client that read the stored version that its value changed. The vendor
// mappings make every current value final (fhir.MapSample); whether a final version was
// stored, and so could have been read, only the store knows. With on false it puts final back
// (a store that ends up creating the resource after all). It reports whether it changed r.
func SetAmended(r fhir.Resource, on bool) bool {
	o, ok := r.(*fhir.Observation)
	switch {
	case !ok:
		return false
	case on && o.Status == "final":
		o.Status = "amended"
	case !on && o.Status == "amended":
		o.Status = "final"
	default:
		return false
	}
	return true
}

// Amends reports whether a change of an Observation stored with status makes it amended
// (SetAmended): one that has been final. A preliminary value that becomes final is not an
// amendment, nor is a value the vendor deleted (entered-in-error) and brought back.
func Amends(status string) bool {
	return status == "final" || status == "amended" || status == "corrected"
}

// SameOrAmended is SameContent for a resource an upsert matched to the stored version. One that
// differs from a stored version that Amends is made amended (SetAmended) and compared again,
// so that a vendor's unchanged value stays unchanged when the stored version is already its
// amended one. amended reports that it changed r's status.
func SameOrAmended(r fhir.Resource, stored Entry) (same, amended bool, err error) {
	same, err = SameContent(r, stored)
	if o, ok := r.(*fhir.Observation); err != nil || same || !ok || o.Status != "final" {
		return same, false, err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(stored.JSON, &st); err != nil {
		return false, false, fmt.Errorf("decode stored %s/%s: %w", r.Type(), stored.ID, err)
	}
	if !Amends(st.Status) {
		return false, false, nil
	}
	SetAmended(r, true)
	same, err = SameContent(r, stored)
	return same, true, err
}

// identifiers returns the identifiers of the resource types ohx stores.
func identifiers(r fhir.Resource) []fhir.Identifier {
	switch x := r.(type) {
	case *fhir.Observation:
		return x.Identifier
	case *fhir.Patient:
		return x.Identifier
	case *fhir.Device:
		return x.Identifier
	case *fhir.DeviceAssociation:
		return x.Identifier
	}
	return nil
}

// FirstIdentifier returns the first identifier of a resource, used to match bulk upserts; ok
// is false unless it has both a system and a value.
func FirstIdentifier(r fhir.Resource) (system, value string, ok bool) {
	ids := identifiers(r)
	if len(ids) == 0 || ids[0].Value == "" || ids[0].System == "" {
		return "", "", false
	}
	return ids[0].System, ids[0].Value, true
}
