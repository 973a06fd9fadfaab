// Crash safety of `ser train`: one run is SIGKILLed again and again at chosen points (inside streamed file data,
// right after a rename, with a model folder's files complete but not swapped in, between the swap's two renames) via
// the SER_CRASH_AT fault hook, each time resumed with --resume. After every kill `ser eval` must work on the model
// folder; at the end the weights (checkpoint and model/model.safetensors) must be byte-identical to an uninterrupted
// run, log.jsonl must hold each step once with the same losses, and no temporary may be left. Also: stale
// temporaries, log truncation on resume, and a read-only output folder or full disk as one named error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseLog } from '../src/report/log.js';
import { JsonlLog, removeStaleTemporaries, saveModelDir, writeFileAtomic } from '../src/node/modeldir.js';
import { makeToneData, tinyConfig } from './tiny-run.js';

const root = process.cwd();
const cli = path.join(root, 'build/cli.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-kill-'));

// the demo's layout at the smallest size (as test/train.test.ts)
const TINY = tinyConfig({ hidden_dropout: 0.1, final_dropout: 0.1, mask_time_prob: 0.05, mask_time_length: 2 });

function makeData(name: string, perLabel: number, broken: (label: string, i: number) => boolean = () => false): string {
  return makeToneData(path.join(tmp, name), perLabel, broken);
}

const model = path.join(tmp, 'init');
fs.mkdirSync(model, { recursive: true });
fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(TINY));
const data = makeData('data', 6);
const common = ['--model', model, '--data', data, '--epochs', '1', '--batch-size', '2', '--grad-accum', '1', '--lr', '3e-3', '--warmup-steps', '2', '--train-feature-encoder', '--eval-steps', '2', '--test-fraction', '0.2', '--val-fraction', '0.2', '--seed', '3', '--metric', 'accuracy', '--quiet'];

// SER_NICE=0: the CLI lowers its priority on CPU adapters, which starves these short runs on a loaded machine
const ENV = { ...process.env, SER_NICE: '0' };

function train(out: string, extra: string[] = [], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [cli, 'train', ...common, '--out', out, ...extra], { encoding: 'utf8', timeout: 300000, env: { ...ENV, ...env } });
}

function evalModel(dir: string, dataDir = data) {
  return spawnSync(process.execPath, [cli, 'eval', '--model', dir, '--data', dataDir, '--json'], { encoding: 'utf8', timeout: 120000, env: ENV });
}

function debris(dir: string): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) found.push(path.join(dir, e.name));
    if (e.isDirectory()) found.push(...debris(path.join(dir, e.name)));
  }
  return found;
}

