// End-to-end training through the CLI on a synthetic task (each class is a tone band with noise): the loss falls, the
// model beats chance, outputs are a loadable Hugging Face directory, and a run killed mid-way and resumed with
// --resume ends with exactly the same weights as an uninterrupted one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { encodeWav } from '../src/audio/wav.js';
import { rng } from './helpers.js';
import { openTensorFile } from '../src/node/modeldir.js';
import { parseLog } from '../src/report/log.js';
import { loadCheckpointFile } from '../src/node/train-checkpoint.js';

const root = process.cwd();
const cli = path.join(root, 'build/cli.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-train-'));
const LABELS = ['high', 'low', 'mid'];

const TINY = {
  model_type: 'wav2vec2',
  conv_dim: [16, 16, 16, 16, 16, 16, 16],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 48,
  num_conv_pos_embeddings: 8,
  num_conv_pos_embedding_groups: 2,
  hidden_dropout: 0.1,
  final_dropout: 0.1,
  mask_time_prob: 0.05,
  mask_time_length: 2,
  id2label: { 0: 'high', 1: 'low', 2: 'mid' },
  label2id: { high: 0, low: 1, mid: 2 },
};

function makeData(): string {
  const dir = path.join(tmp, 'data');
  const r = rng(99);
  const freq: Record<string, number> = { low: 220, mid: 700, high: 2000 };
  for (const label of LABELS) {
    fs.mkdirSync(path.join(dir, label), { recursive: true });
    for (let i = 0; i < 14; i++) {
      const n = 4000 + Math.floor(r() * 4000);
      const f = freq[label] * (0.9 + 0.2 * r());
      const x = new Float32Array(n);
      for (let t = 0; t < n; t++) x[t] = 0.5 * Math.sin((2 * Math.PI * f * t) / 16000) + 0.05 * (r() - 0.5);
      fs.writeFileSync(path.join(dir, label, `S${i % 4}_${label}_${i}.wav`), encodeWav(x, 16000));
    }
  }
  const model = path.join(tmp, 'init');
  fs.mkdirSync(model, { recursive: true });
  fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(TINY));
  return dir;
}

const data = makeData();
const common = ['--model', path.join(tmp, 'init'), '--data', data, '--epochs', '3', '--batch-size', '4', '--grad-accum', '2', '--lr', '2e-3', '--warmup-steps', '3', '--train-feature-encoder', '--eval-steps', '2', '--test-fraction', '0.2', '--val-fraction', '0.15', '--seed', '7', '--quiet'];

function train(out: string, extra: string[] = []) {
  return spawnSync(process.execPath, [cli, 'train', ...common, '--out', out, ...extra], { encoding: 'utf8', timeout: 600000 });
}

async function params(file: string): Promise<Map<string, Float32Array>> {
  const src = await openTensorFile(file);
  const out = new Map<string, Float32Array>();
  for (const [name, e] of src.entries) if (name.startsWith('param/')) out.set(name, await e.read());
  await src.close();
  return out;
}

test('train: loss falls, model beats chance, Hugging Face directory written', async () => {
  const out = path.join(tmp, 'a');
  const r = train(out);
  assert.is(r.status, 0, `train failed:\n${r.stderr.slice(-3000)}`);
  assert.match(r.stderr, /has no weights: training starts from config\.json only/, 'a config-only start is announced');
  const log = parseLog(fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8'));
  assert.ok(log.train.length >= 6, `${log.train.length} training steps logged`);
  const first = log.train.slice(0, 2).reduce((a, p) => a + p.loss, 0) / 2;
  const last = log.train.slice(-2).reduce((a, p) => a + p.loss, 0) / 2;
  assert.ok(last < first, `loss did not fall: first ${first.toFixed(4)}, last ${last.toFixed(4)}`);
  for (const f of ['model/model.safetensors', 'model/config.json', 'model/preprocessor_config.json', 'report.html', 'metrics.json', 'splits.json', 'checkpoint.safetensors']) {
    assert.ok(fs.existsSync(path.join(out, f)), `${f} written`);
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'model/config.json'), 'utf8'));
  assert.equal(cfg.id2label, { 0: 'high', 1: 'low', 2: 'mid' });
  assert.ok(cfg.architectures.length > 0 && cfg.pooling_mode === 'mean');
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
  assert.ok(metrics.valid.ua >= 0.5, `validation UA ${metrics.valid.ua} (chance 0.33)`);
  // the report: gradient norm, per-class validation recall, the kept checkpoint, data per split, the command line
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  for (const want of ['Gradient norm', 'Validation recall per class', 'The model kept is the one of step', '<h2>Data</h2>', 'per_device_train_batch_size', 'peak GPU memory']) assert.ok(html.includes(want), `report shows ${want}`);
  // Hugging Face Trainer's record of the same run
  const state = JSON.parse(fs.readFileSync(path.join(out, 'trainer_state.json'), 'utf8'));
  assert.ok(state.global_step > 0 && state.log_history.some((e: { loss?: number }) => typeof e.loss === 'number'));
  assert.ok(state.log_history.some((e: { eval_ua?: number }) => typeof e.eval_ua === 'number'));
  assert.is(state.best_model_checkpoint, path.join(out, 'model'));
});

