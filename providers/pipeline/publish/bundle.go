package publish

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// run is one publish job's work on one patient.
type run struct {
	p       *Publisher
	patient string
	patRef  string // the patient downstream: Patient?identifier=…
	wm      *watermark
	cache   map[string]*item // prepared resources by "Type/id"; nil: absent or not published
	devices []*item          // the patient's Devices and (R5) DeviceAssociations
	// attached holds the ids of the Devices the patient has an attached association with: in
	// R4 they carry Device.patient.
	attached map[string]bool
}

// item is one resource as it would be sent, before its references are rewritten for the bundle.
type item struct {
	key, typ, id  string
	lastUpdated   time.Time
	body          map[string]any // the resource in the EHR's version, without id and version meta
	digest        string
	system, value string   // the first identifier: the conditional update's match
	refs          []string // the local references it holds ("Type/id"), the patient's left out
}

// prepare turns a stored resource into the form sent downstream, or returns nil for one that is
// not published: not synced by ohx (its first identifier is not ohx's), or a DeviceAssociation
// for an R4 EHR.
func (r *run) prepare(e store.Entry) (*item, error) {
	key := e.Type + "/" + e.ID
	if it, ok := r.cache[key]; ok {
		return it, nil
	}
	it, err := r.prepareNew(e)
	if err != nil {
		return nil, err
	}
	r.cache[key] = it
	return it, nil
}

func (r *run) prepareNew(e store.Entry) (*item, error) {
	if e.Type == "DeviceAssociation" && r.p.cfg.Version == R4 {
		return nil, nil // R5 only; R4 Devices carry the link as Device.patient
	}
	res, err := fhir.Decode(e.JSON, e.Type)
	if err != nil {
		return nil, fmt.Errorf("publish: decode stored %s/%s: %w", e.Type, e.ID, err)
	}
	system, value, ok := firstIdentifier(res)
	if !ok || !strings.HasPrefix(system, r.p.cfg.Namespace.IdentifierSystem("")) {
		return nil, nil
	}
	raw := e.JSON
	if r.p.cfg.Version == R4 {
		var opt fhir.R4Options
		if e.Type == "Device" && r.attached[e.ID] {
			opt.DevicePatient = &fhir.Reference{Reference: "Patient/" + r.patient}
		}
		if raw, err = fhir.MarshalR4(res, opt); err != nil {
			return nil, fmt.Errorf("publish: %s/%s in R4: %w", e.Type, e.ID, err)
		}
	}
	body, err := decodeBody(raw)
	if err != nil {
		return nil, fmt.Errorf("publish: %s/%s: %w", e.Type, e.ID, err)
	}
	// The EHR assigns its own ids and versions: a conditional update whose resource carries an
	// id other than the match's is an error (https://hl7.org/fhir/R5/http.html#cond-update).
	delete(body, "id")
	if m, ok := body["meta"].(map[string]any); ok {
		delete(m, "versionId")
		delete(m, "lastUpdated")
		if len(m) == 0 {
			delete(body, "meta")
		}
	}
	canon, err := json.Marshal(body) // map keys sorted: a canonical form
	if err != nil {
		return nil, fmt.Errorf("publish: encode %s/%s: %w", e.Type, e.ID, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.p.cfg.Version, r.patRef)
	h.Write(canon)
	it := &item{key: e.Type + "/" + e.ID, typ: e.Type, id: e.ID, lastUpdated: e.LastUpdated, body: body,
		digest: hex.EncodeToString(h.Sum(nil)[:12]), system: system, value: value}
	seen := map[string]bool{}
	walkRefs(body, func(ref string) {
		if typ, id, ok := cutRef(ref); ok && !(typ == "Patient" && id == r.patient) && !seen[ref] {
			seen[ref] = true
			it.refs = append(it.refs, ref)
		}
	})
	return it, nil
}

// delivered reports whether the EHR has the item in exactly this form.
func (r *run) delivered(it *item) bool {
	s, ok := r.wm.Sent[it.key]
	return ok && s.Digest == it.digest
}

// loadDevices prepares the patient's Devices (and, for R5, DeviceAssociations): every device of
// one of the patient's associations, current or ended.
func (r *run) loadDevices(ctx context.Context) error {
	r.attached = map[string]bool{}
	q, _, err := r.p.sreg.Parse("DeviceAssociation", []search.NameValue{
		{Name: "patient", Value: "Patient/" + r.patient},
		{Name: "_count", Value: "1000"},
	}, search.Options{MaxCount: 1000})
	if err != nil {
		return fmt.Errorf("publish: build the association query: %w", err)
	}
	var assocs []store.Entry
	var devices []string
	for {
		res, err := r.p.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("publish: read device associations: %w", err)
		}
		for _, e := range res.Matches {
			var a fhir.DeviceAssociation
			if err := json.Unmarshal(e.JSON, &a); err != nil {
				return fmt.Errorf("publish: decode stored DeviceAssociation/%s: %w", e.ID, err)
			}
			typ, id, ok := cutRef(a.Device.Reference)
			if !ok || typ != "Device" {
				continue
			}
			if !slices.Contains(devices, id) {
				devices = append(devices, id)
			}
			if slices.ContainsFunc(a.Status.Coding, func(c fhir.Coding) bool {
				return c.System == fhir.DeviceAssociationStatusSystem && c.Code == "attached"
			}) {
				r.attached[id] = true
			}
			assocs = append(assocs, e)
		}
		if res.Next == nil {
			break
		}
		q.Cursor = res.Next
	}
	for _, id := range devices {
		it, err := r.target(ctx, "Device/"+id)
		if err != nil {
			return err
		}
		if it != nil {
			r.devices = append(r.devices, it)
		}
	}
	for _, e := range assocs {
		it, err := r.prepare(e)
		if err != nil {
			return err
		}
		if it != nil {
			r.devices = append(r.devices, it)
		}
	}
	return nil
}