function trainLines(out: string): { step: number; loss: number }[] {
  return parseLog(fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8')).train.map((p) => ({ step: p.step, loss: p.loss }));
}

test('killed at many points (inside checkpoint and model writes) and resumed: identical weights, no debris, eval works throughout', async () => {
  const full = path.join(tmp, 'full');
  const r0 = train(full);
  assert.is(r0.status, 0, `uninterrupted run failed:\n${r0.stderr.slice(-3000)}`);
  assert.ok(/new best validation/.test(r0.stderr), 'the run saved a best model');

  const out = path.join(tmp, 'killed');
  // Each point is hit by a fresh process resuming what the previous kill left. The first best model is saved at step
  // 2, before the first checkpoint: killed inside its data, then with its files complete but not swapped in; then
  // inside the first checkpoint's data (model/ written: the restart saves it again, over the existing folder), then
  // between that swap's two renames; then after a checkpoint's rename, and inside a later checkpoint's data.
  const points = ['file-data@model.safetensors:2', 'model-files:1', 'file-data@checkpoint.safetensors:3', 'model-swap:1', 'file-renamed@checkpoint.safetensors:2', 'file-data@checkpoint.safetensors:4'];
  let kills = 0;
  for (const point of points) {
    const r = train(out, ['--resume'], { SER_CRASH_AT: point });
    assert.is(r.signal, 'SIGKILL', `${point}: expected a kill, got status ${r.status}:\n${r.stderr.slice(-2000)}`);
    kills++;
    const modelDir = path.join(out, 'model');
    const replaced = fs.existsSync(out) && fs.readdirSync(out).some((n) => n.startsWith('.model.replaced-'));
    if (fs.existsSync(modelDir) || replaced) {
      const e = evalModel(modelDir);
      assert.is(e.status, 0, `${point}: ser eval on the model folder left by the kill failed:\n${e.stderr.slice(-2000)}`);
      assert.ok(JSON.parse(e.stdout).evaluated > 0);
    }
  }
  assert.is(kills, points.length, `only ${kills} of ${points.length} kill points were reached`);
  const last = train(out, ['--resume']);
  assert.is(last.status, 0, `final resume failed:\n${last.stderr.slice(-3000)}`);

  assert.equal(debris(out), [], 'temporaries left behind');
  for (const f of ['checkpoint.safetensors', 'model/model.safetensors', 'model/config.json', 'model/preprocessor_config.json']) {
    assert.ok(Buffer.compare(fs.readFileSync(path.join(full, f)), fs.readFileSync(path.join(out, f))) === 0, `${f} differs from the uninterrupted run's`);
  }
  const a = trainLines(full);
  const b = trainLines(out);
  assert.equal(b.map((p) => p.step), a.map((p) => p.step), 'each step logged once, in order');
  assert.equal(b, a, 'same losses as the uninterrupted run');
  const evals = (dir: string) => parseLog(fs.readFileSync(path.join(dir, 'log.jsonl'), 'utf8')).evals.map((e) => `${e.split}@${e.step}:${e.wa}`);
  assert.equal(evals(out), evals(full), 'validation/test lines once each');
  const e = evalModel(path.join(out, 'model'));
  assert.is(e.status, 0);
});

test('stale temporaries are removed on start; an interrupted model swap is restored; log truncated to the checkpoint step', async () => {
  const dir = path.join(tmp, 'stale');
  fs.mkdirSync(dir, { recursive: true });
  const dead = 2 ** 22 + 17; // above the usual pid_max: no such process
  fs.writeFileSync(path.join(dir, `.checkpoint.safetensors.${dead}.abc123.tmp`), 'partial');
  fs.mkdirSync(path.join(dir, `.model.saving-${dead}-xyz`));
  fs.mkdirSync(path.join(dir, `.model.replaced-${dead}-xyz`));
  fs.writeFileSync(path.join(dir, `.model.replaced-${dead}-xyz`, 'config.json'), '{}');
  fs.writeFileSync(path.join(dir, '.keep-me'), 'not ours');
  const done = await removeStaleTemporaries(dir);
  assert.is(done.length, 3, done.join('\n'));
  assert.equal(fs.readdirSync(dir).sort(), ['.keep-me', 'model']);
  assert.is(fs.readFileSync(path.join(dir, 'model', 'config.json'), 'utf8'), '{}', 'the old model folder is back');

  await saveModelDir(path.join(dir, 'model'), { config: { model_type: 'wav2vec2' }, tensors: [{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }] });
  assert.equal(fs.readdirSync(path.join(dir, 'model')).sort(), ['config.json', 'model.safetensors'], 'replaced as a whole (no file of the old folder survives)');
  assert.equal(fs.readdirSync(dir).sort(), ['.keep-me', 'model']);

  const log = new JsonlLog(path.join(dir, 'log.jsonl'));
  log.append({ event: 'start' });
  for (let s = 1; s <= 5; s++) log.append({ type: 'train', step: s, loss: s });
  log.append({ type: 'eval', split: 'valid', step: 4, wa: 0.5 });
  log.append({ type: 'eval', split: 'test', step: 5, wa: 0.5 });
  fs.appendFileSync(path.join(dir, 'log.jsonl'), '{"type":"train","st'); // torn by a kill
  assert.is(await log.truncateToStep(3), 5);
  const kept = fs.readFileSync(path.join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(kept, [{ event: 'start' }, { type: 'train', step: 1, loss: 1 }, { type: 'train', step: 2, loss: 2 }, { type: 'train', step: 3, loss: 3 }]);
});

test('a read-only output folder is one error naming the path; nothing already there is lost', async () => {
  if (process.getuid?.() === 0) {
    // root ignores permission bits: simulate with a folder whose parent is a file (ENOTDIR), also a named error
    const file = path.join(tmp, 'plainfile');
    fs.writeFileSync(file, 'x');
    const r = train(path.join(file, 'out'));
    assert.is.not(r.status, 0);
    assert.match(r.stderr, new RegExp(`cannot write .*${path.basename(file)}.*\\(ENOTDIR\\)`));
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  } else {
    const ro = path.join(tmp, 'ro');
    fs.mkdirSync(ro);
    fs.chmodSync(ro, 0o555);
    const r = train(path.join(ro, 'out'));
    assert.is.not(r.status, 0);
    assert.match(r.stderr, /cannot write .*ro.*(EACCES|EROFS)/);
    fs.chmodSync(ro, 0o755);
  }
  // a failing write keeps the previous content and leaves no temporary
  const dir = path.join(tmp, 'keep');
  fs.mkdirSync(dir);
  const target = path.join(dir, 'metrics.json');
  await writeFileAtomic(target, 'old');
  const failing = (async function* () {
    yield new TextEncoder().encode('new-partial');
    throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  })();
  await writeFileAtomic(target, failing).then(
    () => assert.unreachable('the write should fail'),
    (e: Error) => assert.match(e.message, /cannot write .*metrics\.json: the disk is full \(ENOSPC\)/),
  );
  assert.is(fs.readFileSync(target, 'utf8'), 'old');
  assert.equal(fs.readdirSync(dir), ['metrics.json']);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
