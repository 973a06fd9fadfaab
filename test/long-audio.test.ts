// Long audio: the conv feature encoder splits a batch (by items, or by time with the receptive-field overlap) when an
// activation would exceed the adapter's binding limit. The chunked forward and its gradients must equal the
// unchunked computation (forced small budgets on a tiny model, where both fit), a clip longer than the real binding
// limit allows must run (its first and last frames checked against unchunked runs on windows of the clip), 'group'
// norm refuses time splits with the length that fits, and transformer activations over the limit are one error that
// names --batch-size and --max-seconds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, close } from './helpers.js';
import { Tensor } from '../src/tensor.js';
import { backward, noGrad, tidy } from '../src/autograd.js';
import { parseWav2Vec2Config, type Wav2Vec2Config } from '../src/model/wav2vec2/config.js';
import { Wav2Vec2Encoder, convOutputLength, featureEncoderPeakBytes, planFeatureEncoder, receptiveField, totalStride } from '../src/model/wav2vec2/encoder.js';
import { SpeechClassifier, disposeOutput } from '../src/model/classifier.js';
import type { Runtime } from '../src/runtime/runtime.js';

function tinyConfig(over: Record<string, unknown> = {}): Wav2Vec2Config {
  return parseWav2Vec2Config({
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 48,
    conv_dim: [16, 16, 16, 16, 16, 16, 16],
    conv_kernel: [10, 3, 3, 3, 3, 2, 2],
    conv_stride: [5, 2, 2, 2, 2, 2, 2],
    conv_bias: true,
    feat_extract_norm: 'layer',
    do_stable_layer_norm: true,
    num_conv_pos_embeddings: 8,
    num_conv_pos_embedding_groups: 4,
    hidden_dropout: 0,
    attention_dropout: 0,
    activation_dropout: 0,
    feat_proj_dropout: 0,
    final_dropout: 0,
    layerdrop: 0,
    mask_time_prob: 0,
    id2label: { 0: 'a', 1: 'b', 2: 'c' },
    ...over,
  });
}

function encoderOf(model: SpeechClassifier): Wav2Vec2Encoder {
  const enc = model.encoder;
  if (!(enc instanceof Wav2Vec2Encoder)) throw new Error('expected a wav2vec2-style encoder');
  return enc;
}

/** Right-padded batch of random clips of the given lengths. */
function batchOf(rt: Runtime, lengths: number[], seed: number): { input: Tensor; lengths: number[] } {
  const S = Math.max(...lengths);
  const data = new Float32Array(lengths.length * S);
  lengths.forEach((n, b) => data.set(randn(n, seed + b, 0.5), b * S));
  return { input: Tensor.fromData(rt, data, [lengths.length, S], 'f32', 'input_values'), lengths };
}

async function forwardAll(model: SpeechClassifier, input: Tensor, lengths: number[], labels?: number[]): Promise<{ extract: Float32Array; last: Float32Array; logits: Float32Array; grads: Map<string, Float32Array> }> {
  for (const t of model.params.values()) {
    t.grad?.dispose();
    t.grad = null;
  }
  const out = model.forward({ inputValues: input, inputLengths: lengths, labels }, { outputHiddenStates: true });
  const extract = await out.intermediates.get('extract_features')!.readFloat();
  const last = await out.last_hidden_state.readFloat();
  const logits = await out.logits!.readFloat();
  if (labels) backward(out.loss!);
  disposeOutput(out);
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of model.params) if (t.grad) grads.set(name, await t.grad.readFloat());
  return { extract, last, logits, grads };
}

