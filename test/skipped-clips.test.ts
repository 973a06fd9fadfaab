// Skipped and refused clips are part of the record: unreadable audio in a run is listed (file, reason) in log.jsonl,
// metrics.json, the HTML report and `ser eval --json`; a validation or test split losing more than
// --max-skipped-fraction of its clips stops the run with an error naming the option; eval with no usable clip fails.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseLog } from '../src/report/log.js';
import { TINY_LABELS, makeToneData, tinyConfig } from './tiny-run.js';

const root = process.cwd();
const cli = path.join(root, 'build/cli.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-skipped-'));
const LABELS = TINY_LABELS;

const TINY = tinyConfig();

function makeData(name: string, perLabel: number, broken: (label: string, i: number) => boolean = () => false): string {
  return makeToneData(path.join(tmp, name), perLabel, broken);
}

const model = path.join(tmp, 'init');
fs.mkdirSync(model, { recursive: true });
fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(TINY));
const data = '<data>';
const common = ['--model', model, '--data', data, '--epochs', '1', '--batch-size', '4', '--grad-accum', '1', '--warmup-steps', '1', '--test-fraction', '0.2', '--val-fraction', '0.2', '--seed', '3', '--quiet'];
// SER_NICE=0: the CLI lowers its priority on CPU adapters, which starves these short runs on a loaded machine
const ENV = { ...process.env, SER_NICE: '0' };

function evalModel(dir: string, dataDir: string) {
  return spawnSync(process.execPath, [cli, 'eval', '--model', dir, '--data', dataDir, '--json'], { encoding: 'utf8', timeout: 120000, env: ENV });
}

test('skipped clips are recorded (log, metrics, report, eval --json); a split losing too many stops the run; eval with none fails', () => {
  // 2 of the 5 clips per label are not audio: the test and validation splits lose far more than 10%
  const broken = (_: string, i: number) => i % 5 < 2;
  const bad = makeData('bad', 5, broken);
  const nBroken = LABELS.length * [0, 1, 2, 3, 4].filter((i) => broken('', i)).length;
  const out = path.join(tmp, 'skipped');
  const stop = spawnSync(process.execPath, [cli, 'train', ...common.map((a) => (a === data ? bad : a)), '--out', out], { encoding: 'utf8', timeout: 300000, env: ENV });
  assert.is.not(stop.status, 0);
  assert.match(stop.stderr, /(validation|test) split: \d+ of \d+ clips .* could not be used.*--max-skipped-fraction/);
  const ok = spawnSync(process.execPath, [cli, 'train', ...common.map((a) => (a === data ? bad : a)), '--out', out, '--max-skipped-fraction', '1'], { encoding: 'utf8', timeout: 300000, env: ENV });
  assert.is(ok.status, 0, ok.stderr.slice(-2000));
  const skippedLines = parseLog(fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8')).other.filter((o) => o.event === 'skipped');
  const logged = skippedLines.reduce((n, o) => n + Number(o.count), 0);
  assert.is(logged, nBroken, 'every broken file is in the log');
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
  const inMetrics = Object.values(metrics.skipped as Record<string, { count: number; clips: { file: string; reason: string }[] }>);
  assert.is(inMetrics.reduce((n, s) => n + s.count, 0), nBroken);
  for (const s of inMetrics) for (const c of s.clips) assert.ok(c.file.endsWith('.wav') && c.reason.length > 0);
  const report = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.match(report, /Skipped clips/);
  assert.match(report, /S0_high_0\.wav/);
  const ev = evalModel(path.join(out, 'model'), bad);
  assert.is(ev.status, 0, ev.stderr);
  const j = JSON.parse(ev.stdout);
  assert.is(j.skipped.length, nBroken);
  assert.is(j.clips, 15);
  assert.is(j.evaluated, 15 - nBroken);
  const none = makeData('none', 1, () => true);
  const empty = evalModel(path.join(out, 'model'), none);
  assert.is.not(empty.status, 0);
  assert.match(empty.stderr, /none of the 3 clip\(s\) could be used/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
