package fhir

// CapabilityStatement describes what a FHIR server supports.
type CapabilityStatement struct {
	Base
	URL            string                    `json:"url,omitempty"`
	Version        string                    `json:"version,omitempty"`
	Name           string                    `json:"name,omitempty"`
	Title          string                    `json:"title,omitempty"`
	Status         string                    `json:"status"`
	Date           string                    `json:"date"`
	Publisher      string                    `json:"publisher,omitempty"`
	Description    string                    `json:"description,omitempty"`
	Kind           string                    `json:"kind"`
	Software       *CapabilitySoftware       `json:"software,omitempty"`
	Implementation *CapabilityImplementation `json:"implementation,omitempty"`
	FHIRVersion    string                    `json:"fhirVersion"`
	Format         []string                  `json:"format"`
	PatchFormat    []string                  `json:"patchFormat,omitempty"`
	Rest           []CapabilityRest          `json:"rest,omitempty"`
}

// CapabilitySoftware names the software.
type CapabilitySoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// CapabilityImplementation describes this instance.
type CapabilityImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// CapabilityRest describes the RESTful endpoint.
type CapabilityRest struct {
	Mode          string                  `json:"mode"`
	Documentation string                  `json:"documentation,omitempty"`
	Security      *CapabilitySecurity     `json:"security,omitempty"`
	Resource      []CapabilityResource    `json:"resource,omitempty"`
	Interaction   []CapabilityInteraction `json:"interaction,omitempty"`
	SearchParam   []CapabilitySearchParam `json:"searchParam,omitempty"`
	Operation     []CapabilityOperation   `json:"operation,omitempty"`
	// Compartment lists the canonical URLs of the compartments served (compartment search).
	Compartment []string `json:"compartment,omitempty"`
}

// CapabilitySecurity describes how the endpoint is secured.
type CapabilitySecurity struct {
	Extension   []Extension       `json:"extension,omitempty"`
	Cors        *bool             `json:"cors,omitempty"`
	Service     []CodeableConcept `json:"service,omitempty"`
	Description string            `json:"description,omitempty"`
}

// CapabilityResource describes one resource type.
type CapabilityResource struct {
	Type              string                  `json:"type"`
	Profile           string                  `json:"profile,omitempty"`
	Documentation     string                  `json:"documentation,omitempty"`
	Interaction       []CapabilityInteraction `json:"interaction,omitempty"`
	Versioning        string                  `json:"versioning,omitempty"`
	ReadHistory       *bool                   `json:"readHistory,omitempty"`
	UpdateCreate      *bool                   `json:"updateCreate,omitempty"`
	ConditionalCreate *bool                   `json:"conditionalCreate,omitempty"`
	ConditionalRead   string                  `json:"conditionalRead,omitempty"`
	ConditionalUpdate *bool                   `json:"conditionalUpdate,omitempty"`
	SearchInclude     []string                `json:"searchInclude,omitempty"`
	SearchRevInclude  []string                `json:"searchRevInclude,omitempty"`
	SearchParam       []CapabilitySearchParam `json:"searchParam,omitempty"`
	Operation         []CapabilityOperation   `json:"operation,omitempty"`
}

// CapabilityInteraction is a supported RESTful interaction.
type CapabilityInteraction struct {
	Code          string `json:"code"`
	Documentation string `json:"documentation,omitempty"`
}

// CapabilitySearchParam is a supported search parameter.
type CapabilitySearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// CapabilityOperation is a supported operation.
type CapabilityOperation struct {
	Name          string `json:"name"`
	Definition    string `json:"definition"`
	Documentation string `json:"documentation,omitempty"`
}

// Type implements Resource.
func (*CapabilityStatement) Type() string { return "CapabilityStatement" }

// Validate implements Resource.
func (c *CapabilityStatement) Validate() error {
	var v validator
	v.required("CapabilityStatement.status", c.Status != "")
	v.required("CapabilityStatement.date", c.Date != "")
	v.required("CapabilityStatement.kind", c.Kind != "")
	v.required("CapabilityStatement.fhirVersion", c.FHIRVersion != "")
	v.required("CapabilityStatement.format", len(c.Format) > 0)
	return errOrNil(v.err)
}