test('planFeatureEncoder: whole batch, groups of items, or time chunks whose windows give exactly the frames', () => {
  const cfg = tinyConfig();
  const S = 8000;
  const T = convOutputLength(cfg, S);
  const whole = featureEncoderPeakBytes(cfg, 3, S);
  assert.equal(planFeatureEncoder(cfg, 3, S, whole), { batchChunk: 3, frameChunk: T, frames: T });
  assert.equal(planFeatureEncoder(cfg, 3, S, whole - 1), { batchChunk: 2, frameChunk: T, frames: T });
  const small = featureEncoderPeakBytes(cfg, 1, S) / 5;
  const plan = planFeatureEncoder(cfg, 3, S, small);
  assert.is(plan.batchChunk, 1);
  assert.ok(plan.frameChunk < T && plan.frameChunk >= 1, `frame chunk ${plan.frameChunk} of ${T}`);
  const J = totalStride(cfg);
  const RF = receptiveField(cfg);
  // the window of a chunk yields exactly its frames and fits the budget; one more frame would not
  assert.is(convOutputLength(cfg, (plan.frameChunk - 1) * J + RF), plan.frameChunk);
  assert.ok(featureEncoderPeakBytes(cfg, 1, (plan.frameChunk - 1) * J + RF) <= small);
  assert.ok(featureEncoderPeakBytes(cfg, 1, plan.frameChunk * J + RF) > small);
  assert.throws(() => planFeatureEncoder(cfg, 1, S, 100), /even one frame/);
  const base = tinyConfig({ feat_extract_norm: 'group', do_stable_layer_norm: false });
  assert.equal(planFeatureEncoder(base, 3, S, whole - 1).batchChunk, 2, 'group norm still splits the batch');
  assert.throws(() => planFeatureEncoder(base, 1, S, small), /cannot be split in time.*--max-seconds/s);
});

for (const layout of ['layer', 'group'] as const) {
  test(`feature encoder '${layout}' norm: chunked forward equals the whole one (${layout === 'layer' ? 'items and time' : 'items'})`, async () => {
    const rt = await getRuntime();
    const cfg = layout === 'layer' ? tinyConfig() : tinyConfig({ feat_extract_norm: 'group', do_stable_layer_norm: false, conv_bias: false });
    const model = SpeechClassifier.random(rt, cfg, { initSeed: 3, head: 'speech-classification' });
    model.eval();
    const enc = encoderOf(model);
    const { input, lengths } = batchOf(rt, [7013, 5400, 6111], 11);
    const S = input.shape[1];
    const ref = await noGrad(() => forwardAll(model, input, lengths));
    const budgets: [string, number][] = [['groups of items', featureEncoderPeakBytes(cfg, 2, S)]];
    if (layout === 'layer') {
      budgets.push(['time chunks of one item', Math.floor(featureEncoderPeakBytes(cfg, 1, S) / 4)]);
      budgets.push(['tiny time chunks', featureEncoderPeakBytes(cfg, 1, 5 * totalStride(cfg) + receptiveField(cfg))]);
    }
    for (const [what, budget] of budgets) {
      enc.featureEncoderBudgetBytes = budget;
      const plan = planFeatureEncoder(cfg, 3, S, budget);
      assert.ok(plan.batchChunk < 3 || plan.frameChunk < plan.frames, `${what}: the plan splits (${JSON.stringify(plan)})`);
      const got = await noGrad(() => forwardAll(model, input, lengths));
      close(got.extract, ref.extract, 1e-6, `${what}: extract_features`);
      close(got.last, ref.last, 1e-6, `${what}: last_hidden_state`);
      close(got.logits, ref.logits, 1e-6, `${what}: logits`);
    }
    if (layout === 'group') {
      enc.featureEncoderBudgetBytes = Math.floor(featureEncoderPeakBytes(cfg, 1, S) / 4);
      assert.throws(() => noGrad(() => tidy(() => enc.featureEncoder(input))), /feat_extract_norm 'group'.*--max-seconds/s);
    }
    input.dispose();
    model.dispose();
  });
}

