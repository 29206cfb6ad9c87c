// Starts `ohx demo` (the binary `make build` writes to bin/ohx, or OHX_BIN) on a free port with
// a fixed seed and no timed pushes, waits for its manifest (renamed into place once the demo is
// ready), runs the suites under tests/ one
// file after another with node's test runner, and stops the demo. The demo's output goes to
// e2e/demo.log for the post-mortem of a failure.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const ohx = process.env.OHX_BIN ?? join(here, '..', 'bin', 'ohx');
if (!existsSync(ohx)) {
  console.error(`no ohx binary at ${ohx}: run \`make build\` first (or set OHX_BIN)`);
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'ohx-e2e-'));
const manifest = join(tmp, 'demo.json');
const log = createWriteStream(join(here, 'demo.log'));
const demo = spawn(ohx, ['demo', '-addr', '127.0.0.1:0', '-seed', '42', '-days', '60', '-push-every', '0', '-manifest', manifest,
  '-data-dir', join(tmp, 'data')], { stdio: ['ignore', 'pipe', 'pipe'] });
demo.stdout.pipe(log);
demo.stderr.pipe(log);
let exited = null;
demo.on('exit', (code, signal) => { exited = { code, signal }; });

const stop = async () => {
  if (exited) return;
  demo.kill('SIGTERM');
  for (let i = 0; i < 100 && !exited; i++) await new Promise((r) => setTimeout(r, 100));
  if (!exited) demo.kill('SIGKILL');
};
process.on('SIGINT', () => stop().then(() => process.exit(130)));

let code = 1;
try {
  const deadline = Date.now() + 240_000;
  while (!existsSync(manifest)) {
    if (exited) throw new Error(`ohx demo exited (${JSON.stringify(exited)}) before it was ready: see e2e/demo.log`);
    if (Date.now() > deadline) throw new Error('ohx demo was not ready within 4 minutes: see e2e/demo.log');
    await new Promise((r) => setTimeout(r, 250));
  }
  code = await new Promise((resolve) => {
    const t = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', 'tests/'], {
      cwd: here, stdio: 'inherit', env: { ...process.env, OHX_DEMO_MANIFEST: manifest, OHX_BIN: ohx, OHX_DEMO_LOG: join(here, 'demo.log') },
    });
    t.on('exit', (c) => resolve(c ?? 1));
  });
} catch (err) {
  console.error(err.message);
} finally {
  await stop();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
