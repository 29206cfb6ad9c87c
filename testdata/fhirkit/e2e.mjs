// Drives a running ohx with fhir-kit-client (https://github.com/Vermonster/fhir-kit-client), the
// way an EHR integration does: create, update, vread, history, compartment search, a chained
// identifier search and paging to the end with totals. Usage: OHX_BASE=… OHX_TOKEN=… node e2e.mjs
// It exits non-zero, naming the step, on the first failure.
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';

const baseUrl = process.env.OHX_BASE;
const client = new Client({ baseUrl, bearerToken: process.env.OHX_TOKEN });

async function step(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err?.message ?? err}`);
    if (err?.response?.data) console.log(JSON.stringify(err.response.data));
    process.exit(1);
  }
}

const mrn = `fk-${Date.now()}`;
let id;
await step('create', async () => {
  const p = await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', identifier: [{ system: 'urn:mrn', value: mrn }], name: [{ family: 'Kit' }] },
  });
  assert.equal(p.resourceType, 'Patient');
  id = p.id;
  assert.ok(id);
});
await step('update twice', async () => {
  for (const family of ['Kit-2', 'Kit-3']) {
    const p = await client.update({
      resourceType: 'Patient', id,
      body: { resourceType: 'Patient', id, identifier: [{ system: 'urn:mrn', value: mrn }], name: [{ family }] },
    });
    assert.equal(p.name[0].family, family);
  }
});
await step('vread', async () => {
  const v1 = await client.vread({ resourceType: 'Patient', id, version: '1' });
  assert.equal(v1.name[0].family, 'Kit');
  assert.equal(v1.meta.versionId, '1');
});
await step('history', async () => {
  const h = await client.history({ resourceType: 'Patient', id });
  assert.equal(h.type, 'history');
  assert.deepEqual(h.entry.map((e) => e.resource?.meta?.versionId), ['3', '2', '1']);
});
await step('compartmentSearch', async () => {
  const b = await client.compartmentSearch({
    resourceType: 'Observation', compartment: { resourceType: 'Patient', id: 'p1' },
    searchParams: { code: 'http://loinc.org|29463-7' },
  });
  assert.deepEqual(b.entry.map((e) => e.resource.id), ['w-p1']);
});
await step('chained search', async () => {
  const b = await client.search({ resourceType: 'Observation', searchParams: { 'patient.identifier': 'urn:mrn|p2' } });
  assert.deepEqual(b.entry.map((e) => e.resource.id), ['w-p2']);
});
await step('nextPage to the end with totals', async () => {
  let b = await client.search({ resourceType: 'Patient', searchParams: { _count: 1 } });
  const total = b.total;
  assert.ok(Number.isInteger(total) && total >= 3, `total ${total}`);
  const seen = [];
  while (b) {
    assert.equal(b.total, total, 'every page carries the same total');
    for (const e of b.entry ?? []) seen.push(e.resource.id);
    b = await client.nextPage({ bundle: b });
  }
  assert.equal(seen.length, total);
  assert.equal(new Set(seen).size, total, 'no Patient twice');
});
