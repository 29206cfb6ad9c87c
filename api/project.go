package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Projection for _elements and _summary (https://hl7.org/fhir/R5/search.html#elements). It works
// on the stored JSON as raw top-level members, so values are never re-encoded (53.0 stays 53.0).

// mandatory lists the elements a subset must keep besides resourceType, id and meta (cardinality
// 1..1 or modifiers).
var mandatory = map[string][]string{
	"Observation":       {"status", "code"},
	"DeviceAssociation": {"device", "status"},
	"Patient":           {"active"},
	"Device":            {"status"},
}

// summary lists the Σ (isSummary) elements of each type for _summary=true.
var summary = map[string][]string{
	"Patient": {"identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime",
		"address", "managingOrganization", "link"},
	"Observation": {"identifier", "basedOn", "partOf", "status", "category", "code", "subject", "focus", "encounter",
		"effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued", "performer", "valueQuantity",
		"valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange", "valueSampledData",
		"valueTime", "valueDateTime", "valuePeriod", "dataAbsentReason", "interpretation", "bodySite", "method",
		"device", "hasMember", "derivedFrom", "component"},
	"Device": {"identifier", "displayName", "definition", "status", "availabilityStatus", "manufacturer",
		"manufactureDate", "expirationDate", "lotNumber", "serialNumber", "name", "modelNumber", "partNumber",
		"category", "type", "version", "owner", "contact", "url", "parent"},
	"DeviceAssociation": {"identifier", "device", "category", "status", "subject", "bodyStructure", "period"},
}

// choice lists the top-level choice elements ([x]) of each type, in R5 and R4 alike, by the name
// _elements gives them: without the type suffix (search.html#_elements), so that "value" keeps
// valueQuantity, valueString or whichever type the resource holds.
var choice = map[string][]string{
	"Observation": {"instantiates", "effective", "value"},
	"Patient":     {"deceased", "multipleBirth"},
}

// named reports whether the member key k is the element name: the same name, or a choice
// element name followed by its type suffix (value → valueQuantity).
func named(typ, k, name string) bool {
	if k == name {
		return true
	}
	rest, ok := strings.CutPrefix(k, name)
	return ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z' && slices.Contains(choice[typ], name)
}

type member struct {
	key   string
	value json.RawMessage
}

func members(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("project: not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("project: %w", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("project: %w", err)
		}
		out = append(out, member{key: t.(string), value: v})
	}
	return out, nil
}

// project returns the resource reduced per _elements or _summary; ok is false when nothing
// changes (the stored bytes can be served as they are).
func project(typ string, obj []byte, elements []string, summaryMode string) ([]byte, bool, error) {
	var keep func(string) bool
	switch {
	case len(elements) > 0:
		keep = func(k string) bool {
			return slices.ContainsFunc(elements, func(e string) bool { return named(typ, k, e) }) || slices.Contains(mandatory[typ], k)
		}
	case summaryMode == "true":
		keep = func(k string) bool { return slices.Contains(summary[typ], k) || slices.Contains(mandatory[typ], k) }
	case summaryMode == "text":
		keep = func(k string) bool { return k == "text" || slices.Contains(mandatory[typ], k) }
	case summaryMode == "data":
		keep = func(k string) bool { return k != "text" }
	default:
		return obj, false, nil
	}
	ms, err := members(obj)
	if err != nil {
		return nil, false, err
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for _, m := range ms {
		v := m.value
		switch m.key {
		case "resourceType", "id":
		case "meta":
			// Mark the resource as subsetted so nobody mistakes it for the full record.
			var meta map[string]json.RawMessage
			if err := json.Unmarshal(v, &meta); err != nil {
				return nil, false, fmt.Errorf("project: meta: %w", err)
			}
			var tags []json.RawMessage
			if t, ok := meta["tag"]; ok {
				if err := json.Unmarshal(t, &tags); err != nil {
					return nil, false, fmt.Errorf("project: meta.tag: %w", err)
				}
			}
			tags = append(tags, json.RawMessage(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`))
			meta["tag"], _ = json.Marshal(tags)
			v, _ = json.Marshal(meta)
		default:
			if !keep(m.key) {
				continue
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(m.key)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), true, nil
}
