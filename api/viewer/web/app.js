// ohx viewer: a SMART on FHIR app (https://hl7.org/fhir/smart-app-launch/) that reads one
// patient's wearable data through ohx's public FHIR API with the official SMART JavaScript
// client (fhirclient, http://docs.smarthealthit.org/client-js/). Plain ES module, no build step;
// everything it shows comes from FHIR responses, rendered as text nodes (never parsed as HTML),
// so no value from the server can become markup or script; the CSP requires Trusted Types, so an
// HTML sink would throw.
import uPlot from './vendor/uPlot.esm.js';

const FHIR = window.FHIR;
const CLIENT_ID = 'ohx-viewer';
// No offline_access: a public browser client should not hold a long-lived refresh token
// (https://www.rfc-editor.org/rfc/rfc9700#section-2.2.2); when the access token expires the user
// signs in again. api/viewer's tests check every scope here is one viewer.Scopes() registers.
const SCOPE = 'openid fhirUser launch/patient patient/*.rs user/*.rs';
// The FHIR base next to /app/: the app is served by the server it reads from.
const ISS = new URL('../fhir', location.href).href;

const LOINC = 'http://loinc.org';
const MDC = 'urn:iso:std:iso:11073:10101';
const LAST_SYNC = 'https://github.com/openhealthexchange/ohx/fhir/StructureDefinition/last-sync-time'; // fhir.LastSyncExtension
const DAY = 86400;

// The charts: codes as fhir/terminology.go maps them. SpO2 Observations carry both 2708-6 and
// 59408-5; searching either finds them. Sleep is one Observation per session with its stages as
// components (minutes).
const CHARTS = [
  { id: 'weight', title: 'Weight', noun: 'weight', code: `${LOINC}|29463-7`, unit: 'kg',
    series: [{ label: 'Weight', color: '#1f5fa8', value: (o) => qty(o.valueQuantity) }] },
  { id: 'steps', title: 'Steps per day', noun: 'step count', code: `${LOINC}|41950-7`, unit: 'steps', bars: true,
    series: [{ label: 'Steps', color: '#1e6b34', value: (o) => qty(o.valueQuantity) }] },
  { id: 'resting-hr', title: 'Resting heart rate', noun: 'resting heart rate', code: `${LOINC}|40443-4`, unit: '/min',
    series: [{ label: 'Resting HR', color: '#a4262c', value: (o) => qty(o.valueQuantity) }] },
  { id: 'bp', title: 'Blood pressure', noun: 'blood pressure', code: `${LOINC}|85354-9`, unit: 'mmHg',
    series: [
      { label: 'Systolic', color: '#a4262c', value: (o) => comp(o, LOINC, '8480-6') },
      { label: 'Diastolic', color: '#1f5fa8', value: (o) => comp(o, LOINC, '8462-4') },
    ] },
  { id: 'spo2', title: 'Oxygen saturation (SpO2)', noun: 'SpO2', code: `${LOINC}|59408-5,${LOINC}|2708-6`, unit: '%',
    series: [{ label: 'SpO2', color: '#5b2c8f', value: (o) => qty(o.valueQuantity) }] },
  { id: 'sleep', title: 'Sleep', noun: 'sleep', code: `${LOINC}|93832-4`, unit: 'h',
    series: [
      { label: 'Total', color: '#222222', value: (o) => hours(qty(o.valueQuantity)) },
      { label: 'Deep', color: '#1f5fa8', value: (o) => hours(comp(o, LOINC, '93831-6')) },
      { label: 'Light', color: '#1e6b34', value: (o) => hours(comp(o, LOINC, '93830-8')) },
      { label: 'REM', color: '#5b2c8f', value: (o) => hours(comp(o, LOINC, '93829-0')) },
    ] },
];
const RANGES = [30, 90, 365];

const $view = document.getElementById('view');
const $status = document.getElementById('status');
let client;
let range = 30;
let charts = []; // live uPlot instances, resized with the window
let currentRoute = ''; // the last "#/…" hash routed to ('' is the default page)
// Each render owns an AbortController: a newer render (another route, another range) aborts the
// requests of the one it supersedes, and their late results are dropped.
let pageAbort = new AbortController();
let chartsAbort = new AbortController();

