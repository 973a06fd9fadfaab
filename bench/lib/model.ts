// Model-level figures: full-size XLSR-large (random weights, real shapes) forward per second of audio at 4 s and 20 s,
// a training step at batch 4 x 4 s (frozen feature encoder) with its peak GPU memory, the demo model's training
// throughput, and the peak RSS of loading a full-size 1.26 GB checkpoint (a child process, so its RSS is its own).
// After the timed runs, one extra 4 s forward and one extra training step are profiled (bench/lib/model-profile.ts):
// GPU time per model section, top kernels, and the roofline summary. benchModelProfile does only that (--only=
// model-profile). SER_BENCH_XLSR_LAYERS=N (default 24) shrinks the transformer for checking this code on a slow
// machine; the rows then say so.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { backward, noGrad, tidy } from '../../src/autograd.js';
import { parseWav2Vec2Config } from '../../src/model/wav2vec2/config.js';
import { Wav2Vec2ForSpeechClassification, takeOutput } from '../../src/model/classifier.js';
import { AdamW, gradNorm } from '../../src/ops/optim.js';
import { DEMO_CONFIG } from '../../src/node/train-cmd.js';
import { timeAsync, type Row } from './harness.js';
import { benchRoofs, profileReport } from './model-profile.js';
import type { Peaks } from './kernels.js';
import { xlsrBenchConfig } from './peers-torch.js';

const LABELS = { 0: 'anger', 1: 'happiness', 2: 'neutral', 3: 'sadness', 4: 'surprise' };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');


function audio(rt: Runtime, B: number, S: number): Tensor {
  const x = new Float32Array(B * S);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.01) + 0.1 * Math.sin(i * 0.37);
  return Tensor.fromData(rt, x, [B, S], 'f32', 'input_values');
}

/** Layers of the bench's XLSR-large (24, or fewer with SER_BENCH_XLSR_LAYERS to check the code on a slow machine). */
function xlsrLayers(): number {
  const v = process.env.SER_BENCH_XLSR_LAYERS;
  if (v === undefined || v === '') return 24;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 24) throw new Error(`SER_BENCH_XLSR_LAYERS must be an integer 1..24, got '${v}'`);
  return n;
}

function xlsrName(layers: number): string {
  return layers === 24 ? 'XLSR-large' : `XLSR-large (shrunk to ${layers} layers)`;
}

async function forwardOnce(model: Wav2Vec2ForSpeechClassification, x: Tensor): Promise<void> {
  const logits = noGrad(() => tidy(() => {
    return takeOutput(model.forward({ inputValues: x }), 'logits');
  }));
  await logits.read();
  logits.dispose();
}

async function forwardSeconds(rt: Runtime, model: Wav2Vec2ForSpeechClassification, B: number, seconds: number, reps: number) {
  const x = audio(rt, B, seconds * 16000);
  model.eval();
  const t = await timeAsync(() => forwardOnce(model, x), { reps, warmup: 1 });
  x.dispose();
  return t;
}

/** One more (warm) forward of `seconds` at batch 1, profiled. */
async function profileForward(rt: Runtime, model: Wav2Vec2ForSpeechClassification, seconds: number) {
  const x = audio(rt, 1, seconds * 16000);
  model.eval();
  const { profile } = await rt.profile(() => forwardOnce(model, x));
  x.dispose();
  return profile;
}

/** One more (warm: the optimizer state exists) training step, profiled. */
async function profileTrainStep(rt: Runtime, model: Wav2Vec2ForSpeechClassification, opt: AdamW, B: number, seconds: number) {
  const { profile } = await rt.profile(() => trainStep(rt, model, opt, B, seconds));
  return profile;
}