test('train: killed mid-run and resumed ends with the same weights as uninterrupted', async () => {
  const full = path.join(tmp, 'a');
  const out = path.join(tmp, 'b');
  const ck = path.join(out, 'checkpoint.safetensors');
  // start, wait for the first checkpoint, then SIGKILL (no chance to clean up)
  const child = spawn(process.execPath, [cli, 'train', ...common, '--out', out], { stdio: 'ignore' });
  const started = Date.now();
  while (!fs.existsSync(ck) && Date.now() - started < 300000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(fs.existsSync(ck), 'a checkpoint was written before the kill');
  const r = train(out, ['--resume']);
  assert.is(r.status, 0, `resume failed:\n${r.stderr.slice(-3000)}`);
  const m = r.stderr.match(/resumed from .* at optimizer step (\d+)/);
  assert.ok(m, 'resume message');
  const total = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).totalSteps;
  assert.ok(Number(m![1]) < total, `the kill came after the end (step ${m![1]} of ${total})`);
  const a = await params(path.join(full, 'checkpoint.safetensors'));
  const b = await params(ck);
  assert.is(b.size, a.size);
  for (const [name, wa] of a) {
    const wb = b.get(name)!;
    assert.ok(wb && wb.length === wa.length, name);
    let same = true;
    for (let i = 0; i < wa.length; i++) if (wa[i] !== wb[i]) { same = false; break; }
    assert.ok(same, `${name} differs between the uninterrupted and the resumed run`);
  }
});