test('feature encoder trained: gradients through time-chunked convs (concat backward) equal the whole computation', async () => {
  const rt = await getRuntime();
  const cfg = tinyConfig();
  const model = SpeechClassifier.random(rt, cfg, { initSeed: 5, head: 'speech-classification', freezeFeatureEncoder: false });
  model.eval(); // no dropout: both runs must see the same function
  const enc = encoderOf(model);
  const { input, lengths } = batchOf(rt, [6400, 4800], 21);
  const labels = [2, 0];
  const ref = await forwardAll(model, input, lengths, labels);
  assert.ok(ref.grads.has('wav2vec2.feature_extractor.conv_layers.0.conv.weight'), 'the feature encoder gets gradients');
  enc.featureEncoderBudgetBytes = Math.floor(featureEncoderPeakBytes(cfg, 1, input.shape[1]) / 3);
  assert.ok(planFeatureEncoder(cfg, 2, input.shape[1], enc.featureEncoderBudgetBytes).frameChunk < convOutputLength(cfg, input.shape[1]));
  const got = await forwardAll(model, input, lengths, labels);
  close(got.logits, ref.logits, 1e-6, 'logits');
  assert.is(got.grads.size, ref.grads.size);
  for (const [name, g] of ref.grads) close(got.grads.get(name)!, g, 1e-5, `grad ${name}`);
  input.dispose();
  model.dispose();
});

test('a clip longer than the adapter binding limit allows runs chunked; its edge frames equal unchunked runs on windows', async () => {
  const rt = await getRuntime();
  // a wide first conv: [1, 512, S / 5] f32 exceeds the binding limit while the rest of the model stays cheap
  const limit = Math.min(Number(rt.limits.maxStorageBufferBindingSize), Number(rt.limits.maxBufferSize));
  const cfg = tinyConfig({ conv_dim: [512, 16, 16, 16, 16, 16, 16] });
  const S = Math.ceil(((limit / 4 / 512) * 5) * 1.1);
  assert.ok(featureEncoderPeakBytes(cfg, 1, S) > limit, 'the clip does not fit unchunked');
  const model = SpeechClassifier.random(rt, cfg, { initSeed: 9, head: 'speech-classification' });
  model.eval();
  const enc = encoderOf(model);
  const { input } = batchOf(rt, [S], 31);
  const T = convOutputLength(cfg, S);
  const t0 = performance.now();
  const long = noGrad(() => enc.featureEncoder(input));
  const all = await long.readFloat();
  console.log(`  ${S} samples (${(S / 16000).toFixed(1)} s) -> ${T} frames chunked under a ${limit}-byte limit in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(long.shape, [1, T, 16]);
  long.dispose();
  const C = 16;
  const J = totalStride(cfg);
  const RF = receptiveField(cfg);
  const frames = 40;
  for (const start of [0, T - frames]) {
    const window = (frames - 1) * J + RF;
    const data = await input.readFloat();
    const piece = Tensor.fromData(rt, data.subarray(start * J, start * J + window), [1, window], 'f32', 'window');
    const y = noGrad(() => enc.featureEncoder(piece));
    close(await y.readFloat(), all.subarray(start * C, (start + frames) * C), 1e-6, `frames ${start}..${start + frames}`);
    y.dispose();
    piece.dispose();
  }
  input.dispose();
  model.dispose();
});

test('transformer activations over the binding limit: one error naming --batch-size and --max-seconds', async () => {
  const rt = await getRuntime();
  const model = SpeechClassifier.random(rt, tinyConfig({ intermediate_size: 4096 }), { initSeed: 1, head: 'speech-classification' });
  const enc = encoderOf(model);
  const limit = Math.min(Number(rt.limits.maxStorageBufferBindingSize), Number(rt.limits.maxBufferSize));
  const frames = Math.ceil(limit / (4 * 4096 * 4)) + 1;
  const samples = (frames - 1) * totalStride(enc.config) + receptiveField(enc.config);
  assert.throws(() => enc.checkSequenceLimits(4, samples, frames), /FFN intermediate \[4, \d+, 4096\].*--batch-size.*--max-seconds.*with batch 4/s);
  enc.checkSequenceLimits(1, 16000, convOutputLength(enc.config, 16000));
  model.dispose();
});

test.run();
