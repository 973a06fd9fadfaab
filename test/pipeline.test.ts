// The one-call classifier (src/pipeline.ts, src/node/pipeline.ts) and what makes its answers trustworthy: scores that
// do not depend on which clips share a batch (evaluation and prediction), timelines over long audio, every input kind
// (samples at any rate, Blob, file path, array), regression outputs, and refusals instead of random answers (no
// weights, no trained head, a label set other than the model's). CLIs run through build/cli.mjs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { getRuntime, rng } from './helpers.js';
import { encodeWav } from '../src/audio/wav.js';
import { resample } from '../src/audio/resample.js';
import { parseModelConfig, familyOf } from '../src/model/registry.js';
import { SpeechClassifier } from '../src/model/classifier.js';
import { Trainer, DEFAULT_TRAIN_CONFIG, type ClipSet } from '../src/train/trainer.js';
import { saveModel } from '../src/node/train-cmd.js';
import { audioClassifier } from '../src/node/pipeline.js';
import { audioClassifier as coreAudioClassifier, windowSpans, type LabelScore, type TimelineEntry } from '../src/pipeline.js';
import { openModelDir, saveModelDir } from '../src/node/modeldir.js';

const root = process.cwd();
const cli = path.join(root, 'build/cli.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-pipeline-'));
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
  // large enough that the head's outputs are far from uniform, so batch effects would show
  initializer_range: 0.5,
  id2label: { 0: 'high', 1: 'low', 2: 'mid' },
  label2id: { high: 0, low: 1, mid: 2 },
};
// the base layout: GroupNorm over time in the first conv, so padding changes a clip's frames
const TINY_GROUP = { ...TINY, feat_extract_norm: 'group', do_stable_layer_norm: false };

function clipOf(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const f = 200 + 1800 * r();
  return Float32Array.from({ length: n }, (_, t) => 0.5 * Math.sin((2 * Math.PI * f * t) / 16000) + 0.2 * (r() - 0.5));
}
const LENGTHS = [4000, 5200, 3100, 7900, 6400, 2500, 4800];
const CLIPS = LENGTHS.map((n, i) => clipOf(n, 100 + i));

/** A model folder with random (seeded) weights for `json`. */
async function makeModel(name: string, json: Record<string, unknown>, seed = 3): Promise<string> {
  const rt = await getRuntime();
  const dir = path.join(tmp, name);
  const config = parseModelConfig(JSON.stringify(json), `${name}/config.json`);
  const model = SpeechClassifier.random(rt, config, { initSeed: seed });
  await saveModel(model, config, familyOf(config).parsePreprocessor({}, `${name}/preprocessor_config.json`, config), dir);
  model.dispose();
  return dir;
}

function clipSet(clips: Float32Array[]): ClipSet {
  return { ids: clips.map((_, i) => `c${i}`), labels: clips.map((_, i) => i % 3), lengths: clips.map((c) => c.length), clip: async (i) => clips[i] };
}

const noIO = { log: () => {}, saveCheckpoint: async () => {}, saveBest: async () => {} };

async function evalProbs(dir: string, batchSize: number, opts: { plainPooling?: boolean } = {}): Promise<Float32Array> {
  const rt = await getRuntime();
  const md = await openModelDir(dir);
  const { model } = await SpeechClassifier.fromSource(rt, md.config, md.weights);
  await md.close();
  const trainer = new Trainer(model, { train: clipSet(CLIPS), valid: null, preprocessor: md.preprocessor }, LABELS, { ...DEFAULT_TRAIN_CONFIG, batchSize }, noIO);
  let probs: Float32Array;
  if (opts.plainPooling) {
    // what evaluation did before: the notebook head's plain mean over the padded batch
    const { makeBatch, planBatches } = await import('../src/data/batch.js');
    const { Tensor } = await import('../src/tensor.js');
    const { noGrad, tidy } = await import('../src/autograd.js');
    const { softmax } = await import('../src/ops/loss.js');
    model.eval();
    model.poolExcludePadding = false;
    probs = new Float32Array(CLIPS.length * 3);
    for (const idx of planBatches(LENGTHS, { batchSize, shuffle: false })) {
      const b = await makeBatch(idx, (i) => CLIPS[i], null, { train: false, prepare: (c) => md.preprocessor.prepare(c) });
      const p = noGrad(() => tidy(() => softmax(model.forward({ inputValues: Tensor.fromData(rt, b.input, b.shape), attentionMask: b.mask }).logits!)));
      const v = await p.readFloat();
      p.dispose();
      idx.forEach((i, r) => probs.set(v.subarray(r * 3, r * 3 + 3), i * 3));
    }
  } else {
    probs = (await trainer.evaluate(clipSet(CLIPS))).probs;
  }
  model.dispose();
  return probs;
}