test('train: Ctrl-C writes a resumable checkpoint and says how to resume; --resume ends as uninterrupted', async () => {
  const full = path.join(tmp, 'a');
  const out = path.join(tmp, 'sigint');
  const ck = path.join(out, 'checkpoint.safetensors');
  const logFile = path.join(out, 'log.jsonl');
  // --resume with nothing to resume says so; a Trainer-style alias given last wins (1 epoch instead of 3)
  const fresh = train(out, ['--resume', '--num-train-epochs', '1']);
  assert.is(fresh.status, 0, fresh.stderr.slice(-3000));
  assert.match(fresh.stderr, /--resume: no checkpoint at .*checkpoint\.safetensors; starting fresh/);
  assert.is(JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')).cfg.epochs, 1);
  fs.rmSync(out, { recursive: true });
  // SIGINT after the first optimizer step (before the first evaluation writes a checkpoint)
  const child = spawn(process.execPath, [cli, 'train', ...common, '--output-dir', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const started = Date.now();
  const stepped = () => fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8').includes('"type":"train"');
  while (!stepped() && Date.now() - started < 300000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  assert.not.ok(fs.existsSync(ck), 'no checkpoint before the interrupt');
  child.kill('SIGINT');
  const code = await exited;
  assert.is(code, 130, stderr.slice(-2000));
  assert.ok(fs.existsSync(ck), 'the interrupt wrote a checkpoint');
  const resumeLine = stderr.match(/resume with:\n\s+(ser train .*)/);
  assert.ok(resumeLine, `resume command printed:\n${stderr.slice(-2000)}`);
  assert.match(resumeLine![1], /--output-dir \S*sigint .*--resume$/);
  const r = train(out, ['--resume']);
  assert.is(r.status, 0, `resume failed:\n${r.stderr.slice(-3000)}`);
  assert.match(r.stderr, /resumed from .* at optimizer step [1-9]/);
  const a = await params(path.join(full, 'checkpoint.safetensors'));
  const b = await params(ck);
  assert.is(b.size, a.size);
  for (const [name, wa] of a) {
    const wb = b.get(name)!;
    assert.ok(wb && wb.length === wa.length && wa.every((x, i) => x === wb[i]), `${name} differs between the uninterrupted and the interrupted-and-resumed run`);
  }
});

test('train --save-steps: the resumable checkpoint is written between evaluations', async () => {
  const out = path.join(tmp, 'save-steps');
  const ck = path.join(out, 'checkpoint.safetensors');
  // evaluation (and so the checkpoint it writes) only at the end of each epoch of 4 optimizer steps
  const child = spawn(process.execPath, [cli, 'train', ...common, '--eval-steps', '0', '--save-steps', '1', '--out', out], { stdio: 'ignore' });
  const started = Date.now();
  while (!fs.existsSync(ck) && Date.now() - started < 300000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(fs.existsSync(ck), 'a checkpoint was written');
  const position = (await loadCheckpointFile(ck)).position;
  const run = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  const stepsPerEpoch = run.totalSteps / 3;
  assert.ok(position.step >= 1 && position.step < stepsPerEpoch, `checkpoint at step ${position.step}, an epoch has ${stepsPerEpoch} steps`);
});

test('train --fp16: mixed precision learns; an overflowing loss scale skips steps and halves until the gradients fit', async () => {
  const out = path.join(tmp, 'fp16');
  // 2^24 overflows f16 gradients (max 65504) on the first steps: each such step must be skipped and the scale halved.
  // Length-grouped batches (short padding) keep gradients small enough that most of the 12 steps are taken; with
  // random batches the scale settles lower (2^18) after more skips, leaving too few steps to see the loss fall.
  const r = train(out, ['--fp16', '--loss-scale', String(2 ** 24), '--group-by-length']);
  if (r.status !== 0 && /shader-f16/.test(r.stderr)) {
    console.log('  (adapter without shader-f16: --fp16 refused with a clear error, as it should be)');
    return;
  }
  assert.is(r.status, 0, `fp16 train failed:\n${r.stderr.slice(-3000)}`);
  const lines = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'train');
  assert.is(lines[0].loss_scale, 2 ** 24);
  assert.is(lines[0].skipped, true, 'the first step overflows in f16 and is skipped');
  let scale = 2 ** 24;
  for (const l of lines) {
    assert.is(l.loss_scale, scale, `step ${l.step} used loss scale ${l.loss_scale}, expected ${scale}`);
    if (l.skipped) assert.ok(!Number.isFinite(l.grad_norm ?? NaN), `skipped step ${l.step} had a finite norm ${l.grad_norm}`);
    else assert.ok(Number.isFinite(l.grad_norm), `step ${l.step} norm ${l.grad_norm}`);
    if (l.skipped) scale /= 2;
  }
  const taken = lines.filter((l) => !l.skipped);
  assert.ok(taken.length >= 6, `only ${taken.length} of ${lines.length} steps were taken`);
  const first = (taken[0].loss + taken[1].loss) / 2;
  const last = (taken[taken.length - 1].loss + taken[taken.length - 2].loss) / 2;
  assert.ok(last < first, `fp16 loss did not fall: first ${first.toFixed(4)}, last ${last.toFixed(4)}`);
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
  assert.ok(metrics.valid.ua >= 0.5, `fp16 validation UA ${metrics.valid.ua} (chance 0.33)`);
  for (const [name, w] of await params(path.join(out, 'checkpoint.safetensors'))) assert.ok(w.every(Number.isFinite), `${name} has non-finite weights`);
});

test('train --group-by-length --pooling masked: options reach the trainer and it learns', async () => {
  const out = path.join(tmp, 'grouped');
  const r = train(out, ['--group-by-length', '--pooling', 'masked']);
  assert.is(r.status, 0, `train failed:\n${r.stderr.slice(-3000)}`);
  const run = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.is(run.cfg.groupByLength, true);
  assert.is(run.cfg.pooling, 'masked');
  const plain = JSON.parse(fs.readFileSync(path.join(tmp, 'a', 'run.json'), 'utf8'));
  assert.is(plain.cfg.groupByLength, false, 'random batches are the default');
  const log = parseLog(fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8'));
  const a = parseLog(fs.readFileSync(path.join(tmp, 'a', 'log.jsonl'), 'utf8'));
  assert.not.equal(log.train.map((p) => p.loss), a.train.map((p) => p.loss), 'another batch order and pooling give other losses');
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
  assert.ok(metrics.valid.ua >= 0.5, `validation UA ${metrics.valid.ua} (chance 0.33)`);
});

test('train: bad options are refused with the option named', () => {
  const p = spawnSync(process.execPath, [cli, 'train', '--model', path.join(tmp, 'init'), '--data', data, '--out', path.join(tmp, 'c'), '--pooling', 'max'], { encoding: 'utf8' });
  assert.is.not(p.status, 0);
  assert.match(p.stderr, /--pooling/);
  const r = spawnSync(process.execPath, [cli, 'train', '--model', path.join(tmp, 'init'), '--data', data, '--out', path.join(tmp, 'c'), '--metric', 'f1'], { encoding: 'utf8' });
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /--metric/);
  const h = spawnSync(process.execPath, [cli, 'train', '--help'], { encoding: 'utf8' });
  assert.is(h.status, 0);
  assert.match(h.stdout, /--grad-accum/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