async function trainStep(rt: Runtime, model: Wav2Vec2ForSpeechClassification, opt: AdamW, B: number, seconds: number) {
  const x = audio(rt, B, seconds * 16000);
  model.train();
  // the sections only matter while profiling (rt.section is a plain call otherwise)
  const loss = rt.section('forward', () => tidy(() => {
    return takeOutput(model.forward({ inputValues: x, labels: Array.from({ length: B }, (_, i) => i % 5) }), 'loss');
  }));
  rt.section('backward', () => backward(loss));
  const n = rt.section('optimizer', () => {
    // as the trainer does it: clip_grad_norm_(1.0) applied inside the AdamW update
    const norm = gradNorm(opt.params.filter((p) => p.grad));
    opt.step(undefined, { clip: { norm, maxNorm: 1.0 } });
    opt.zeroGrad();
    return norm;
  });
  const v = (await loss.read())[0];
  loss.dispose();
  n.dispose();
  x.dispose();
  return v;
}

export async function benchModel(rt: Runtime, peaks: Peaks, quick: boolean): Promise<{ rows: Row[]; markdown: string[] }> {
  const rows: Row[] = [];
  const markdown: string[] = [];
  // the demo model: training throughput at its own batch (8 clips of 1.7 s)
  {
    const cfg = parseWav2Vec2Config({ ...DEMO_CONFIG, id2label: LABELS });
    const model = Wav2Vec2ForSpeechClassification.random(rt, cfg, { initSeed: 1 });
    model.freezeFeatureEncoder = false;
    const opt = new AdamW(model.trainableParameters(), { lr: 1e-3 });
    const B = 8;
    const secs = 1.7;
    await trainStep(rt, model, opt, B, secs);
    const t = await timeAsync(() => trainStep(rt, model, opt, B, secs), { reps: quick ? 3 : 5, warmup: 0 });
    rows.push({ name: `demo model training (batch ${B} x ${secs} s, feature encoder trained)`, unit: 'samples/s', ours: B / t.median, spread: [B / t.max, B / t.min], note: `${(t.median / (B * secs)).toFixed(3)} s per audio second` });
    model.dispose();
  }
  // full-size XLSR-large, random weights
  const layers = xlsrLayers();
  const name = xlsrName(layers);
  const cfg = xlsrBenchConfig(layers);
  const t0 = performance.now();
  const model = Wav2Vec2ForSpeechClassification.random(rt, cfg, { initSeed: 1 });
  const initSeconds = (performance.now() - t0) / 1000;
  try {
    for (const seconds of quick ? [4] : [4, 20]) {
      const t = await forwardSeconds(rt, model, 1, seconds, quick ? 1 : 3);
      rows.push({ name: `${name} forward, ${seconds} s of audio (batch 1)`, unit: 's / audio s', ours: t.median / seconds, spread: [t.max / seconds, t.min / seconds], note: `model init ${initSeconds.toFixed(1)} s` });
    }
    // after the timed forwards: one more 4 s forward, profiled
    const roofs = await benchRoofs(rt, peaks, quick);
    const forwardProfile = profileReport(`${name} forward, 4 s (batch 1)`, await profileForward(rt, model, 4), roofs);
    rows.push(...forwardProfile.rows);
    markdown.push(...forwardProfile.markdown);
    if (!quick) {
      const B = 4;
      const secs = 4;
      const opt = new AdamW(model.trainableParameters(), { lr: 3e-4, weightDecay: 0 });
      rt.pool.resetPeak();
      const base = rt.pool.inUseBytes;
      await trainStep(rt, model, opt, B, secs); // first step allocates the optimizer state
      const t = await timeAsync(() => trainStep(rt, model, opt, B, secs), { reps: 2, warmup: 0 });
      rows.push({ name: `${name} training step, batch ${B} x ${secs} s (feature encoder frozen, f32)`, unit: 's', ours: t.median, spread: [t.max, t.min], note: `${(B / t.median).toFixed(3)} samples/s (original Colab run: 0.83 samples/s)` });
      rows.push({ name: `${name} training step peak GPU memory (batch ${B} x ${secs} s)`, unit: 'GiB', ours: rt.pool.peakBytes / 2 ** 30, note: `weights+grads+AdamW state+activations; ${(base / 2 ** 30).toFixed(2)} GiB before the step` });
      // after the timed steps (and the peak-memory row): one more step, profiled, before checkpointing is switched on
      const trainProfile = profileReport(`${name} training step, batch ${B} x ${secs} s (feature encoder frozen)`, await profileTrainStep(rt, model, opt, B, secs), roofs);
      rows.push(...trainProfile.rows);
      markdown.push(...trainProfile.markdown);
      model.gradientCheckpointing = true;
      rt.pool.resetPeak();
      const tc = await timeAsync(() => trainStep(rt, model, opt, B, secs), { reps: 1, warmup: 0 });
      rows.push({ name: `${name} training step with gradient checkpointing, batch ${B} x ${secs} s`, unit: 's', ours: tc.median, note: `peak GPU memory ${(rt.pool.peakBytes / 2 ** 30).toFixed(2)} GiB` });
    }
  } finally {
    model.dispose();
    rt.pool.trim();
  }
  if (!quick) rows.push(...checkpointLoadRss());
  for (const l of markdown) console.log(l);
  return { rows, markdown: profileHeading(markdown) };
}

