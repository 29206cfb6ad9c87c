// The guided start `ohx demo` prints works when pasted: its token, search, new-link and push
// commands run in bash, as a newcomer would paste them, and answer what the guide promises.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { manifest } from '../lib/demo.mjs';

/** The guide's commands: indented lines from `TOKEN=` or `curl` on, with their continuations. */
function commands(guide) {
  const out = [];
  const lines = guide.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    if (!l.startsWith('TOKEN=') && !l.startsWith('curl ')) continue;
    let cmd = l;
    while (cmd.endsWith('\\') && i + 1 < lines.length) cmd = `${cmd.slice(0, -1)} ${lines[++i].trim()}`;
    out.push(cmd);
  }
  return out;
}

test('every command of the guided start works when pasted into bash', () => {
  const guide = readFileSync(process.env.OHX_DEMO_LOG, 'utf8');
  const cmds = commands(guide);
  assert.ok(cmds.length >= 5, `commands in the guide: ${cmds.join('\n')}`);
  assert.ok(cmds[0].startsWith('TOKEN=$('), 'the first command gets the token');
  for (const cmd of cmds.slice(1)) {
    const out = execFileSync('bash', ['-euo', 'pipefail', '-c', `${cmds[0]}\n${cmd}`], { encoding: 'utf8' });
    const body = JSON.parse(out);
    if (cmd.includes('/Observation?')) {
      assert.equal(body.resourceType, 'Bundle', cmd);
      assert.ok(body.entry.length > 0, `${cmd}: Observations`);
      assert.ok(body.entry.every((e) => e.resource.resourceType === 'Observation'));
    } else if (cmd.includes('/connect/links')) {
      assert.ok(body.url.startsWith(`${new URL(manifest.fhir_base).origin}/connect/withings?link=`), out);
    } else if (cmd.includes(manifest.push_url)) {
      assert.ok(body.notifications > 0, out);
    } else {
      assert.fail(`a command the suite does not know: ${cmd}`);
    }
  }
});
