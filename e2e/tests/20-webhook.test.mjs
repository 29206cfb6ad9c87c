// A simulated vendor pushes its webhook (Withings' form post to the secret path, Google Health's
// JSON with its Authorization header, Fitbit's signed JSON) and the new measurements become
// searchable within seconds: the real pipeline runs, nothing is polled.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ehr, eventually, kinds, manifest } from '../lib/demo.mjs';

const connected = manifest.patients.filter((p) => p.provider);

async function count(client, patient, kind) {
  const b = await client.search({ resourceType: 'Observation', searchParams: { patient, code: kinds[kind].code, _summary: 'count' } });
  return b.total;
}

async function push() {
  const res = await fetch(manifest.push_url, { method: 'POST' });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.notifications;
}

test('two pushes bring new measurements for every connected account, searchable within seconds', async () => {
  const client = ehr();
  // Each push records a measurement per connected account: Withings a weigh-in (and a blood
  // pressure on every other push), Google Health and Fitbit a growing step total for today and,
  // every other push, a weigh-in.
  const n1 = await push();
  const n2 = await push();
  // Notifications per push follow each vendor's rules (Google Health one per changed data type,
  // Fitbit one per collection, Withings one per measure category): the totals below are the test.
  assert.ok(n1 >= connected.length, `first push: ${n1} notifications accepted for ${connected.length} accounts`);
  assert.ok(n2 > 0, `second push: ${n2} notifications accepted`);
  const served = await (await fetch(manifest.served_url)).json();
  const started = Date.now();
  for (const p of connected) {
    const now = served[p.id];
    assert.ok(now.weight > p.served.weight, `${p.mrn} (${p.provider}): the pushes added a weigh-in (${p.served.weight} → ${now.weight})`);
    for (const kind of ['weight', 'blood-pressure', 'steps']) {
      if (!(kind in now)) continue;
      await eventually(async () => (await count(client, p.id, kind)) === now[kind], 15_000,
        `${p.mrn} (${p.provider}): ${now[kind]} ${kind} Observations`);
    }
  }
  console.log(`pushed measurements searchable after ${Date.now() - started} ms`);
  // The newest weigh-in of each is a pushed one: effective minutes ago, after the history.
  for (const p of connected) {
    const b = await client.search({ resourceType: 'Observation', searchParams: { patient: p.id, code: kinds.weight.code, _sort: '-date', _count: 1 } });
    const at = Date.parse(b.entry[0].resource.effectiveDateTime);
    assert.ok(Date.now() - at < 5 * 60_000, `${p.mrn}: newest weight at ${b.entry[0].resource.effectiveDateTime}`);
  }
});
