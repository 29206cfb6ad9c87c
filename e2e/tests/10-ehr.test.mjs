// The EHR's view through fhir-kit-client (https://github.com/Vermonster/fhir-kit-client): the
// CapabilityStatement, searches by patient + code + date range paged to the end with nextPage,
// _include of the measuring Device, and counts, codes and units checked against what the
// simulated vendors generated (the demo's manifest: `served`, per data kind).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { base, ehr, kinds, manifest, patientsOf, searchAll } from '../lib/demo.mjs';

const UCUM = 'http://unitsofmeasure.org';
const connected = manifest.patients.filter((p) => p.provider);

test('metadata: an R5 CapabilityStatement that offers the searches the suite uses', async () => {
  const cs = await ehr().capabilityStatement();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '5.0.0');
  const obs = cs.rest[0].resource.find((r) => r.type === 'Observation');
  const params = obs.searchParam.map((p) => p.name);
  for (const p of ['patient', 'code', 'date']) assert.ok(params.includes(p), `Observation search parameter ${p}`);
  assert.ok(obs.searchInclude.includes('Observation:device'), 'Observation:device include');
});

test('every connected patient has every kind their vendor served, with its LOINC code and UCUM unit', async () => {
  assert.ok(connected.length >= 5, `${connected.length} connected patients in the demo`);
  const client = ehr();
  for (const p of connected) {
    // Every sample the simulator served is one Observation, whatever its kind.
    const all = await client.search({ resourceType: 'Observation', searchParams: { patient: p.id, _summary: 'count' } });
    const sum = Object.values(p.served).reduce((a, b) => a + b, 0);
    assert.equal(all.total, sum, `${p.mrn} (${p.provider}): ${all.total} Observations, the simulator served ${sum} samples`);
    const checked = Object.keys(p.served).filter((k) => kinds[k] && p.served[k] > 0);
    assert.ok(checked.length >= 3, `${p.mrn}: kinds checked in detail: ${checked}`);
    for (const [kind, want] of Object.entries(p.served)) {
      const spec = kinds[kind];
      if (!spec || want === 0) continue;
      const { entries, pages } = await searchAll(client, 'Observation', { patient: p.id, code: spec.code, _count: 25, _total: 'accurate' });
      assert.equal(entries.length, want, `${p.mrn} (${p.provider}) ${kind}: ${entries.length} Observations, the simulator served ${want}`);
      assert.equal(pages[0].total, want, `${p.mrn} ${kind}: Bundle.total`);
      assert.equal(pages.length, Math.max(1, Math.ceil(want / 25)), `${p.mrn} ${kind}: pages of 25`);
      const ids = new Set(entries.map((e) => e.resource.id));
      assert.equal(ids.size, entries.length, `${p.mrn} ${kind}: no Observation twice across pages`);
      for (const { resource: o } of entries) {
        assert.equal(o.subject.reference, `Patient/${p.id}`);
        assert.equal(o.status, 'final');
        assert.ok(o.code.coding.some((c) => `${c.system}|${c.code}` === spec.code), `${kind} coded ${spec.code}`);
        if (spec.unit) {
          assert.equal(o.valueQuantity.system, UCUM, `${kind} unit system`);
          assert.equal(o.valueQuantity.code, spec.unit, `${kind} UCUM code`);
          assert.ok(Number.isFinite(o.valueQuantity.value) && o.valueQuantity.value >= 0, `${kind} value ${o.valueQuantity.value}`);
        }
        if (kind === 'blood-pressure') {
          const comp = Object.fromEntries(o.component.map((c) => [c.code.coding[0].code, c.valueQuantity]));
          assert.equal(comp['8480-6'].code, 'mm[Hg]', 'systolic in mm[Hg]');
          assert.equal(comp['8462-4'].code, 'mm[Hg]', 'diastolic in mm[Hg]');
          assert.ok(comp['8480-6'].value > comp['8462-4'].value, 'systolic above diastolic');
        }
        if (kind === 'weight') assert.ok(o.valueQuantity.value > 35 && o.valueQuantity.value < 160, `weight ${o.valueQuantity.value} kg`);
      }
    }
  }
});