function profileHeading(md: string[]): string[] {
  return md.length ? ['## Where the GPU time goes (profiles)', '', ...md] : [];
}

/**
 * Only the profiles of benchModel (--only=model-profile): XLSR-large with random weights, one warm-up forward then a
 * profiled 4 s forward (batch 1); one warm-up training step (allocates the AdamW state) then a profiled step at
 * batch 4 x 4 s with the feature encoder frozen. Nothing is timed here.
 */
export async function benchModelProfile(rt: Runtime, peaks: Peaks, quick: boolean): Promise<{ rows: Row[]; markdown: string[] }> {
  const layers = xlsrLayers();
  const name = xlsrName(layers);
  const roofs = await benchRoofs(rt, peaks, quick);
  const model = Wav2Vec2ForSpeechClassification.random(rt, xlsrBenchConfig(layers), { initSeed: 1 });
  const rows: Row[] = [];
  const markdown: string[] = [];
  try {
    const x = audio(rt, 1, 4 * 16000);
    model.eval();
    await forwardOnce(model, x); // compiles the pipelines, fills the pool
    x.dispose();
    const fwd = profileReport(`${name} forward, 4 s (batch 1)`, await profileForward(rt, model, 4), roofs);
    rows.push(...fwd.rows);
    markdown.push(...fwd.markdown);
    const B = 4;
    const secs = 4;
    const opt = new AdamW(model.trainableParameters(), { lr: 3e-4, weightDecay: 0 });
    await trainStep(rt, model, opt, B, secs);
    const train = profileReport(`${name} training step, batch ${B} x ${secs} s (feature encoder frozen)`, await profileTrainStep(rt, model, opt, B, secs), roofs);
    rows.push(...train.rows);
    markdown.push(...train.markdown);
    opt.dispose();
  } finally {
    model.dispose();
    rt.pool.trim();
  }
  for (const l of markdown) console.log(l);
  return { rows, markdown: profileHeading(markdown) };
}

/** Write a random full-size checkpoint, then load it into a model in a child process and report its peak RSS. */
function checkpointLoadRss(): Row[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-xlsr-'));
  try {
    const gen = spawnSync(process.execPath, [path.join(root, 'tools/make_random_checkpoint.mjs'), '--out', dir, '--head', 'classifier'], { encoding: 'utf8', timeout: 600000 });
    if (gen.status !== 0) throw new Error(`make_random_checkpoint failed: ${gen.stderr.slice(-500)}`);
    const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
    const r = spawnSync(process.execPath, [path.join(root, 'build/bench/load-probe.mjs'), dir], { encoding: 'utf8', timeout: 600000 });
    const m = (r.stdout || '').match(/MAXRSS=(\d+) SECONDS=([\d.]+)/);
    if (!m) throw new Error(`load probe failed: ${(r.stderr || '').slice(-500)}`);
    return [
      { name: `load a full-size XLSR-large checkpoint (${(bytes / 1e9).toFixed(2)} GB safetensors) into GPU tensors: peak RSS`, unit: 'GB', ours: Number(m[1]) / 1e6, note: `load time ${Number(m[2]).toFixed(1)} s; streamed tensor by tensor. On a CPU adapter the GPU buffers themselves (${(bytes / 1e9).toFixed(2)} GB) live in this process, so RSS near that size means no second copy in JS memory` },
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
