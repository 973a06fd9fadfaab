// README.md's benchmark table is the one bench/lib/readme-table.ts makes from the committed bench/results.json (a
// full `npm run bench` rewrites both), so the README never shows figures of another run than RESULTS.md.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withReadmeTable, readmeTable, inReadme, TABLE_START, type BenchResults } from '../bench/lib/readme-table.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('README benchmark table = the table generated from bench/results.json', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const results = JSON.parse(fs.readFileSync(path.join(root, 'bench/results.json'), 'utf8')) as BenchResults;
  assert.ok(results.rows.length > 50, `results.json rows: ${results.rows.length}`);
  const expected = withReadmeTable(readme, results);
  if (expected !== readme) {
    const have = readme.split('\n');
    const want = expected.split('\n');
    const at = want.findIndex((l, i) => l !== have[i]);
    assert.unreachable(`README.md line ${at + 1} differs from the generated table (run a full npm run bench, or restore README.md):\n  have: ${have[at]}\n  want: ${want[at]}`);
  }
});

test('readme table: headline rows in, fidelity and profile-share rows out; one line per kept row', () => {
  const row = (name: string, extra: object = {}) => ({ name, unit: 'x', ours: 1.23456, ...extra });
  const results: BenchResults = {
    adapter: { vendor: 'v', architecture: 'a', description: 'd' },
    date: '2026-12-03T00:00:00.000Z',
    command: 'npm run bench',
    rows: [
      row('gemm 1024x1024x1024', { peak_fraction: 0.354 }),
      row('fidelity w2v_base (f32): worst gradient'),
      row('XLSR-large forward, 4 s (batch 1): share of GPU time in feature encoder'),
      row('q/k/v block forward packed B=1 T=199'),
      row('q/k/v block forward packed+concat B=4 T=199'),
      row('matmul vs peer', { peer: 'P', peer_value: 200, speedup: 0.5 }),
    ],
  };
  assert.equal(results.rows.filter(inReadme).map((r) => r.name), ['gemm 1024x1024x1024', 'q/k/v block forward packed+concat B=4 T=199', 'matmul vs peer']);
  const lines = readmeTable(results);
  assert.match(lines[0], /on v \/ a \/ d, 2026-12-03/);
  assert.ok(lines.includes('| gemm 1024x1024x1024 | x | 1.23 |  |  |  | 35.4 |'), lines.join('\n'));
  assert.ok(lines.includes('| matmul vs peer | x | 1.23 | P | 200 | 0.500 |  |'), lines.join('\n'));
  assert.throws(() => withReadmeTable('no markers here', results), /markers/);
  const doc = `intro\n${TABLE_START}\nold\n<!-- bench-table:end -->\nafter\n`;
  const once = withReadmeTable(doc, results);
  assert.ok(once.startsWith('intro\n') && once.endsWith('<!-- bench-table:end -->\nafter\n') && !once.includes('\nold\n'));
  assert.is(withReadmeTable(once, results), once, 'idempotent');
});

test.run();
