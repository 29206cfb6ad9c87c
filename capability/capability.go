// Package capability builds the CapabilityStatement from the same search registry that drives
// parsing and indexing, so that what ohx publishes is exactly what it supports.
package capability

import (
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// Config describes the deployment.
type Config struct {
	// BaseURL is the public FHIR base URL, e.g. "https://ohx.example/fhir".
	BaseURL string
	// Version is the software version.
	Version string
	// DefaultCount and MaxCount are the page sizes the search engine applies.
	DefaultCount, MaxCount int
	// Security, if set, becomes rest.security (SMART discovery).
	Security *fhir.CapabilitySecurity
	// Started is the statement's date.
	Started time.Time
	// MaxBundleEntries is the most entries a batch or transaction Bundle may hold (0: no
	// batch interaction is advertised).
	MaxBundleEntries int
	// Transactions advertises the transaction interaction: the store writes atomically
	// (store.Transactor).
	Transactions bool
	// Practitioners advertises read of Practitioner: the built-in authorization server's
	// practitioner users (api.Config.Practitioners), read only, without search or versions.
	Practitioners bool
}

// PatientCompartment is the compartment searched at [base]/Patient/{id}/{type}.
const PatientCompartment = "http://hl7.org/fhir/CompartmentDefinition/patient"

// operations lists the operations served per resource type.
var operations = map[string][]fhir.CapabilityOperation{
	"Patient": {{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
		Documentation: "GET Patient/{id}/$everything: the Patient, the Devices associated with them, their DeviceAssociations and Observations, " +
			"paged (_count, next links); _since keeps resources last updated at or after an instant, _type restricts the types. " +
			"Types the token may not read and search are left out. The compartment itself is searched at Patient/{id}/Observation, " +
			"/DeviceAssociation and /Device (the devices associated through DeviceAssociation)."}},
	"Observation": {{Name: "lastn", Definition: "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
		Documentation: "GET Observation/$lastn?patient=…: the max (default 1) most recent Observations per code (effective start descending, " +
			"ties by id), codes with a shared coding grouped together; every Observation search parameter filters."}},
}

// writable lists the resource types clients may write and the interactions they get.
var writable = map[string][]string{"Patient": {"create", "update"}}

// Build returns the R5 CapabilityStatement.
func Build(reg *search.Registry, cfg Config) *fhir.CapabilityStatement {
	t, f := true, false
	cs := &fhir.CapabilityStatement{
		Base:        fhir.Base{ResourceType: "CapabilityStatement", ID: "ohx"},
		URL:         cfg.BaseURL + "/metadata",
		Version:     cfg.Version,
		Name:        "OpenHealthExchange",
		Title:       "Open Health Exchange (ohx) FHIR server",
		Status:      "active",
		Date:        cfg.Started.UTC().Format(time.RFC3339),
		Publisher:   "Open Health Exchange",
		Description: "FHIR R5 facade for patient-generated health data from Withings and Fitbit. R4 representations are served for Accept: application/fhir+json; fhirVersion=4.0 and under the /r4 base.",
		Kind:        "instance",
		Software:    &fhir.CapabilitySoftware{Name: "ohx", Version: cfg.Version},
		Implementation: &fhir.CapabilityImplementation{
			Description: "Open Health Exchange FHIR endpoint",
			URL:         cfg.BaseURL,
		},
		FHIRVersion: "5.0.0",
		Format:      []string{"json", "application/fhir+json"},
	}
	rest := fhir.CapabilityRest{
		Mode: "server",
		Documentation: "Search follows https://hl7.org/fhir/R5/search.html. Dates without a time zone are interpreted in UTC. " +
			"The ap prefix widens the value by 10 % of its distance from now (at least one day). " +
			"_count defaults to " + strconv.Itoa(cfg.DefaultCount) + " and is capped at " + strconv.Itoa(cfg.MaxCount) + ". " +
			"Paging uses opaque keyset cursors (_page) bound to the search. Unknown parameters are ignored and left out " +
			"of the self link unless the request sends Prefer: handling=strict. " +
			"Chained search (search.html#chaining), one level deep: a reference parameter followed by .identifier " +
			"(patient.identifier, subject:Patient.identifier, device.identifier) matches resources referring to a Patient or Device " +
			"with that identifier; each searchParam's documentation lists its chains. Other chains are unknown parameters.",
		Security: cfg.Security,
	}
	rest.Documentation += " Versions: vread ([type]/[id]/_history/[vid]) and instance history ([type]/[id]/_history, newest first, " +
		"_count, _since, _at, opaque _page cursors) serve every version the server keeps; a deployment may keep only the newest N " +
		"versions of each resource (an older version then answers 404)."
	for _, typ := range reg.Types() {
		res := fhir.CapabilityResource{
			Type:            typ,
			Versioning:      "versioned",
			ReadHistory:     &t,
			ConditionalRead: "full-support",
		}
		res.Interaction = append(res.Interaction, fhir.CapabilityInteraction{Code: "read"}, fhir.CapabilityInteraction{Code: "vread"},
			fhir.CapabilityInteraction{Code: "history-instance"}, fhir.CapabilityInteraction{Code: "search-type"})
		for _, w := range writable[typ] {
			res.Interaction = append(res.Interaction, fhir.CapabilityInteraction{Code: w})
		}
		if len(writable[typ]) > 0 {
			res.UpdateCreate = &t
			res.ConditionalCreate = &t
			res.ConditionalUpdate = &t
		} else {
			res.Documentation = "Read-only: written by the sync pipeline from the connected vendors."
		}
		for _, p := range reg.Params(typ) {
			res.SearchParam = append(res.SearchParam, fhir.CapabilitySearchParam{
				Name: p.Name, Definition: p.Definition, Type: string(p.Type), Documentation: paramDoc(reg, p),
			})
		}
		for _, i := range reg.Includes(typ) {
			res.SearchInclude = appendOnce(res.SearchInclude, i.String())
		}
		for _, i := range reg.RevIncludes(typ) {
			res.SearchRevInclude = appendOnce(res.SearchRevInclude, i.String())
		}
		res.Operation = operations[typ]
		rest.Resource = append(rest.Resource, res)
	}
	rest.Compartment = []string{PatientCompartment}
	if cfg.Practitioners {
		rest.Resource = append(rest.Resource, fhir.CapabilityResource{
			Type:          "Practitioner",
			Interaction:   []fhir.CapabilityInteraction{{Code: "read"}},
			Versioning:    "no-version",
			ReadHistory:   &f,
			Documentation: "Read only: the practitioner users of the built-in authorization server (the fhirUser of their tokens), visible to the practitioner and to system tokens allowed to read Practitioner.",
		})
	}
	if cfg.MaxBundleEntries > 0 {
		limit := "at most " + strconv.Itoa(cfg.MaxBundleEntries) + " entries; entries may only create (POST, with ifNoneExist) or update (PUT, also conditionally) Patients."
		rest.Interaction = append(rest.Interaction, fhir.CapabilityInteraction{Code: "batch",
			Documentation: "POST a batch Bundle to the base: " + limit})
		if cfg.Transactions {
			rest.Interaction = append(rest.Interaction, fhir.CapabilityInteraction{Code: "transaction",
				Documentation: "POST a transaction Bundle to the base, written all or nothing in one database transaction: " + limit +
					" urn:uuid fullUrls referenced by other entries are resolved."})
		}
	}
	cs.Rest = []fhir.CapabilityRest{rest}
	return cs
}

// paramDoc documents a search parameter: expression, modifiers, sorting and chains. R5 (like R4)
// has no element for a parameter's supported chains in CapabilityStatement.rest.resource
// .searchParam (only SearchParameter.chain, on a SearchParameter resource ohx does not serve),
// so they are stated here, in the documentation the element carries for such behaviour.
func paramDoc(reg *search.Registry, p *search.Param) string {
	doc := p.Expression
	if len(p.Modifiers) > 0 {
		doc += "; modifiers: :missing"
		for _, m := range p.Modifiers {
			doc += ", :" + m
		}
	} else {
		doc += "; modifiers: :missing"
	}
	if p.Sortable {
		doc += "; sortable"
	}
	return doc + chainDoc(reg, p)
}

// chainDoc lists the chains of a reference parameter as clients write them: patient.identifier,
// or for several targets subject:Patient.identifier, subject:Device.identifier and the untyped
// subject.identifier.
func chainDoc(reg *search.Registry, p *search.Param) string {
	var names []string
	types := map[string][]string{} // chained parameter → target types
	for _, c := range reg.Chains(p) {
		if types[c.Name] == nil {
			names = append(names, c.Name)
		}
		types[c.Name] = append(types[c.Name], c.Resource)
	}
	if len(names) == 0 {
		return ""
	}
	var forms []string
	for _, n := range names {
		if len(p.Targets) == 1 {
			forms = append(forms, p.Name+"."+n)
			continue
		}
		for _, t := range types[n] {
			forms = append(forms, p.Name+":"+t+"."+n)
		}
		forms = append(forms, p.Name+"."+n+" (any of "+strings.Join(types[n], ", ")+")")
	}
	return "; chains: " + strings.Join(forms, ", ") + "; a chain's value is the target's identifier token (system|value, |value, " +
		"value or system|; comma = OR), without modifiers, and a value no target has matches nothing"
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
