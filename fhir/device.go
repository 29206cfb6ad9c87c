package fhir

import (
	"strings"
	"time"
)

// MapDevice maps a vendor device to an R5 Device (https://hl7.org/fhir/R5/device.html) with
// identifiers in namespace n:
//   - id ResourceID(identifier), identifier n.DeviceSystem(d.Provider) | d.ID, status active,
//     meta.source the provider;
//   - manufacturer d.Manufacturer, as the adapter gives it (never guessed here);
//   - displayName and name[user-friendly-name] = d.Model (displayName falls back to d.Type);
//     modelNumber = d.ModelID;
//   - type: the SNOMED CT code verified for d.Kind (scale, blood-pressure monitor), the
//     generic SCT 49062001 "Device" with a text where no specific code is verified (activity
//     tracker, sleep monitor, thermometer), nothing for other kinds; plus a second type SCT
//     86184003 when the adapter marks the device as recording ECGs (d.ECG);
//   - version[] the firmware; property[] the battery: a percentage as valueQuantity %, a vendor
//     category ("high") as valueCodeableConcept text, never an invented percentage;
//   - the last sync time as the LastSyncExtension instant in the user's zone.
//
// d.Provider and d.ID must be set; adapters guarantee it.
func (n Namespace) MapDevice(d DeviceInfo) *Device {
	system := n.DeviceSystem(d.Provider)
	dev := &Device{
		Base: Base{
			ResourceType: "Device",
			ID:           ResourceID(system, d.ID),
			Meta:         &Meta{Source: n.ProviderSource(d.Provider)},
		},
		Identifier:   []Identifier{{System: system, Value: d.ID}},
		Status:       "active",
		Manufacturer: d.Manufacturer,
		ModelNumber:  d.ModelID,
	}
	if d.Model != "" {
		dev.DisplayName = d.Model
		dev.Name = []DeviceName{{Value: d.Model, Type: "user-friendly-name"}}
	} else {
		dev.DisplayName = d.Type
	}
	if t, ok := deviceTypes[d.Kind]; ok {
		t.Coding = append([]Coding(nil), t.Coding...) // the table is shared
		dev.DeviceType = append(dev.DeviceType, t)
	}
	if d.ECG {
		dev.DeviceType = append(dev.DeviceType, CodeableConcept{Coding: []Coding{sctECGRecorder.coding()}, Text: "ECG recorder"})
	}
	if d.Firmware != "" {
		dev.Version = []DeviceVersion{{Type: &CodeableConcept{Text: "Firmware"}, Value: d.Firmware}}
	}
	if b := strings.TrimSpace(d.Battery); b != "" {
		p := DeviceProperty{Type: CodeableConcept{Coding: []Coding{mdcBatteryLevel.coding()}, Text: "Battery level"}}
		if v := Decimal(strings.TrimSuffix(b, "%")); v.Valid() {
			p.ValueQuantity = &Quantity{Value: &v, Unit: "%", System: UCUMSystem, Code: "%"}
		} else {
			p.ValueCodeableConcept = &CodeableConcept{Text: b}
		}
		dev.Property = []DeviceProperty{p}
	}
	if !d.LastSync.IsZero() {
		ts := FormatDateTime(d.LastSync)
		dev.Extension = []Extension{{URL: LastSyncExtension, ValueInstant: &ts}}
	}
	return dev
}

// MapAssociation maps the link between a patient and a vendor device to an R5 DeviceAssociation
// (https://hl7.org/fhir/R5/deviceassociation.html) with identifiers in namespace n: id
// ResourceID(identifier), identifier n.DeviceAssociationSystem(d.Provider) | d.UserID/d.ID,
// device the Device of MapDevice, subject the patient, period.start firstSeen (the first time
// ohx saw the link; the caller keeps it stable across re-syncs; omitted when zero). While linked
// (ended nil) status is attached; once the device left the vendor's list, period.end = *ended,
// status unknown and statusReason disconnected — the resource is kept, never deleted, and R5 has
// no "inactive" status.
func (n Namespace) MapAssociation(patientID string, d DeviceInfo, firstSeen time.Time, ended *time.Time) *DeviceAssociation {
	system := n.DeviceAssociationSystem(d.Provider)
	value := d.UserID + "/" + d.ID
	a := &DeviceAssociation{
		Base: Base{
			ResourceType: "DeviceAssociation",
			ID:           ResourceID(system, value),
			Meta:         &Meta{Source: n.ProviderSource(d.Provider)},
		},
		Identifier: []Identifier{{System: system, Value: value}},
		Device:     n.DeviceReference(d.Provider, d.ID),
		Status: CodeableConcept{Coding: []Coding{{
			System: DeviceAssociationStatusSystem, Code: "attached", Display: "Attached",
		}}},
		Subject: &Reference{Reference: "Patient/" + patientID},
	}
	var p Period
	if !firstSeen.IsZero() {
		p.Start = FormatDateTime(firstSeen)
	}
	if ended != nil {
		p.End = FormatDateTime(*ended)
		a.Status.Coding[0].Code, a.Status.Coding[0].Display = "unknown", "Unknown"
		a.StatusReason = []CodeableConcept{{Coding: []Coding{{
			System: DeviceAssociationStatusReasonSystem, Code: "disconnected", Display: "Disconnected",
		}}}}
	}
	if p.Start != "" || p.End != "" {
		a.Period = &p
	}
	return a
}

// MapDevice is DefaultNamespace.MapDevice, for tools and tests that map outside a deployment; the
// sync pipeline maps with the deployment's configured Namespace.
func MapDevice(d DeviceInfo) *Device { return DefaultNamespace.MapDevice(d) }

// MapAssociation is DefaultNamespace.MapAssociation, for tools and tests that map outside a
// deployment; the sync pipeline maps with the deployment's configured Namespace.
func MapAssociation(patientID string, d DeviceInfo, firstSeen time.Time, ended *time.Time) *DeviceAssociation {
	return DefaultNamespace.MapAssociation(patientID, d, firstSeen, ended)
}
