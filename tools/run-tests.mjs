#!/usr/bin/env node
// Runs each bundled test file (build/test/*.test.mjs) with uvu in its own Node process (a crash in a GPU driver
// takes down one file, not the run) and prints one closing line: "N passed, N failed".
//   node tools/run-tests.mjs [substring ...]   only files whose name contains one of the substrings
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'build/test');
const filters = process.argv.slice(2);
const FILE_TIMEOUT_MS = Number(process.env.SER_TEST_FILE_TIMEOUT_S ?? 600) * 1000;
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.mjs')).filter((f) => !filters.length || filters.some((s) => f.includes(s))).sort();
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
const t0 = Date.now();
for (const f of files) {
  const t = Date.now();
  const runOnce = () => spawnSync(process.execPath, ['--enable-source-maps', path.join(dir, f)], { cwd: root, encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, maxBuffer: 64 << 20, timeout: FILE_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] });
  let r = runOnce();
  let note = '';
  if (r.error && r.error.code === 'ETIMEDOUT') {
    // A test process that sits idle past the limit is killed and run once more; the log says so. (Seen rarely, with
    // the wasm audio decoders under heavy CPU load: an await that never resumed.)
    note = ` [timed out after ${FILE_TIMEOUT_MS / 1000}s and was run again]`;
    console.log(`WARN ${f} timed out after ${FILE_TIMEOUT_MS / 1000}s; output so far:\n${((r.stdout || '') + (r.stderr || '')).split('\n').slice(-15).map((l) => `    ${l}`).join('\n')}`);
    r = runOnce();
  }
  const out = (r.stdout || '') + (r.stderr || '') + note;
  const num = (re) => { const m = out.match(re); return m ? Number(m[1]) : 0; };
  const total = num(/Total:\s+(\d+)/);
  const ok = num(/Passed:\s+(\d+)/);
  const skip = num(/Skipped:\s+(\d+)/);
  let bad = Math.max(0, total - ok - skip);
  if (r.status !== 0 && bad === 0) bad = 1; // crashed or threw outside a test
  passed += ok;
  skipped += skip;
  failed += bad;
  const secs = ((Date.now() - t) / 1000).toFixed(1);
  console.log(`${bad ? 'FAIL' : 'ok  '} ${f}  (${ok} passed${bad ? `, ${bad} failed` : ''}${skip ? `, ${skip} skipped` : ''}, ${secs}s)${note}`);
  if (bad) {
    failures.push(f);
    console.log(out.split('\n').map((l) => `    ${l}`).join('\n'));
  }
}
console.log(`\ntest files: ${files.length}, time ${((Date.now() - t0) / 1000).toFixed(1)}s${failures.length ? `, failing: ${failures.join(', ')}` : ''}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed || files.length === 0 ? 1 : 0);
