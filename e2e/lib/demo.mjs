// What the e2e suites share: the running demo's manifest, Backend Services tokens from its token
// endpoint (through `ohx token`, which signs the client assertion), a fhir-kit-client for the
// EHR's view, a browser-like fetch with cookies, and the LOINC codes the suites expect per data
// kind (https://loinc.org; the mapping is documented in the README's "What it serves").
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Client } from 'fhir-kit-client';

export const manifest = JSON.parse(readFileSync(process.env.OHX_DEMO_MANIFEST, 'utf8'));
export const base = manifest.fhir_base;
export const origin = new URL(base).origin;

/** A fresh Backend Services access token of the demo client (they last 5 minutes). */
export function backendToken() {
  const [cmd, ...args] = manifest.token_command;
  return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
}

/** A fhir-kit-client as an EHR uses it: every call carries the bearer token. */
export function ehr() {
  return new Client({ baseUrl: base, bearerToken: backendToken() });
}

/** Every entry of a search, following link[relation=next] to the end with nextPage. */
export async function searchAll(client, resourceType, searchParams) {
  let page = await client.search({ resourceType, searchParams });
  const pages = [page];
  const entries = [...(page.entry ?? [])];
  while (page.link?.some((l) => l.relation === 'next')) {
    page = await client.nextPage({ bundle: page });
    pages.push(page);
    entries.push(...(page.entry ?? []));
  }
  return { entries, pages };
}

/** The data kinds the suites check, with the LOINC code and UCUM unit ohx maps each to. */
export const kinds = {
  weight: { code: 'http://loinc.org|29463-7', unit: 'kg' },
  steps: { code: 'http://loinc.org|41950-7', unit: '/d' },
  'blood-pressure': { code: 'http://loinc.org|85354-9' },
  sleep: { code: 'http://loinc.org|93832-4', unit: 'min' },
  'resting-heart-rate': { code: 'http://loinc.org|40443-4', unit: '/min' },
};

/** The connected patients of a provider. */
export function patientsOf(provider) {
  return manifest.patients.filter((p) => p.provider === provider);
}

/** A minimal browser: keeps cookies per origin, never follows redirects by itself. */
export class Browser {
  constructor() { this.jars = new Map(); }
  async fetch(url, init = {}) {
    const u = new URL(url);
    const jar = this.jars.get(u.host) ?? new Map();
    const headers = new Headers(init.headers ?? {});
    if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(u, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const expired = attrs.some((a) => /^\s*max-age=(0|-)/i.test(a));
      if (expired) jar.delete(name); else jar.set(name, pair.slice(i + 1).trim());
    }
    this.jars.set(u.host, jar);
    return res;
  }
  /** A redirect's absolute target. */
  static location(res, from) {
    const l = res.headers.get('location');
    return l && new URL(l, from).href;
  }
}

/** The value of a hidden form field in an HTML page. */
export function field(html, name) {
  const m = html.match(new RegExp(`name="${name}"[^>]*value="([^"]*)"`));
  return m && m[1].replaceAll('&amp;', '&').replaceAll('&#34;', '"').replaceAll('&#39;', "'");
}

/** A form's action attribute, resolved against the page's URL ("" → the page itself). */
export function formAction(html, pageURL) {
  const m = html.match(/<form[^>]*\baction="([^"]*)"/i);
  return new URL(m && m[1] ? m[1].replaceAll('&amp;', '&') : pageURL, pageURL).href;
}

/** Polls fn until it returns a truthy value or the timeout passes. */
export async function eventually(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