/** Awaits fn and checks that it threw an error whose message matches re. */
async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let modelDir = '';
let groupDir = '';

test('evaluation: the same clips give the same probabilities at batch sizes 1, 3 and 7 (notebook head, layer-norm and group-norm encoders)', async () => {
  modelDir = await makeModel('tiny', TINY);
  groupDir = await makeModel('tiny-group', TINY_GROUP);
  for (const dir of [modelDir, groupDir]) {
    const p1 = await evalProbs(dir, 1);
    const p3 = await evalProbs(dir, 3);
    const p7 = await evalProbs(dir, 7);
    assert.ok(p1.every(Number.isFinite));
    let spread = 0;
    for (let i = 0; i < CLIPS.length; i++) spread = Math.max(spread, Math.max(...p1.subarray(i * 3, i * 3 + 3)) - Math.min(...p1.subarray(i * 3, i * 3 + 3)));
    assert.ok(spread > 0.05, `probabilities nearly uniform (spread ${spread}): the test would not see batch effects`);
    const d3 = maxDiff(p3, p1);
    const d7 = maxDiff(p7, p1);
    console.log(`  ${path.basename(dir)}: max |p(batch 3) - p(batch 1)| ${d3.toExponential(2)}, batch 7 ${d7.toExponential(2)}`);
    assert.ok(d3 < 1e-6 && d7 < 1e-6, `${path.basename(dir)}: batch 3 differs by ${d3}, batch 7 by ${d7}`);
  }
  // the bug this guards against: the plain mean over a padded batch changes a clip's scores with its batch
  const plain1 = await evalProbs(modelDir, 1, { plainPooling: true });
  const plain7 = await evalProbs(modelDir, 7, { plainPooling: true });
  assert.ok(maxDiff(plain7, plain1) > 1e-4, `plain pooling over padding should depend on the batch (diff ${maxDiff(plain7, plain1)})`);
  assert.ok(maxDiff(plain1, await evalProbs(modelDir, 1)) < 1e-6, 'alone (unpadded), the masked mean is the plain mean');
});

