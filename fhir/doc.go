// Package fhir is the FHIR R5 model of ohx (https://hl7.org/fhir/R5/): the resource structs ohx
// serves (Patient, Practitioner, Device, DeviceAssociation, Observation, Bundle,
// OperationOutcome, CapabilityStatement…) with their encoding/json form, exact decimals and
// dateTime/instant handling, strict decoding and validation of client bodies, and conversion of
// the resources to FHIR R4 (https://hl7.org/fhir/R4/) for clients that ask for it.
//
// It holds the one mapping from measurements to FHIR: adapters describe what they read as
// provider-neutral values (Sample, DeviceInfo), and MapSample, MapDevice and MapAssociation turn
// them into Observations, Devices and DeviceAssociations with the terminology of this package
// (LOINC, UCUM, SNOMED CT, ISO/IEEE 11073 MDC and the project's local code systems), the
// identifier systems and the deterministic resource ids.
//
// The package knows no vendor. Every vendor rule — which model records ECGs, what a wear-position
// code means, who made a device, a caveat that goes with the data — is resolved by the adapter
// into a field of Sample or DeviceInfo, so a new vendor adds no code here; Sample.Provider is only
// data that names identifier systems and meta.source. It stores nothing and does no I/O.
//
// Sub-package fhir/search holds the search-parameter registry and parses query strings into a
// typed, store-neutral query.
package fhir
