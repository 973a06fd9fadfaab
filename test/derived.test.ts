// DerivedCache: weights derived from parameters are reused only while every source buffer is unwritten. Each way the
// runtime writes a buffer (an upload, a copy into it, a kernel binding it read_write: the optimizer step) must
// invalidate; a disposed source frees its entry; a gradient through the result is never cached; and models give the
// same outputs with the cache as a fresh model does after their parameters change.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close } from './helpers.js';
import { DerivedCache } from '../src/runtime/derived.js';
import { conv1d } from '../src/ops/conv.js';
import { add } from '../src/ops/elementwise.js';
import { AdamW } from '../src/ops/optim.js';
import { Tensor } from '../src/tensor.js';
import { noGrad } from '../src/autograd.js';
import { convReference, type Cfg } from './op-references.js';
import { parseWav2Vec2Config } from '../src/model/wav2vec2/config.js';
import { Wav2Vec2ForSpeechClassification, disposeOutput, initWeights } from '../src/model/classifier.js';
import { Wav2Vec2Encoder } from '../src/model/wav2vec2/encoder.js';

/** a cache whose compute counts its runs: doubles the source */
function counted(cache: DerivedCache, src: Tensor) {
  let runs = 0;
  const get = () => cache.get('double', [src], () => {
    runs++;
    return add(src, src);
  });
  return { get, runs: () => runs };
}

async function valuesOf(t: Tensor): Promise<number[]> {
  const v = Array.from(await t.readFloat());
  t.dispose();
  return v;
}

test('a hit returns the kept values; every kind of write to a source recomputes', async () => {
  const rt = await getRuntime();
  const cache = new DerivedCache();
  const src = upload(rt, [1, 2, 3, 4, 5], [5]);
  const c = counted(cache, src);
  assert.equal(await valuesOf(noGrad(c.get)), [2, 4, 6, 8, 10]);
  assert.equal(await valuesOf(noGrad(c.get)), [2, 4, 6, 8, 10]);
  assert.is(c.runs(), 1, 'second call is a hit');

  src.write([1, 1, 1, 1, 1]); // upload
  assert.equal(await valuesOf(noGrad(c.get)), [2, 2, 2, 2, 2]);
  assert.is(c.runs(), 2, 'an upload invalidates');

  const other = upload(rt, [3, 3, 3, 3, 3], [5]);
  rt.copy(other, src, src.byteLength); // buffer copy
  assert.equal(await valuesOf(noGrad(c.get)), [6, 6, 6, 6, 6]);
  assert.is(c.runs(), 3, 'a copy into the source invalidates');

  // a kernel writing the source in place: one AdamW step (lr 0.5, gradient 1 -> each value moves by about -0.5)
  src.requiresGrad = true;
  src.grad = upload(rt, [1, 1, 1, 1, 1], [5]);
  const opt = new AdamW([src], { lr: 0.5, weightDecay: 0 });
  opt.step();
  const stepped = Array.from(await src.readFloat());
  assert.ok(stepped.every((v) => Math.abs(v - 2.5) < 1e-3), `AdamW moved the values: ${stepped}`);
  assert.equal(await valuesOf(noGrad(c.get)), stepped.map((v) => 2 * v));
  assert.is(c.runs(), 4, 'an in-place kernel invalidates');
  assert.equal(await valuesOf(noGrad(c.get)), stepped.map((v) => 2 * v));
  assert.is(c.runs(), 4, 'and the recomputed value is kept again');

  opt.dispose();
  other.dispose();
  src.grad.dispose();
  src.dispose();
  cache.dispose();
});

test('a write into the handed-out view invalidates; disposing a source frees its entry; dispose frees all', async () => {
  const rt = await getRuntime();
  const before = rt.pool.inUseBytes;
  const cache = new DerivedCache();
  const src = upload(rt, [1, 2, 3], [3]);
  const c = counted(cache, src);
  const view = noGrad(c.get);
  view.write([0, 0, 0]);
  view.dispose();
  assert.equal(await valuesOf(noGrad(c.get)), [2, 4, 6], 'recomputed after its cached value was overwritten');
  assert.is(c.runs(), 2);
  assert.is(cache.size, 1);

  const src2 = upload(rt, [7], [1]);
  noGrad(() => cache.get('other', [src2], () => add(src2, src2))).dispose();
  assert.is(cache.size, 2);
  src2.dispose();
  noGrad(c.get).dispose(); // any lookup drops entries of dead sources
  assert.is(cache.size, 1, 'the entry of a disposed source is gone');

  cache.dispose();
  assert.is(cache.size, 0);
  src.dispose();
  assert.is(rt.pool.inUseBytes, before, 'nothing kept after dispose');
});