test('audioClassifier: sorted {label, score}, topK, arrays batched with the same scores as one by one, any rate, Blob and file path', async () => {
  const rt = await getRuntime();
  const clf = await audioClassifier(modelDir, { runtime: rt, batchSize: 4 });
  assert.equal([...clf.labels], LABELS);
  assert.is(clf.task, 'classification');
  const one = (await clf({ samples: CLIPS[0], samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
  assert.is(one.length, 3);
  assert.equal(one.map((s) => s.label).sort(), LABELS);
  for (let k = 1; k < one.length; k++) assert.ok(one[k - 1].score >= one[k].score, 'sorted, best first');
  assert.ok(Math.abs(one.reduce((a, s) => a + s.score, 0) - 1) < 1e-5, 'probabilities');
  assert.is(((await clf({ samples: CLIPS[0], samplingRate: 16000 }, { topK: 1 })) as LabelScore[]).length, 1);
  // equal to evaluation's probabilities for the same clip
  const evalP = await evalProbs(modelDir, 7);
  const byLabel = (r: LabelScore[]) => LABELS.map((l) => r.find((s) => s.label === l)!.score);
  assert.ok(maxDiff(byLabel(one), evalP.subarray(0, 3)) < 1e-6, 'predict and eval agree');
  // an array: one result per input, each as if alone
  const many = (await clf(CLIPS.map((samples) => ({ samples, samplingRate: 16000 })), { topK: 3 })) as LabelScore[][];
  assert.is(many.length, CLIPS.length);
  for (let i = 0; i < CLIPS.length; i++) {
    const alone = (await clf({ samples: CLIPS[i], samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
    assert.ok(maxDiff(byLabel(many[i]), byLabel(alone)) < 1e-6, `clip ${i}: batched differs from alone`);
  }
  // another rate is resampled by the library's resampler
  const at8k = resample(CLIPS[3], 16000, 8000);
  const r8 = (await clf({ samples: at8k, samplingRate: 8000 }, { topK: 3 })) as LabelScore[];
  const ref8 = (await clf({ samples: resample(at8k, 8000, 16000), samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
  assert.ok(maxDiff(byLabel(r8), byLabel(ref8)) < 1e-6);
  // a Blob (browser File) and a file path go through the same decoder
  const wav = encodeWav(CLIPS[1], 16000);
  const file = path.join(tmp, 'clip1.wav');
  fs.writeFileSync(file, wav);
  const fromBlob = (await clf(new Blob([Uint8Array.from(wav)]), { topK: 3 })) as LabelScore[];
  const fromPath = (await clf(file, { topK: 3 })) as LabelScore[];
  const fromSamples = (await clf({ samples: CLIPS[1], samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
  assert.ok(maxDiff(byLabel(fromBlob), byLabel(fromPath)) === 0, 'Blob and path decode alike');
  assert.ok(maxDiff(byLabel(fromPath), byLabel(fromSamples)) < 1e-3, 'a 16-bit WAV of the clip scores like the clip');
  // refusals that name the input
  await rejects(() => clf(CLIPS[0] as never), /audio\[0\].*samplingRate/);
  await rejects(() => clf(path.join(tmp, 'nope.wav')), /nope\.wav/);
  await rejects(() => clf({ samples: CLIPS[0].subarray(0, 100), samplingRate: 16000 }), /too short/);
  clf.dispose();
  await rejects(() => clf({ samples: CLIPS[0], samplingRate: 16000 }), /dispose/);
  // dtype f16: the linear layers in f16 (mixed precision), close to f32
  if (rt.hasF16) {
    const half = await audioClassifier(modelDir, { runtime: rt, dtype: 'f16' });
    const h = (await half({ samples: CLIPS[0], samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
    const d = maxDiff(byLabel(h), byLabel(one));
    console.log(`  f16 vs f32: max |dp| ${d.toExponential(2)}`);
    assert.ok(d < 2e-2 && h.every((s) => Number.isFinite(s.score)), `f16 differs by ${d}`);
    half.dispose();
  } else {
    await rejects(() => audioClassifier(modelDir, { runtime: rt, dtype: 'f16' }), /shader-f16/);
  }
});

test('audioClassifier (core): an opened model or the folder files as Blobs, no Node paths', async () => {
  const rt = await getRuntime();
  const files = fs.readdirSync(modelDir).map((f) => [f, new Blob([fs.readFileSync(path.join(modelDir, f))])] as const);
  const clf = await coreAudioClassifier(files, { runtime: rt });
  const r = (await clf({ samples: CLIPS[2], samplingRate: 16000 })) as LabelScore[];
  const md = await openModelDir(modelDir);
  const clf2 = await coreAudioClassifier(md, { runtime: rt });
  await md.close();
  const r2 = (await clf2({ samples: CLIPS[2], samplingRate: 16000 })) as LabelScore[];
  assert.equal(r, r2);
  await rejects(() => clf(path.join(tmp, 'clip1.wav')), /not a URL/);
  clf.dispose();
  clf2.dispose();
});

test('timeline: windows every hop, the last aligned to the end, short clips one entry; each window scored as alone', async () => {
  assert.equal(windowSpans(10, 1, 4, 1), [[0, 4], [1, 5], [2, 6], [3, 7], [4, 8], [5, 9], [6, 10]]);
  assert.equal(windowSpans(10, 1, 4, 4), [[0, 4], [4, 8], [6, 10]]);
  assert.equal(windowSpans(8, 1, 4, 4), [[0, 4], [4, 8]]);
  assert.equal(windowSpans(3, 1, 4, 1), [[0, 3]]);
  assert.throws(() => windowSpans(100, 16000, 0.001, 1, 400), /window/);
  assert.throws(() => windowSpans(100, 16000, 1, 0), /hop/);
  const rt = await getRuntime();
  const clf = await audioClassifier(modelDir, { runtime: rt });
  const long = new Float32Array(16000 * 2 + 4000);
  let o = 0;
  for (const c of CLIPS) {
    long.set(c.subarray(0, Math.min(c.length, long.length - o)), o);
    o += c.length;
    if (o >= long.length) break;
  }
  const tl = (await clf({ samples: long, samplingRate: 16000 }, { window: 0.5, hop: 0.25, topK: 3 })) as TimelineEntry[];
  assert.is(tl.length, 8);
  assert.is(tl[0].start, 0);
  assert.is(tl[tl.length - 1].end, long.length / 16000);
  for (const e of tl) {
    assert.ok(Math.abs(e.end - e.start - 0.5) < 1e-9);
    const alone = (await clf({ samples: long.subarray(Math.round(e.start * 16000), Math.round(e.end * 16000)), samplingRate: 16000 }, { topK: 3 })) as LabelScore[];
    assert.equal((e.scores as LabelScore[]).map((s) => s.label), alone.map((s) => s.label));
    for (let k = 0; k < 3; k++) assert.ok(Math.abs((e.scores as LabelScore[])[k].score - alone[k].score) < 1e-6);
  }
  const short = (await clf({ samples: CLIPS[5], samplingRate: 16000 }, { window: 4, hop: 1 })) as TimelineEntry[];
  assert.is(short.length, 1);
  assert.equal([short[0].start, short[0].end], [0, CLIPS[5].length / 16000]);
  const two = (await clf([{ samples: CLIPS[5], samplingRate: 16000 }, { samples: long, samplingRate: 16000 }], { window: 0.5, hop: 0.25 })) as TimelineEntry[][];
  assert.equal(two.map((t) => t.length), [1, 8]);
  clf.dispose();
});

test('regression models give {label: value}; a checkpoint without a trained head is refused', async () => {
  const rt = await getRuntime();
  const json = { ...TINY, problem_type: 'regression', id2label: { 0: 'arousal', 1: 'dominance', 2: 'valence' }, label2id: { arousal: 0, dominance: 1, valence: 2 } };
  const dir = await makeModel('regression', json);
  const clf = await audioClassifier(dir, { runtime: rt });
  assert.is(clf.task, 'regression');
  const out = (await clf({ samples: CLIPS[0], samplingRate: 16000 })) as Record<string, number>;
  assert.equal(Object.keys(out).sort(), ['arousal', 'dominance', 'valence']);
  // the raw outputs of the model's forward on the clip alone
  const md = await openModelDir(dir);
  const x = md.preprocessor.prepare([CLIPS[0]]);
  const { Tensor } = await import('../src/tensor.js');
  const o = clf.model.forward({ inputValues: Tensor.fromData(rt, x.values, x.shape), attentionMask: x.mask });
  const logits = await o.logits!.readFloat();
  await md.close();
  assert.ok(maxDiff([out.arousal, out.dominance, out.valence], logits) < 1e-6);
  clf.dispose();
  // an encoder-only checkpoint: the head would be random
  const bare = path.join(tmp, 'bare');
  const src = await openModelDir(modelDir);
  const tensors = [];
  for (const [name, e] of src.weights.entries) if (!name.startsWith('classifier.')) tensors.push({ name, shape: [...e.shape], data: await e.read() });
  await src.close();
  await saveModelDir(bare, { config: TINY, tensors });
  await rejects(() => audioClassifier(bare, { runtime: rt }), /classifier\.dense\.weight.*random|random.*classifier/s);
});

function ser(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300000 });
}

test('ser predict: --window/--hop print and --json emit a timeline; a training run folder is accepted', () => {
  const long = new Float32Array(16000 * 2);
  for (let i = 0; i < long.length; i++) long[i] = CLIPS[i % 7][i % CLIPS[i % 7].length];
  const file = path.join(tmp, 'long.wav');
  fs.writeFileSync(file, encodeWav(long, 16000));
  const r = ser('predict', modelDir, file, '--window', '0.5', '--hop', '0.5', '--json');
  assert.is(r.status, 0, r.stderr);
  const [res] = JSON.parse(r.stdout);
  assert.is(res.file, file);
  assert.equal(res.timeline.map((e: { start: number; end: number }) => [e.start, e.end]), [[0, 0.5], [0.5, 1], [1, 1.5], [1.5, 2]]);
  for (const e of res.timeline) {
    assert.ok(LABELS.includes(e.label));
    assert.ok(Math.abs(Object.values(e.probs as Record<string, number>).reduce((a, b) => a + b, 0) - 1) < 1e-5);
    assert.is(e.label, Object.entries(e.probs as Record<string, number>).sort((a, b) => b[1] - a[1])[0][0]);
  }
  const t = ser('predict', modelDir, file, '--window', '0.5', '--hop', '0.25');
  assert.is(t.status, 0, t.stderr);
  const lines = t.stdout.trim().split('\n');
  assert.is(lines.length, 7);
  assert.match(lines[0], /long\.wav\t0\.00-0\.50 s\t(high|low|mid)\thigh=/);
  // --html: the timeline plotted, one line per label, points at the window centres
  const html = path.join(tmp, 'timeline.html');
  const h = ser('predict', modelDir, file, '--window', '0.5', '--hop', '0.5', '--html', html);
  assert.is(h.status, 0, h.stderr);
  const page = fs.readFileSync(html, 'utf8');
  assert.ok(page.includes('<svg') && page.includes('long.wav'), 'an SVG plot for the file');
  for (const l of LABELS) assert.ok(page.includes(`>${l}<`), `legend has ${l}`);
  assert.is(ser('predict', modelDir, file, '--html', html).status !== 0, true, '--html without --window is refused');
  // a run folder (ser train --out) holds the model in model/
  const run = path.join(tmp, 'run');
  fs.mkdirSync(run, { recursive: true });
  fs.cpSync(modelDir, path.join(run, 'model'), { recursive: true });
  fs.writeFileSync(path.join(run, 'run.json'), '{}');
  const p = ser('predict', run, file, '--json');
  assert.is(p.status, 0, p.stderr);
  assert.ok(LABELS.includes(JSON.parse(p.stdout)[0].label));
  fs.rmSync(path.join(run, 'model'), { recursive: true });
  const q = ser('predict', run, file);
  assert.is.not(q.status, 0);
  assert.match(q.stderr, /training run folder.*model/);
});

test('ser eval/predict: no weights, a different label set and unknown labels are never silent', () => {
  // data: folder per label, plus a label the model lacks
  const data = path.join(tmp, 'data');
  for (const [i, label] of ['high', 'low', 'mid', 'fear', 'fear'].entries()) {
    fs.mkdirSync(path.join(data, label), { recursive: true });
    fs.writeFileSync(path.join(data, label, `c${i}.wav`), encodeWav(CLIPS[i], 16000));
  }
  const e = ser('eval', '--model', modelDir, '--data', data, '--json');
  assert.is(e.status, 0, e.stderr);
  const m = JSON.parse(e.stdout);
  assert.is(m.n, 3);
  assert.equal(m.dropped, { count: 2, labels: { fear: 2 } });
  assert.equal(m.skipped, []);
  assert.is(m.evaluated, 3);
  assert.match(e.stderr, /2 row\(s\).*dropped.*fear/);
  // eval at another batch size: the same metrics
  const e1 = ser('eval', '--model', modelDir, '--data', data, '--json', '--batch-size', '1');
  assert.equal(JSON.parse(e1.stdout).confusion, m.confusion);
  // --labels must be the model's set
  const bad = ser('eval', '--model', modelDir, '--data', data, '--labels', 'high,low,fear');
  assert.is.not(bad.status, 0);
  assert.match(bad.stderr, /--labels .*does not match the model's head.*not in the model: fear/);
  const same = ser('eval', '--model', modelDir, '--data', data, '--labels', 'mid,High,low', '--json');
  assert.is(same.status, 0, same.stderr);
  const noSplits = ser('eval', '--model', modelDir, '--data', data, '--splits', path.join(tmp, 'none.json'));
  assert.is.not(noSplits.status, 0);
  assert.match(noSplits.stderr, /none\.json: no such file/);
  assert.not.ok(fs.existsSync(path.join(tmp, 'none.json')), 'eval does not write a split file');
  // a folder with config.json only: refused by eval and predict, named
  const cfgOnly = path.join(tmp, 'config-only');
  fs.mkdirSync(cfgOnly, { recursive: true });
  fs.writeFileSync(path.join(cfgOnly, 'config.json'), JSON.stringify(TINY));
  const wav = path.join(data, 'high', 'c0.wav');
  for (const r of [ser('eval', '--model', cfgOnly, '--data', data), ser('predict', cfgOnly, wav)]) {
    assert.is.not(r.status, 0);
    assert.match(r.stderr, new RegExp(`${cfgOnly.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*no weights`));
  }
  // malformed config.json: the error names the file
  const broken = path.join(tmp, 'broken');
  fs.cpSync(modelDir, broken, { recursive: true });
  fs.writeFileSync(path.join(broken, 'config.json'), '{"model_type": "wav2vec2",');
  for (const r of [ser('predict', broken, wav), ser('eval', '--model', broken, '--data', data)]) {
    assert.is.not(r.status, 0);
    assert.match(r.stderr, /broken[\\/]config\.json/);
  }
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