// changedDevices returns the patient's Devices and associations not delivered in their current
// form.
func (r *run) changedDevices() []*item {
	var out []*item
	for _, it := range r.devices {
		if !r.delivered(it) {
			out = append(out, it)
		}
	}
	return out
}

// target returns the prepared resource a local reference points to, nil if it is not stored or
// not published.
func (r *run) target(ctx context.Context, ref string) (*item, error) {
	if it, ok := r.cache[ref]; ok {
		return it, nil
	}
	typ, id, _ := cutRef(ref)
	e, err := r.p.st.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		r.cache[ref] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("publish: read %s: %w", ref, err)
	}
	return r.prepare(e)
}

// send delivers items as one transaction, together with every resource they reference that the
// EHR does not have in its current form, and records them as delivered. It returns how many
// resources it sent.
func (r *run) send(ctx context.Context, items []*item) (int, error) {
	in := map[string]bool{}
	var all []*item
	for _, it := range items {
		if !in[it.key] {
			in[it.key] = true
			all = append(all, it)
		}
	}
	// The closure of the references: a referenced resource the EHR has in its current form is
	// found there by identifier; any other one travels in this bundle.
	resolve := map[string]string{"Patient/" + r.patient: r.patRef}
	for i := 0; i < len(all); i++ {
		for _, ref := range all[i].refs {
			if _, done := resolve[ref]; done || in[ref] {
				continue
			}
			t, err := r.target(ctx, ref)
			if err != nil {
				return 0, err
			}
			switch {
			case t == nil:
				resolve[ref] = "" // nothing to point at downstream: the reference is left out
			case r.delivered(t):
				resolve[ref] = t.typ + "?" + identifierQuery(t.system, t.value)
			default:
				in[ref] = true
				all = append(all, t)
			}
		}
	}
	for _, it := range all {
		resolve[it.key] = fullURL(it.key)
	}
	// Devices before the associations and Observations that reference them. A transaction is
	// processed as a whole (https://hl7.org/fhir/R5/http.html#trules), but readers of the
	// bundle and less strict servers meet every target before its references.
	slices.SortStableFunc(all, func(a, b *item) int { return cmp.Compare(typeRank(a.typ), typeRank(b.typ)) })
	b := fhir.Bundle{Base: fhir.Base{ResourceType: "Bundle"}, BundleType: "transaction"}
	for _, it := range all {
		body, err := encodeBody(it.typ, rewriteRefs(it.body, resolve).(map[string]any))
		if err != nil {
			return 0, fmt.Errorf("publish: encode %s: %w", it.key, err)
		}
		b.Entry = append(b.Entry, fhir.BundleEntry{
			FullURL:  resolve[it.key],
			Resource: body,
			Request:  &fhir.BundleRequest{Method: "PUT", URL: it.typ + "?" + identifierQuery(it.system, it.value)},
		})
	}
	if err := r.p.deliver(ctx, &b); err != nil {
		return 0, fmt.Errorf("publish: patient %s, %d resources: %w", r.patient, len(all), err)
	}
	for _, it := range all {
		r.wm.Sent[it.key] = sent{Digest: it.digest, LastUpdated: it.lastUpdated.UTC()}
		r.p.resources.WithLabelValues(it.typ).Inc()
	}
	return len(all), nil
}

