// The patient's side: they connect their Withings account in a browser (the link an EHR made,
// the simulated vendor's consent page, ohx's callback), then a SMART app built on fhirclient
// (the SMART JS client, https://github.com/smart-on-fhir/client-js) in its Node mode does a
// standalone launch through ohx's sign-in and consent pages and reads the patient's own data,
// and nobody else's.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { after, before, test } from 'node:test';
import smart from 'fhirclient';
import { Browser, base, ehr, eventually, field, formAction, kinds, manifest } from '../lib/demo.mjs';

const me = manifest.patients.find((p) => p.id === manifest.login.patient);
const other = manifest.patients.find((p) => p.provider && p.id !== me.id);

// fhirclient keeps its state in a storage object; a Map is enough for one app process.
const kept = new Map();
const storage = {
  get: async (k) => kept.get(k),
  set: async (k, v) => { kept.set(k, v); return v; },
  unset: async (k) => kept.delete(k),
};

let app;
let appURL;
let result;
before(async () => {
  app = http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://app').pathname;
    try {
      if (path === '/launch') {
        await smart(req, res, storage).authorize({
          iss: base, clientId: 'e2e-app', redirectUri: '/callback',
          scope: 'openid fhirUser launch/patient patient/*.rs offline_access',
        });
        return;
      }
      if (path === '/callback') {
        const client = await smart(req, res, storage).ready();
        const patient = await client.patient.read();
        const weights = await client.request(`Observation?code=${encodeURIComponent(kinds.weight.code)}&_count=20`, { pageLimit: 0, flat: true });
        let foreign;
        try {
          foreign = await client.request(`Observation?patient=${other.id}`);
        } catch (err) {
          foreign = { status: err.status ?? err.statusCode };
        }
        result = { patientId: client.patient.id, patient, weights, foreign, refresh: Boolean(client.state.tokenResponse.refresh_token) };
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
        return;
      }
      res.writeHead(404);
      res.end();
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err?.stack ?? err));
    }
  });
  await new Promise((r) => app.listen(0, '127.0.0.1', r));
  appURL = `http://127.0.0.1:${app.address().port}`;
  // The operator registers the app as a public client (PKCE is its only proof).
  execFileSync(process.env.OHX_BIN, ['clients', 'add', '-data-dir', manifest.data_dir, '-id', 'e2e-app', '-name', 'e2e SMART app',
    '-type', 'public', '-redirect-uri', `${appURL}/callback`], { encoding: 'utf8' });
});
after(() => app?.close());

async function count(kind) {
  const b = await ehr().search({ resourceType: 'Observation', searchParams: { patient: me.id, code: kinds[kind].code, _summary: 'count' } });
  return b.total;
}

test('the patient connects their Withings account in a browser and their history arrives', async () => {
  assert.equal(await count('weight'), 0, 'nothing before connecting');
  const b = new Browser();
  let res = await b.fetch(manifest.connect_link);
  assert.equal(res.status, 302, 'the link sends the browser to the vendor');
  const consent = Browser.location(res, manifest.connect_link);
  assert.ok(consent.startsWith(manifest.vendors.withings), consent);
  res = await b.fetch(consent);
  const page = await res.text();
  assert.equal(res.status, 200);
  assert.match(page, /Withings/);
  assert.ok(page.includes(`value="${me.account}"`), 'the consent page offers the patient\'s account');
  res = await b.fetch(formAction(page, consent), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ nonce: field(page, 'nonce'), account: me.account, action: 'allow' }),
  });
  assert.equal(res.status, 303, 'Allow sends the browser back to ohx');
  const callback = Browser.location(res, consent);
  assert.ok(callback.startsWith(`${new URL(base).origin}/connect/withings/callback`), callback);
  res = await b.fetch(callback);
  assert.equal(res.status, 200, await res.text());
  await eventually(async () => (await count('weight')) === me.served.weight, 60_000, `${me.served.weight} weights after connecting`);
});

test('a fhirclient standalone launch signs the patient in and reads only their own data', async () => {
  const b = new Browser();
  let res = await b.fetch(`${appURL}/launch`);
  assert.equal(res.status, 302, 'fhirclient redirects to the authorize endpoint');
  let url = Browser.location(res, `${appURL}/launch`);
  assert.ok(url.startsWith(`${new URL(base).origin}/auth/authorize`), url);
  assert.equal(new URL(url).searchParams.get('code_challenge_method'), 'S256', 'fhirclient uses PKCE');
  // authorize → sign-in page
  for (let i = 0; i < 3 && !url.includes('/auth/login'); i++) {
    res = await b.fetch(url);
    url = Browser.location(res, url);
    assert.ok(url, `redirect ${i} from authorize`);
  }
  res = await b.fetch(url);
  let page = await res.text();
  assert.equal(res.status, 200);
  res = await b.fetch(formAction(page, url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: field(page, 'csrf'), username: manifest.login.username, password: manifest.login.password }),
  });
  assert.ok([302, 303].includes(res.status), `sign-in: ${res.status}`);
  url = Browser.location(res, url);
  res = await b.fetch(url);
  page = await res.text();
  assert.equal(res.status, 200, 'the consent page');
  res = await b.fetch(formAction(page, url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: field(page, 'csrf'), action: 'approve' }),
  });
  assert.ok([302, 303].includes(res.status), `approve: ${res.status}`);
  url = Browser.location(res, url);
  assert.ok(url.startsWith(`${appURL}/callback?`), url);
  res = await b.fetch(url);
  assert.equal(res.status, 200, await res.text());

  assert.equal(result.patientId, me.id, 'launch/patient gives the signed-in patient');
  assert.equal(result.patient.name[0].family, me.family);
  assert.equal(result.weights.length, me.served.weight, 'the app pages through all its weights');
  assert.ok(result.weights.every((o) => o.subject.reference === `Patient/${me.id}`), 'only the patient\'s own');
  assert.ok(result.refresh, 'offline_access gives a refresh token');
  const foreign = result.foreign;
  const leaked = Array.isArray(foreign?.entry) && foreign.entry.some((e) => e.resource?.subject?.reference === `Patient/${other.id}`);
  assert.ok(!leaked, 'another patient\'s Observations never reach the app');
  assert.ok(foreign.status === 403 || foreign.status === 404 || (foreign.entry?.length ?? 0) === 0, `another patient: ${JSON.stringify(foreign).slice(0, 200)}`);
});