test('a date range returns exactly the Observations inside it, newest first', async () => {
  const client = ehr();
  const p = patientsOf('withings')[0];
  const all = (await searchAll(client, 'Observation', { patient: p.id, code: kinds.weight.code, _count: 100 })).entries.map((e) => e.resource);
  const times = all.map((o) => Date.parse(o.effectiveDateTime)).sort((a, b) => a - b);
  const from = new Date(times[Math.floor(times.length / 3)]);
  const to = new Date(times[Math.floor((2 * times.length) / 3)]);
  const inside = times.filter((t) => t >= from.getTime() && t < to.getTime()).length;
  const { entries } = await searchAll(client, 'Observation', {
    patient: p.id, code: kinds.weight.code, date: [`ge${from.toISOString()}`, `lt${to.toISOString()}`], _sort: '-date', _count: 7,
  });
  assert.equal(entries.length, inside, `weights in [${from.toISOString()}, ${to.toISOString()})`);
  const got = entries.map((e) => Date.parse(e.resource.effectiveDateTime));
  assert.deepEqual(got, [...got].sort((a, b) => b - a), 'sorted by -date');
  assert.ok(got.every((t) => t >= from.getTime() && t < to.getTime()), 'every one inside the range');
});

test('_include=Observation:device returns the measuring Devices', async () => {
  const client = ehr();
  // Google Health data points describe their device (a name and form factor) but never identify
  // it, so those Observations name no Device; Withings and Fitbit name the device's id.
  for (const p of connected.filter((c) => c.provider !== 'googlehealth')) {
    const b = await client.search({ resourceType: 'Observation', searchParams: { patient: p.id, _include: 'Observation:device', _count: 200 } });
    const devices = new Map(b.entry.filter((e) => e.search.mode === 'include').map((e) => [`Device/${e.resource.id}`, e.resource]));
    const matches = b.entry.filter((e) => e.search.mode === 'match');
    assert.ok(matches.length > 0, `${p.mrn}: Observations`);
    const referenced = matches.map((e) => e.resource.device?.reference).filter(Boolean);
    assert.ok(referenced.length > 0, `${p.mrn} (${p.provider}): Observations name their device`);
    for (const r of referenced) assert.ok(devices.has(r), `${p.mrn}: ${r} included`);
    for (const d of devices.values()) {
      assert.equal(d.resourceType, 'Device');
      assert.ok(d.manufacturer || d.name?.length, `${d.id} names its make`);
    }
  }
});

test('every connected account\'s devices carry their battery level (MDC 67996)', async () => {
  const client = ehr();
  for (const p of connected) {
    const da = await client.search({ resourceType: 'DeviceAssociation', searchParams: { patient: p.id, _include: 'DeviceAssociation:device' } });
    const devices = da.entry.filter((e) => e.resource.resourceType === 'Device').map((e) => e.resource);
    assert.ok(devices.length >= 2, `${p.mrn} (${p.provider}): ${devices.length} devices`);
    const battery = devices.flatMap((d) => (d.property ?? []).filter((pr) => pr.type.coding?.some((c) => c.code === '67996')));
    assert.ok(battery.length > 0, `${p.mrn} (${p.provider}): a battery level`);
    for (const b of battery) assert.ok(b.valueQuantity || b.valueCodeableConcept, 'a percentage or a vendor level');
  }
});

test('an EHR finds its patient by MRN and reads their device associations', async () => {
  const client = ehr();
  const p = connected[0];
  const pts = await client.search({ resourceType: 'Patient', searchParams: { identifier: `${manifest.mrn_system}|${p.mrn}` } });
  assert.equal(pts.entry.length, 1);
  assert.equal(pts.entry[0].resource.id, p.id);
  assert.equal(pts.entry[0].resource.name[0].family, p.family);
  const chained = await client.search({ resourceType: 'Observation',
    searchParams: { 'patient.identifier': `${manifest.mrn_system}|${p.mrn}`, code: kinds.weight.code, _summary: 'count' } });
  assert.equal(chained.total, p.served.weight, 'chained search by MRN');
  const da = await client.search({ resourceType: 'DeviceAssociation', searchParams: { patient: p.id, _include: 'DeviceAssociation:device' } });
  assert.ok(da.entry.some((e) => e.resource.resourceType === 'DeviceAssociation'), 'a DeviceAssociation');
  assert.ok(da.entry.some((e) => e.resource.resourceType === 'Device'), 'its Device included');
});

test('an unknown patient id is an empty search, an unknown Observation a 404 OperationOutcome', async () => {
  const client = ehr();
  const b = await client.search({ resourceType: 'Observation', searchParams: { patient: 'no-such-patient' } });
  assert.equal(b.entry?.length ?? 0, 0);
  await assert.rejects(client.read({ resourceType: 'Observation', id: 'nosuchobservation' }), (err) => {
    assert.equal(err.response.status, 404);
    assert.equal(err.response.data.resourceType, 'OperationOutcome');
    return true;
  });
  assert.ok(base.endsWith('/fhir'));
});