test('a result that needs a gradient is never cached', async () => {
  const rt = await getRuntime();
  const cache = new DerivedCache();
  const src = upload(rt, [1, 2], [2], { requiresGrad: true });
  const c = counted(cache, src);
  const a = c.get();
  assert.ok(a.node !== null, 'recorded for backward');
  const b = c.get();
  assert.is(c.runs(), 2, 'computed each time with gradients on');
  assert.is(cache.size, 0);
  a.dispose();
  b.dispose();
  noGrad(c.get).dispose();
  assert.is(cache.size, 1, 'cached under noGrad');
  src.requiresGrad = false;
  c.get().dispose();
  assert.is(c.runs(), 3, 'a source that needs no gradient is cached with gradients on');
  cache.dispose();
  src.dispose();
});

test('conv1d with a cache: relaid weights reused, and rebuilt when the weights change', async () => {
  const rt = await getRuntime();
  // k3 s2: taps padded to 4 on the subgroup path, so the forward relays the weights
  const cfg: Cfg = { name: 'k3s2', B: 2, Cin: 24, Cout: 40, T: 53, K: 3, S: 2, P: 0, G: 1, bias: true };
  const xs = randn(cfg.B * cfg.Cin * cfg.T, 1);
  const ws = [randn(cfg.Cout * cfg.Cin * cfg.K, 2, 0.3), randn(cfg.Cout * cfg.Cin * cfg.K, 3, 0.3)];
  const bs = randn(cfg.Cout, 4, 0.1);
  const x = upload(rt, xs, [cfg.B, cfg.Cin, cfg.T]);
  const w = upload(rt, ws[0], [cfg.Cout, cfg.Cin, cfg.K]);
  const b = upload(rt, bs, [cfg.Cout]);
  const cache = new DerivedCache();
  const run = async () => (await noGrad(() => conv1d(x, w, b, { stride: cfg.S, derived: cache })).readFloat());
  const gy = new Float64Array(0);
  for (let round = 0; round < 2; round++) {
    const ref = convReference(cfg, xs, ws[round], bs, gy).y;
    const misses = cache.misses;
    close(await run(), ref, 1e-5, `round ${round}, first call`);
    close(await run(), ref, 1e-5, `round ${round}, second call`);
    assert.is(cache.misses, misses + 1, `round ${round}: relaid once`);
    assert.ok(cache.hits >= 1, 'second call reused them');
    w.write(Float32Array.from(ws[1]));
  }
  cache.dispose();
  for (const t of [x, w, b]) t.dispose();
});

test('a model forward with the cache matches a fresh model after its parameters change', async () => {
  const rt = await getRuntime();
  const config = parseWav2Vec2Config({
    hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 48,
    conv_dim: [16, 16, 16], conv_kernel: [10, 3, 3], conv_stride: [5, 2, 2], conv_bias: true,
    feat_extract_norm: 'layer', do_stable_layer_norm: true, num_conv_pos_embeddings: 8, num_conv_pos_embedding_groups: 4,
    hidden_dropout: 0, attention_dropout: 0, activation_dropout: 0, feat_proj_dropout: 0, final_dropout: 0, layerdrop: 0,
    mask_time_prob: 0, classifier_proj_size: 24, id2label: { 0: 'a', 1: 'b', 2: 'c' },
  });
  const arrays = initWeights(config, { head: 'speech-classification', seed: 1 });
  const audio = upload(rt, randn(2 * 1200, 5), [2, 1200]);
  const logits = async (m: Wav2Vec2ForSpeechClassification) => {
    m.eval();
    const out = noGrad(() => m.forward({ inputValues: audio }));
    if (!out.logits) throw new Error('no logits');
    const v = Array.from(await out.logits.readFloat());
    disposeOutput(out);
    return v;
  };
  const model = Wav2Vec2ForSpeechClassification.fromArrays(rt, config, arrays, { head: 'speech-classification' });
  const first = await logits(model);
  assert.equal(await logits(model), first, 'a cached forward gives the same logits');
  assert.ok(model.encoder instanceof Wav2Vec2Encoder);
  const cached = model.encoder.derived;
  assert.ok(cached.size >= 2, `the positional conv weight and the relaid conv weights are kept (${cached.size})`);

  // change the weight-norm direction and a k3 conv weight in place, as a checkpoint load or optimizer would
  const changed = new Map(arrays);
  for (const name of ['wav2vec2.encoder.pos_conv_embed.conv.weight_v', 'wav2vec2.feature_extractor.conv_layers.1.conv.weight']) {
    const a = arrays.get(name)!;
    const data = Float32Array.from(randn(a.data.length, 9, 0.2));
    changed.set(name, { shape: a.shape, data });
    model.params.get(name)!.write(data);
  }
  const after = await logits(model);
  const fresh = Wav2Vec2ForSpeechClassification.fromArrays(rt, config, changed, { head: 'speech-classification' });
  const expected = await logits(fresh);
  assert.equal(after, expected, 'the cached model follows its parameters');
  assert.ok(after.some((v, i) => v !== first[i]), 'the change reached the logits');

  const before = rt.pool.inUseBytes;
  fresh.dispose();
  model.dispose();
  assert.ok(rt.pool.inUseBytes < before, 'dispose frees the models with their caches');
  assert.is(cached.size, 0);
  audio.dispose();
});

test.run();