// el builds an element: el('p', {class: 'x'}, 'text', child…). Strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function qty(q) { return q && typeof q.value === 'number' ? q.value : null; }
function hours(min) { return min === null ? null : Math.round(min / 6) / 10; }
function hasCode(cc, system, code) { return !!cc && (cc.coding || []).some((c) => c.system === system && c.code === code); }
function comp(o, system, code) {
  const c = (o.component || []).find((c) => hasCode(c.code, system, code));
  return c ? qty(c.valueQuantity) : null;
}
function when(o) { return o.effectiveDateTime || o.effectiveInstant || (o.effectivePeriod && (o.effectivePeriod.start || o.effectivePeriod.end)) || o.issued; }
function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
function display(cc) {
  if (!cc) return '';
  return cc.text || ((cc.coding || []).find((c) => c.display) || {}).display || ((cc.coding || [])[0] || {}).code || '';
}
function codes(cc) { return (cc && cc.coding || []).map((c) => `${c.code}`).join(', '); }
function valueText(o) {
  if (o.valueQuantity) return [fmtNum(o.valueQuantity.value), o.valueQuantity.unit || o.valueQuantity.code || ''];
  if (o.valueCodeableConcept) return [display(o.valueCodeableConcept), ''];
  if (o.valueString) return [o.valueString, ''];
  if (o.valueInteger !== undefined) return [String(o.valueInteger), ''];
  const parts = (o.component || []).filter((c) => c.valueQuantity).map((c) => fmtNum(c.valueQuantity.value));
  if (parts.length) return [parts.join('/'), ((o.component || []).find((c) => c.valueQuantity) || {}).valueQuantity.unit || ''];
  if ((o.component || []).some((c) => c.valueSampledData)) return ['waveform', ''];
  return ['—', ''];
}
function fmtNum(v) { return typeof v === 'number' ? v.toLocaleString(undefined, { maximumFractionDigits: 2 }) : String(v ?? '—'); }
function name(p) {
  const n = (p.name || [])[0];
  const fallback = `${p.resourceType || 'Patient'} ${p.id}`;
  if (!n) return fallback;
  return n.text || [...(n.given || []), n.family].filter(Boolean).join(' ') || fallback;
}

// status of an error from fhirclient (HttpError has status), or 0.
function httpStatus(e) { return (e && (e.status || e.statusCode || (e.response && e.response.status))) || 0; }

// errorBox is the designed error state: what failed, why in words, and what to do.
function errorBox(what, e) {
  const s = httpStatus(e);
  let msg;
  if (s === 403) msg = `You do not have access to ${what}: your sign-in does not allow it (403). Ask for access, or sign in as a user who has it.`;
  else if (s === 404) msg = `${what} was not found, or is not one you may see (404).`;
  else if (s === 401) msg = `Your session has expired (401). Sign in again.`;
  else msg = `Could not load ${what}${s ? ` (HTTP ${s})` : ''}: ${e && e.message ? e.message : e}`;
  const box = el('div', { class: 'error', role: 'alert', 'data-status': s || 'error' }, el('p', {}, msg));
  if (s === 401) box.append(el('button', { type: 'button', on: { click: signOut } }, 'Sign in again'));
  return box;
}

// loading is the placeholder of a region being loaded; the region itself carries aria-busy
// (busy), so assistive technology waits for its content instead of reading the placeholder.
function loading(what) { return el('p', { class: 'loading' }, `Loading ${what}…`); }
function busy(region, on) {
  if (on) region.setAttribute('aria-busy', 'true');
  else region.removeAttribute('aria-busy');
}
function aborted(signal, e) { return signal.aborted || (e && e.name === 'AbortError'); }

// search returns the resources of a search, following next links for at most pageLimit pages;
// truncated says that a next link was left unfollowed (the page shows "showing the first N").
async function search(url, pageLimit, signal) {
  const resources = [];
  let next = url;
  for (let pages = 0; next && pages < pageLimit; pages++) {
    const b = await client.request({ url: next, signal });
    for (const e of (b && b.entry) || []) if (e.resource) resources.push(e.resource);
    next = (((b && b.link) || []).find((l) => l.relation === 'next') || {}).url;
  }
  return { resources, truncated: !!next };
}

// cutNote says that a paging limit cut a list short.
function cutNote(n, what) { return el('p', { class: 'muted cut', 'data-truncated': n }, `Showing the first ${n} ${what}; there are more.`); }

function signOut() {
  sessionStorage.clear();
  location.replace(location.pathname);
}

// --- launch ---

// unsafeLaunch reports whether the page URL carries launch parameters that fhirclient's
// authorize would let override the app's own options (it reads iss, fhirServiceUrl, clientId,
// patientId and launch from the URL): a link could otherwise send the sign-in, and the tokens,
// to another server or client. Only an iss that is this server's own FHIR base is accepted; a
// launch value with it (or without an iss) is the EHR launch.
function unsafeLaunch(q) {
  if (['fhirServiceUrl', 'clientId', 'patientId'].some((k) => q.has(k))) return true;
  return q.has('iss') && q.get('iss').replace(/\/$/, '') !== ISS;
}

