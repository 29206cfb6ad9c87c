// Package capability builds the CapabilityStatement from the same search registry that drives
// parsing and indexing, so that what ohx publishes is exactly what it supports.
package capability

import (
	"strconv"
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
			"of the self link unless the request sends Prefer: handling=strict.",
		Security: cfg.Security,
	}
	for _, typ := range reg.Types() {
		res := fhir.CapabilityResource{
			Type:            typ,
			Versioning:      "versioned",
			ReadHistory:     &f,
			ConditionalRead: "full-support",
		}
		res.Interaction = append(res.Interaction, fhir.CapabilityInteraction{Code: "read"}, fhir.CapabilityInteraction{Code: "search-type"})
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
				Name: p.Name, Definition: p.Definition, Type: string(p.Type), Documentation: paramDoc(p),
			})
		}
		for _, i := range reg.Includes(typ) {
			res.SearchInclude = appendOnce(res.SearchInclude, i.String())
		}
		for _, i := range reg.RevIncludes(typ) {
			res.SearchRevInclude = appendOnce(res.SearchRevInclude, i.String())
		}
		rest.Resource = append(rest.Resource, res)
	}
	cs.Rest = []fhir.CapabilityRest{rest}
	return cs
}

func paramDoc(p *search.Param) string {
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
	return doc
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