func typeRank(typ string) int {
	switch typ {
	case "Device":
		return 0
	case "DeviceAssociation":
		return 1
	}
	return 2
}

// fullURL is the bundle-local identity of a resource, by which the others reference it; the
// EHR replaces it with the id it assigns (https://hl7.org/fhir/R5/bundle.html#references). A
// name-based UUID of the ohx resource: stable, and free of the id.
func fullURL(key string) string {
	sum := sha256.Sum256([]byte("ohx publish " + key))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5-style (name-based, SHA)
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(u)
	return "urn:uuid:" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// firstIdentifier returns the identifier the store matches the resource by.
func firstIdentifier(r fhir.Resource) (system, value string, ok bool) {
	var ids []fhir.Identifier
	switch v := r.(type) {
	case *fhir.Observation:
		ids = v.Identifier
	case *fhir.Device:
		ids = v.Identifier
	case *fhir.DeviceAssociation:
		ids = v.Identifier
	default:
		return "", "", false
	}
	if len(ids) == 0 || ids[0].System == "" || ids[0].Value == "" {
		return "", "", false
	}
	return ids[0].System, ids[0].Value, true
}

// identifierQuery is the search identifier=system|value, escaped by the rules of search values
// (https://hl7.org/fhir/R5/search.html#escaping) and then of URL queries.
func identifierQuery(system, value string) string {
	return "identifier=" + queryEscape(searchEscape(system)) + "|" + queryEscape(searchEscape(value))
}

func searchEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`).Replace(s)
}

// queryEscape percent-encodes what may not stand in a query value, keeping ":" and "/" that
// identifier systems are full of readable.
func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:/@!*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// cutRef splits a relative literal reference Type/id.
func cutRef(ref string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(ref, "/")
	if !ok || typ == "" || id == "" || strings.ContainsAny(id, "/?#") || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}

// decodeBody decodes a resource's JSON keeping numbers as written (decimals are exact in FHIR).
func decodeBody(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return m, nil
}

// encodeBody encodes a resource with resourceType first, where readers of FHIR JSON look for it.
func encodeBody(typ string, m map[string]any) (json.RawMessage, error) {
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "resourceType" {
			rest[k] = v
		}
	}
	b, err := json.Marshal(rest)
	if err != nil {
		return nil, err
	}
	head := `{"resourceType":` + fmt.Sprintf("%q", typ)
	if len(b) > 2 {
		head += ","
	}
	return append([]byte(head), b[1:]...), nil
}

// walkRefs calls fn with every Reference.reference in v.
func walkRefs(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				fn(s)
				continue
			}
			walkRefs(e, fn)
		}
	case []any:
		for _, e := range x {
			walkRefs(e, fn)
		}
	}
}

// rewriteRefs returns a copy of v whose local references point where resolve says: a fullUrl
// of the bundle or a conditional reference Type?identifier=… the EHR resolves
// (https://hl7.org/fhir/R5/http.html#trules). A reference resolve maps to "" (its target is
// not stored, or not published) is left out: its Reference keeps only an identifier or display
// it has, or goes altogether. References that are not local (absolute, urn:, contained) stay.
func rewriteRefs(v any, resolve map[string]string) any {
	out, _ := rewrite(v, resolve)
	return out
}

func rewrite(v any, resolve map[string]string) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				if _, _, local := cutRef(s); local {
					to, known := resolve[s]
					if !known || to == "" {
						continue
					}
					s = to
				}
				m[k] = s
				continue
			}
			if ne, keep := rewrite(e, resolve); keep {
				m[k] = ne
			}
		}
		if _, had := x["reference"]; had {
			if _, has := m["reference"]; !has && m["identifier"] == nil && m["display"] == nil {
				return nil, false // a Reference with nothing left
			}
		}
		return m, true
	case []any:
		var s []any
		for _, e := range x {
			if ne, keep := rewrite(e, resolve); keep {
				s = append(s, ne)
			}
		}
		return s, len(s) > 0
	}
	return v, true
}