async function start() {
  const q = new URLSearchParams(location.search);
  document.querySelector('a.skip').addEventListener('click', (ev) => {
    // Move focus to the content without changing the hash (which is the app's route).
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  try {
    if (q.has('error')) {
      // The authorization server answered the redirect with an error (RFC 6749 §4.1.2.1). Only a
      // well-formed error code is shown, never error_description: the URL is anyone's to write.
      const code = q.get('error');
      const known = /^[a-z_]{1,40}$/.test(code);
      busy($view, false);
      $view.replaceChildren(el('div', { class: 'error', role: 'alert', 'data-status': known ? code : 'error' },
        el('p', {}, code === 'access_denied' ? 'You did not allow the app to read your data.'
          : known ? `Sign-in failed (${code}).` : 'Sign-in failed.'),
        el('button', { type: 'button', on: { click: signOut } }, 'Try again')));
      return;
    }
    if (q.has('launch') || (!q.has('code') && !q.has('state') && !sessionStorage.getItem('SMART_KEY'))) {
      // Standalone launch, or an EHR launch with a launch value: fhirclient discovers the
      // endpoints from ISS, makes PKCE and redirects. (The redirect back, with code and state,
      // goes to ready(), which reads none of the launch parameters; it may carry the
      // authorization server's RFC 9207 iss, which is not the FHIR base.)
      if (unsafeLaunch(q)) {
        busy($view, false);
        $view.replaceChildren(el('div', { class: 'error', role: 'alert', 'data-status': 'launch' },
          el('p', {}, 'This link tries to start the app with another server or client. The app only signs in to this server: open it without those parameters.'),
          el('button', { type: 'button', on: { click: signOut } }, 'Start again')));
        return;
      }
      $view.replaceChildren(loading('the sign-in page'));
      await FHIR.oauth2.authorize({
        clientId: CLIENT_ID, scope: q.has('launch') ? SCOPE.replace('launch/patient', 'launch') : SCOPE,
        redirectUri: './', iss: ISS, pkceMode: 'required',
      });
      return;
    }
    client = await FHIR.oauth2.ready();
  } catch (e) {
    busy($view, false);
    $view.replaceChildren(errorBox('the sign-in', e), el('button', { type: 'button', on: { click: signOut } }, 'Start again'));
    return;
  }
  const user = client.getFhirUser() || '';
  document.getElementById('user').textContent = user ? `Signed in as ${user}` : '';
  if (user) {
    // The user's own resource names them (Patient or Practitioner, both readable with fhirUser).
    client.user.read().then((u) => { document.getElementById('user').textContent = `Signed in as ${name(u)}`; }, () => {});
  }
  const nav = document.getElementById('nav');
  nav.replaceChildren();
  if (isPractitioner()) nav.append(el('a', { href: '#/patients' }, 'Patients'));
  nav.append(el('button', { type: 'button', class: 'link', on: { click: signOut } }, 'Sign out'));
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', resizeCharts);
  route();
}

function isPractitioner() { return /^(Practitioner|PractitionerRole)\//.test(client.getFhirUser() || ''); }

// route renders the page the hash names. Only "#/…" hashes are routes: another fragment (the
// skip link's #main, say) leaves the page as it is; on the first render it means the default page.
function route(ev) {
  const raw = location.hash;
  if (raw.startsWith('#/') || raw === '') currentRoute = raw;
  else if (ev) return;
  pageAbort.abort();
  chartsAbort.abort();
  pageAbort = new AbortController();
  destroyCharts();
  busy($view, false);
  const h = currentRoute;
  let m;
  if ((m = h.match(/^#\/patient\/([A-Za-z0-9\-.]{1,64})$/))) return patientPage(m[1]);
  if ((m = h.match(/^#\/ecg\/([A-Za-z0-9\-.]{1,64})$/))) return ecgPage(m[1]);
  if (h === '#/patients') return pickerPage();
  if (client.patient.id) return patientPage(client.patient.id);
  if (isPractitioner()) return pickerPage();
  $view.replaceChildren(el('div', { class: 'empty' }, el('p', {}, 'No patient is selected for this sign-in.')));
}

function destroyCharts() {
  for (const c of charts) c.destroy();
  charts = [];
}

function focusMain(title) {
  document.title = `${title} · ohx viewer`;
  document.getElementById('main').focus({ preventScroll: true });
  $status.textContent = title;
}

// --- patient picker (practitioner users) ---

async function pickerPage() {
  focusMain('Patients');
  const signal = pageAbort.signal;
  const list = el('div', { id: 'patient-list', 'aria-label': 'Patients', role: 'region' }, loading('patients'));
  const input = el('input', { type: 'search', id: 'patient-q', name: 'q', autocomplete: 'off' });
  const form = el('form', { role: 'search', on: { submit: (ev) => { ev.preventDefault(); load(input.value.trim()); } } },
    el('label', { for: 'patient-q' }, 'Search by name'), input, el('button', { type: 'submit' }, 'Search'));
  $view.replaceChildren(el('h1', {}, 'Patients'), form, list);
  let gen = 0; // a newer search supersedes an older one still in flight
  async function load(q) {
    const mine = ++gen;
    list.replaceChildren(loading('patients'));
    busy(list, true);
    try {
      const res = await search(`Patient?_count=50${q ? `&name=${encodeURIComponent(q)}` : ''}`, 4, signal);
      if (mine !== gen || signal.aborted) return;
      const ps = res.resources.filter((r) => r.resourceType === 'Patient');
      if (!ps.length) { list.replaceChildren(el('p', { class: 'empty' }, q ? `No patient matches “${q}”.` : 'No patients yet.')); return; }
      list.replaceChildren(el('ul', { class: 'patients' }, ps.map((p) => el('li', {},
        el('a', { href: `#/patient/${p.id}`, 'data-patient': p.id }, name(p)),
        p.birthDate ? el('span', { class: 'muted' }, ` born ${p.birthDate}`) : null,
        p.id === client.patient.id ? el('span', { class: 'badge' }, 'in context') : null))),
        res.truncated ? cutNote(ps.length, 'patients; search by name to narrow the list') : '');
    } catch (e) {
      if (mine !== gen || aborted(signal, e)) return;
      list.replaceChildren(errorBox('the patient list', e));
    } finally {
      if (mine === gen) busy(list, false);
    }
  }
  load('');
}

// --- patient page ---

async function patientPage(id) {
  const signal = pageAbort.signal;
  const head = el('div', { class: 'patient-head', role: 'region', 'aria-label': 'Patient', 'aria-busy': 'true' }, loading('the patient'));
  const chartBox = el('section', { id: 'charts', 'aria-labelledby': 'charts-h' }, el('h2', { id: 'charts-h' }, `Last ${range} days`));
  const ranges = el('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, RANGES.map((d) =>
    el('button', { type: 'button', 'aria-pressed': d === range ? 'true' : 'false', 'data-range': d,
      on: { click: (ev) => {
        // Only the charts depend on the range: they re-render in place, so the buttons (and
        // keyboard focus on the pressed one) stay.
        const b = ev.currentTarget;
        range = d;
        for (const x of ranges.querySelectorAll('button')) x.setAttribute('aria-pressed', x === b ? 'true' : 'false');
        if (p) renderCharts(id, chartBox);
        if (document.activeElement !== b) b.focus();
      } } }, `${d} days`)));
  const section = (sid, title, what) => el('section', { id: sid, 'aria-labelledby': `${sid}-h`, 'aria-busy': 'true' },
    el('h2', { id: `${sid}-h` }, title), loading(what));
  const conns = section('connections', 'Connected services', 'connections');
  const devices = section('devices', 'Devices', 'devices');
  const latest = section('latest', 'Latest values', 'latest values');
  const ecgs = section('ecgs', 'ECGs', 'ECGs');
  $view.replaceChildren(head, ranges, conns, devices, latest, chartBox, ecgs);
  focusMain('Patient');

  let p;
  try {
    p = await client.request({ url: `Patient/${id}`, signal });
  } catch (e) {
    if (aborted(signal, e)) return;
    // Nothing else on the page can load either: one clear message instead of six.
    $view.replaceChildren(el('h1', {}, 'Patient'), errorBox('this patient', e));
    return;
  }
  if (signal.aborted) return;
  head.replaceChildren(el('h1', { 'data-patient': p.id }, name(p)),
    el('p', { class: 'muted' }, [p.gender, p.birthDate && `born ${p.birthDate}`].filter(Boolean).join(' · ')));
  busy(head, false);
  focusMain(name(p));

  const done = (box) => () => busy(box, false);
  await Promise.all([
    loadConnections(id, conns, signal).finally(done(conns)),
    loadDevices(id, devices, signal).finally(done(devices)),
    loadLatest(id, latest, signal).finally(done(latest)),
    loadECGs(id, ecgs, signal).finally(done(ecgs)),
    renderCharts(id, chartBox),
  ]);
}

// renderCharts (re)draws the charts for the current range, superseding a render still loading:
// its requests are aborted and its uPlot instances destroyed.
async function renderCharts(id, box) {
  chartsAbort.abort();
  const ctrl = new AbortController();
  chartsAbort = ctrl;
  const signal = ctrl.signal;
  if (pageAbort.signal.aborted) return;
  // Leaving the page aborts its charts too (the listener goes when this render is superseded).
  pageAbort.signal.addEventListener('abort', () => ctrl.abort(), { once: true, signal });
  destroyCharts();
  const now = Date.now();
  const span = { since: now - range * DAY * 1000, now, days: range };
  box.replaceChildren(el('h2', { id: 'charts-h' }, `Last ${range} days`));
  busy(box, true);
  const figs = CHARTS.map((c) => {
    const fig = el('figure', { class: 'chart', id: `chart-${c.id}`, 'data-state': 'loading', 'aria-busy': 'true' },
      el('figcaption', {}, el('h3', {}, `${c.title}`, el('span', { class: 'muted' }, ` (${c.unit})`))), loading(`${c.noun} data`));
    box.append(fig);
    return fig;
  });
  await Promise.all(CHARTS.map((c, i) => loadChart(id, c, span, figs[i], signal).finally(() => busy(figs[i], false))));
  if (!signal.aborted) busy(box, false);
}

// The vendors a patient can connect here (providers/*); the legacy Fitbit Web API only serves
// connections made before it was turned off, so it is not offered.
const PROVIDERS = [{ id: 'withings', name: 'Withings' }, { id: 'googlehealth', name: 'Fitbit (Google Health)' }];
const ORIGIN_BASE = new URL('..', location.href).href; // where /connect lives, next to /app/

// loadConnections shows the patient's vendor connections (GET /connect/status, a bearer API
// beside FHIR) and, to a patient user, buttons that start the connect flow for one more.
async function loadConnections(id, box, signal) {
  let conns = [];
  try {
    const st = await client.request({ url: `${ORIGIN_BASE}connect/status?patient=${encodeURIComponent(id)}`, signal });
    if (signal.aborted) return;
    conns = (st && st.connections) || [];
    box.lastChild.remove();
    if (!conns.length) box.append(el('p', { class: 'empty' }, 'No service is connected yet.'));
    else box.append(el('ul', { class: 'conns' }, conns.map((c) => el('li', { 'data-provider': c.provider },
      el('strong', {}, (PROVIDERS.find((p) => p.id === c.provider) || { name: c.provider }).name), ` · ${c.status}`,
      c.lastSync ? el('span', { class: 'muted' }, ` · last sync ${fmtTime(c.lastSync)}`) : null,
      c.lastError ? el('span', { class: 'error-inline' }, ` · ${c.lastError}`) : null))));
  } catch (e) {
    if (aborted(signal, e)) return;
    box.lastChild.replaceWith(errorBox('the connected services', e));
  }
  if (client.getFhirUser() !== `Patient/${id}`) return; // only the patient links their own accounts
  const msg = el('div', { role: 'alert' });
  const buttons = PROVIDERS.filter((p) => !conns.some((c) => c.provider === p.id && c.status === 'active')).map((p) =>
    el('button', { type: 'button', 'data-connect': p.id, on: { click: async (ev) => {
      const b = ev.currentTarget;
      b.disabled = true;
      try {
        // A single-use link to the vendor's consent page (POST /connect/links); the flow ends on
        // ohx's page, and Back returns here with the session kept in sessionStorage.
        const l = await client.request({ url: `${ORIGIN_BASE}connect/links`, method: 'POST',
          headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ patient: id, provider: p.id }) });
        location.assign(l.url);
      } catch (e) {
        msg.replaceChildren(errorBox(`a ${p.name} connection`, e));
        b.disabled = false;
      }
    } } }, `Connect ${p.name}`));
  if (buttons.length) box.append(el('div', { class: 'connect' }, buttons), msg);
}

async function loadDevices(id, box, signal) {
  try {
    const res = await search(`DeviceAssociation?patient=${encodeURIComponent(id)}&_include=DeviceAssociation:device&_count=100`, 5, signal);
    if (signal.aborted) return;
    const all = res.resources;
    const devs = new Map(all.filter((r) => r.resourceType === 'Device').map((d) => [d.id, d]));
    const assocs = all.filter((r) => r.resourceType === 'DeviceAssociation');
    box.lastChild.remove();
    if (!assocs.length) { box.append(el('p', { class: 'empty' }, 'No devices are connected.')); return; }
    const rows = assocs.map((a) => {
      const d = devs.get(((a.device || {}).reference || '').replace(/^Device\//, '')) || {};
      const batt = (d.property || []).find((pr) => hasCode(pr.type, MDC, '67996'));
      const battery = batt ? (batt.valueQuantity ? `${fmtNum(batt.valueQuantity.value)} %` : display(batt.valueCodeableConcept)) : '—';
      const sync = (d.extension || []).find((x) => x.url === LAST_SYNC);
      return el('tr', {}, el('th', { scope: 'row' }, d.displayName || display((d.type || d.deviceType || [])[0]) || 'Device'),
        el('td', {}, (d.manufacturer || '')), el('td', { 'data-battery': '' }, battery),
        el('td', {}, fmtTime(sync && (sync.valueInstant || sync.valueDateTime))), el('td', {}, display(a.status) || '—'));
    });
    box.append(el('div', { class: 'scroll' }, el('table', {},
      el('thead', {}, el('tr', {}, ['Device', 'Maker', 'Battery', 'Last sync', 'Status'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows))));
    if (res.truncated) box.append(cutNote(assocs.length, 'devices'));
  } catch (e) {
    if (aborted(signal, e)) return;
    box.lastChild.replaceWith(errorBox('the devices', e));
  }
}

// time is an Observation's time in ms since the epoch, or -Infinity if it has none (sorted last).
function time(o) {
  const t = Date.parse(when(o));
  return isNaN(t) ? -Infinity : t;
}

async function loadLatest(id, box, signal) {
  try {
    const res = await search(`Observation/$lastn?patient=${encodeURIComponent(id)}&max=1`, 5, signal);
    if (signal.aborted) return;
    const obs = res.resources.filter((r) => r.resourceType === 'Observation');
    // By instant, not by string: "2024-05-01T10:00:00+02:00" is before "2024-05-01T09:00:00Z".
    obs.sort((a, b) => time(b) - time(a));
    box.lastChild.remove();
    if (!obs.length) { box.append(el('p', { class: 'empty' }, 'No measurements yet.')); return; }
    box.append(el('ul', { class: 'cards' }, obs.map((o) => {
      const [v, u] = valueText(o);
      return el('li', { class: 'card' }, el('span', { class: 'card-title' }, display(o.code)),
        el('span', { class: 'card-value' }, v, el('small', {}, u ? ` ${u}` : '')), el('span', { class: 'muted' }, fmtTime(when(o))));
    })));
    if (res.truncated) box.append(cutNote(obs.length, 'kinds of measurement'));
  } catch (e) {
    if (aborted(signal, e)) return;
    box.lastChild.replaceWith(errorBox('the latest values', e));
  }
}

async function loadChart(id, c, span, fig, signal) {
  const PAGES = 20, COUNT = 500;
  try {
    // [since, now + 1 day): the upper bound keeps stray future-dated data off the chart's scale.
    const ge = new Date(span.since).toISOString(), lt = new Date(span.now + DAY * 1000).toISOString();
    const res = await search(`Observation?patient=${encodeURIComponent(id)}&code=${encodeURIComponent(c.code)}` +
      `&date=ge${encodeURIComponent(ge)}&date=lt${encodeURIComponent(lt)}&_sort=date&_count=${COUNT}`, PAGES, signal);
    if (signal.aborted) return;
    const obs = res.resources.filter((r) => r.resourceType === 'Observation');
    const pts = obs.map((o) => ({ o, t: Date.parse(when(o)) / 1000, v: c.series.map((s) => s.value(o)) }))
      .filter((p) => !isNaN(p.t) && p.v.some((v) => v !== null))
      .sort((a, b) => a.t - b.t);
    fig.lastChild.remove();
    fig.dataset.points = String(pts.length);
    fig.dataset.state = pts.length ? 'ready' : 'empty';
    if (!pts.length) { fig.append(el('p', { class: 'empty' }, `No ${c.noun} measurements in the last ${span.days} days.`)); return; }
    const plot = el('div', { class: 'plot', role: 'img', 'aria-label': `${c.title}: ${pts.length} measurements; the table below lists them.` });
    fig.append(plot);
    const data = [pts.map((p) => p.t), ...c.series.map((_, i) => pts.map((p) => p.v[i]))];
    const opts = {
      width: plotWidth(fig), height: 220,
      // The whole range, not just the span of the data: 30, 90 and 365 days look different.
      scales: { x: { time: true, range: [span.since / 1000, span.now / 1000] } },
      axes: [{ stroke: '#333' }, { stroke: '#333', label: c.unit, size: 60 }],
      series: [{}, ...c.series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, spanGaps: true,
        points: { show: true, size: 5, fill: s.color },
        ...(c.bars ? { fill: s.color + '55', paths: uPlot.paths.bars({ size: [0.6, 40] }) } : {}),
      }))],
      legend: { show: c.series.length > 1 },
    };
    charts.push(new uPlot(opts, data, plot));
    if (res.truncated) fig.append(cutNote(obs.length, `${c.noun} measurements of the range (the earliest)`));
    fig.append(dataTable(c, pts.map((p) => p.o), span.days));
  } catch (e) {
    if (aborted(signal, e)) return;
    fig.dataset.state = 'error';
    fig.lastChild.replaceWith(errorBox(`the ${c.noun} data`, e));
  }
}

// dataTable is a chart's text alternative: the Observations behind it.
function dataTable(c, obs, days) {
  const rows = obs.slice().reverse().map((o) => {
    const [v, u] = valueText(o);
    return el('tr', {}, el('td', {}, fmtTime(when(o))), el('td', {}, `${display(o.code)} (${codes(o.code)})`), el('td', { class: 'num' }, v), el('td', {}, u));
  });
  return el('details', { class: 'data' }, el('summary', {}, `Data table: ${obs.length} observations`),
    el('div', { class: 'scroll' }, el('table', {}, el('caption', {}, `${c.title}, last ${days} days`),
      el('thead', {}, el('tr', {}, ['Time', 'Code', 'Value', 'Unit'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows))));
}

function plotWidth(fig) { return Math.max(260, Math.min(900, (fig.clientWidth || $view.clientWidth || 320) - 16)); }
function resizeCharts() {
  for (const c of charts) c.setSize({ width: plotWidth(c.root.parentElement.parentElement), height: 220 });
}

async function loadECGs(id, box, signal) {
  try {
    const res = await search(`Observation?patient=${encodeURIComponent(id)}&code=${encodeURIComponent(`${MDC}|131328`)}&_sort=-date&_count=20`, 1, signal);
    if (signal.aborted) return;
    const obs = res.resources.filter((r) => r.resourceType === 'Observation');
    box.lastChild.remove();
    if (!obs.length) { box.append(el('p', { class: 'empty' }, 'No ECG recordings.')); return; }
    box.append(el('ul', { class: 'ecg-list' }, obs.map((o) => el('li', {},
      el('a', { href: `#/ecg/${o.id}`, 'data-ecg': o.id }, `ECG ${fmtTime(when(o))}`),
      el('span', { class: 'muted' }, ` ${rhythm(o)}`)))));
    if (res.truncated) box.append(el('p', { class: 'muted cut', 'data-truncated': obs.length }, `Showing the latest ${obs.length} ECGs; there are more.`));
  } catch (e) {
    if (aborted(signal, e)) return;
    box.lastChild.replaceWith(errorBox('the ECGs', e));
  }
}

function rhythm(o) {
  const c = (o.component || []).find((c) => hasCode(c.code, LOINC, '8601-7'));
  return c ? display(c.valueCodeableConcept) : '';
}

// --- ECG viewer ---

// The paper-ECG scale: 25 mm/s and 10 mm/mV on a 1 mm grid with 5 mm major lines
// (IEC 60601-2-25). PX_MM fixes how many CSS pixels a millimetre is. At most MAX_S seconds are
// drawn: 60 s is 6000 CSS pixels (12000 device pixels at 2×), under every browser's canvas limits.
const MM_PER_S = 25, MM_PER_MV = 10, PX_MM = 4, MAX_S = 60, MAX_MV = 10;

// Factors to millivolts and to milliseconds for the units SampledData uses here (UCUM codes).
const TO_MV = { uV: 1 / 1000, 'µV': 1 / 1000, mV: 1, V: 1000 };
const TO_MS = { ms: 1, s: 1000, us: 1 / 1000, 'µs': 1 / 1000 };
const SAMPLE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

// parseECG reads a SampledData (https://hl7.org/fhir/R5/datatypes.html#SampledData, or R4's
// period): value = origin + factor × data[i], in origin's unit. data is whitespace-separated
// decimals or the markers E (error), L and U (below/above the detection limit); a marker (or any
// other token) is NaN, a gap in the trace. With dimensions > 1 the samples interleave the channels
// and only the first is kept. It returns { mv, tokens, channels, intervalMS } or { error }.
function parseECG(sd) {
  const tokens = String(sd.data || '').trim().split(/\s+/).filter(Boolean);
  const channels = Number.isInteger(sd.dimensions) && sd.dimensions > 0 ? sd.dimensions : 1;
  let intervalMS;
  if (typeof sd.interval === 'number') {
    const f = TO_MS[sd.intervalUnit || 'ms'];
    if (f === undefined) return { error: `The waveform's sampling interval unit (${String(sd.intervalUnit).slice(0, 20)}) is not one this viewer knows.`, tokens };
    intervalMS = sd.interval * f;
  } else if (typeof sd.period === 'number') {
    intervalMS = sd.period; // R4: milliseconds
  }
  if (!(intervalMS > 0) || !isFinite(intervalMS)) return { error: 'The waveform has no valid sampling interval.', tokens };
  const o = sd.origin || {};
  const unit = o.code || o.unit;
  const toMV = TO_MV[unit];
  if (toMV === undefined) return { error: `The waveform's unit (${String(unit || 'none').slice(0, 20)}) is not one this viewer can draw in millivolts.`, tokens };
  const origin = typeof o.value === 'number' ? o.value : 0;
  const factor = typeof sd.factor === 'number' ? sd.factor : 1;
  const n = Math.ceil(tokens.length / channels);
  const mv = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = tokens[i * channels];
    mv[i] = t !== undefined && SAMPLE.test(t) ? (origin + factor * Number(t)) * toMV : NaN;
  }
  return { mv, tokens, channels, intervalMS };
}

async function ecgPage(id) {
  const signal = pageAbort.signal;
  $view.replaceChildren(loading('the ECG'));
  busy($view, true);
  focusMain('ECG');
  let o;
  try {
    o = await client.request({ url: `Observation/${id}`, signal });
  } catch (e) {
    if (aborted(signal, e)) return;
    busy($view, false);
    $view.replaceChildren(el('h1', {}, 'ECG'), errorBox('this ECG', e));
    return;
  }
  if (signal.aborted) return;
  busy($view, false);
  const patient = ((o.subject || {}).reference || '').replace(/^Patient\//, '');
  const back = el('a', { href: `#/patient/${patient}` }, '← Back to the patient');
  const wave = (o.component || []).find((c) => c.valueSampledData);
  if (!wave) { $view.replaceChildren(back, el('p', { class: 'empty' }, 'This ECG has no waveform.')); return; }
  const w = parseECG(wave.valueSampledData);
  const title = el('h1', {}, `ECG ${fmtTime(when(o))}`);
  if (w.error) {
    $view.replaceChildren(back, title, el('div', { class: 'error', role: 'alert', 'data-status': 'waveform' }, el('p', {}, w.error)));
    return;
  }
  const n = w.mv.length;
  const seconds = (n * w.intervalMS) / 1000;
  const drawn = Math.min(n, Math.floor((MAX_S * 1000) / w.intervalMS));
  const hr = (o.component || []).find((c) => hasCode(c.code, LOINC, '8867-4'));
  const notes = [];
  if (w.channels > 1) notes.push(`The recording has ${w.channels} channels; only the first is drawn.`);
  if (drawn < n) notes.push(`Only the first ${MAX_S} s of ${seconds.toFixed(1)} s are drawn.`);
  if (w.mv.subarray(0, drawn).some((v) => Math.abs(v) > MAX_MV)) notes.push(`Samples beyond ±${MAX_MV} mV are clipped.`);
  const canvas = el('canvas', { id: 'ecg-canvas', 'data-samples': w.tokens.length, 'data-drawn': drawn, role: 'img',
    'aria-label': `ECG waveform, lead I: ${seconds.toFixed(1)} s, ${n} samples at 25 mm/s and 10 mm/mV${drawn < n ? `; the first ${MAX_S} s are drawn` : ''}` });
  $view.replaceChildren(back, title,
    el('p', {}, [rhythm(o), hr && `heart rate ${fmtNum(qty(hr.valueQuantity))} /min`,
      `${seconds.toFixed(1)} s`, `${n} samples`, '25 mm/s, 10 mm/mV'].filter(Boolean).join(' · ')),
    notes.length ? el('p', { class: 'muted', id: 'ecg-note' }, notes.join(' ')) : '',
    el('div', { class: 'ecg-scroll', tabindex: '0', role: 'region', 'aria-label': 'ECG strip, scroll sideways' }, canvas));
  if (!n) { canvas.replaceWith(el('p', { class: 'empty' }, 'The waveform is empty.')); return; }
  drawECG(canvas, w.mv.subarray(0, drawn), w.intervalMS);
}

function drawECG(canvas, mv, intervalMS) {
  // A loop, not Math.min(...mv): spreading a long recording overflows the call stack.
  let min = Infinity, max = -Infinity;
  for (const v of mv) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min > max) { min = 0; max = 0; } // every sample is NaN
  // ±1.5 mV at least; ±MAX_MV at most, so a wild sample cannot make the canvas too tall (the
  // trace is clipped there instead).
  const lo = Math.max(-MAX_MV, Math.min(-1.5, Math.floor(min * 2) / 2)), hi = Math.min(MAX_MV, Math.max(1.5, Math.ceil(max * 2) / 2));
  const wMM = Math.ceil((mv.length * intervalMS / 1000) * MM_PER_S), hMM = Math.ceil((hi - lo) * MM_PER_MV);
  const dpr = Math.min(window.devicePixelRatio || 1, 2);
  canvas.style.width = `${wMM * PX_MM}px`;
  canvas.style.height = `${hMM * PX_MM}px`;
  canvas.width = Math.round(wMM * PX_MM * dpr);
  canvas.height = Math.round(hMM * PX_MM * dpr);
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.fillStyle = '#fff';
  g.fillRect(0, 0, wMM * PX_MM, hMM * PX_MM);
  for (let i = 0; i <= Math.max(wMM, hMM); i++) {
    g.strokeStyle = i % 5 === 0 ? '#e0a0a0' : '#f6dcdc';
    g.lineWidth = i % 5 === 0 ? 1 : 0.5;
    g.beginPath();
    if (i <= wMM) { g.moveTo(i * PX_MM + 0.5, 0); g.lineTo(i * PX_MM + 0.5, hMM * PX_MM); }
    if (i <= hMM) { g.moveTo(0, i * PX_MM + 0.5); g.lineTo(wMM * PX_MM, i * PX_MM + 0.5); }
    g.stroke();
  }
  const x = (i) => (i * intervalMS / 1000) * MM_PER_S * PX_MM;
  const y = (v) => (hi - v) * MM_PER_MV * PX_MM;
  g.strokeStyle = '#111';
  g.lineWidth = 1.2;
  g.beginPath();
  let pen = false; // a NaN sample lifts the pen: the trace breaks there
  for (let i = 0; i < mv.length; i++) {
    const v = mv[i];
    if (isNaN(v)) { pen = false; continue; }
    if (pen) g.lineTo(x(i), y(v));
    else { g.moveTo(x(i), y(v)); pen = true; }
  }
  g.stroke();
}

start();
