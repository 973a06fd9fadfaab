// Wav2Vec2 model: HF length/mask semantics, SpecAugment masks, HF-style init, padding invariance, pooling, both layouts
// and heads, finite differences through the whole model, and the memory effect of gradient checkpointing and of
// freezing the feature encoder. Numerical agreement with Hugging Face itself is test/check-reference.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, close, finiteDifference } from './helpers.js';
import { Tensor } from '../src/tensor.js';
import { backward, manualSeed, noGrad, tidy } from '../src/autograd.js';
import { parseWav2Vec2Config, type Wav2Vec2Config } from '../src/model/wav2vec2/config.js';
import {
  convOutputLength,
  receptiveField,
  frameMaskFromSampleLengths,
  frameMaskFromFrameLengths,
} from '../src/model/wav2vec2/encoder.js';
import { Wav2Vec2ForSpeechClassification, disposeOutput, parameterSpecs, initWeights as initWav2Vec2Weights, type ClassifierOptions as Wav2Vec2Options } from '../src/model/classifier.js';
import { computeMaskIndices, seededRandom } from '../src/model/specaugment.js';

const XLSR_CONV = { conv_kernel: [10, 3, 3, 3, 3, 2, 2], conv_stride: [5, 2, 2, 2, 2, 2, 2] };

/** A small config; `over` overrides HF field names. */
function tinyConfig(over: Record<string, unknown> = {}): Wav2Vec2Config {
  return parseWav2Vec2Config({
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 48,
    conv_dim: [16, 16, 16, 16, 16, 16, 16],
    ...XLSR_CONV,
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
    classifier_proj_size: 24,
    id2label: { 0: 'a', 1: 'b', 2: 'c' },
    ...over,
  });
}

/** Random weights with non-trivial norms / biases (HF's init leaves LayerNorms at identity and biases at 0). */
function randomModel(rt: Awaited<ReturnType<typeof getRuntime>>, config: Wav2Vec2Config, opts: Wav2Vec2Options & { seed?: number } = {}): Wav2Vec2ForSpeechClassification {
  const head = opts.head ?? 'speech-classification';
  const arrays = initWav2Vec2Weights(config, { head, seed: opts.seed ?? 1 });
  let k = 0;
  for (const [name, a] of arrays) {
    if (/(layer_norm|final_layer_norm)\.weight$/.test(name)) a.data.set(Array.from(randn(a.data.length, 100 + k++, 0.2), (v) => 1 + v));
    else if (name.endsWith('.bias')) a.data.set(randn(a.data.length, 100 + k++, 0.1));
    else if (/(q_proj|k_proj)\.weight$/.test(name)) a.data.set(randn(a.data.length, 100 + k++, 0.15));
  }
  return Wav2Vec2ForSpeechClassification.fromArrays(rt, config, arrays, { ...opts, head });
}

function waveform(n: number, seed: number): Float64Array {
  return randn(n, seed, 0.5);
}

/** Right-pad clips into [B, S] with the sample mask, as Wav2Vec2FeatureExtractor does. */
function padBatch(rt: Awaited<ReturnType<typeof getRuntime>>, clips: Float64Array[]): { input: Tensor; mask: Int32Array; S: number } {
  const S = Math.max(...clips.map((c) => c.length));
  const data = new Float32Array(clips.length * S);
  const mask = new Int32Array(clips.length * S);
  clips.forEach((c, b) => {
    data.set(c, b * S);
    mask.fill(1, b * S, b * S + c.length);
  });
  return { input: Tensor.fromData(rt, data, [clips.length, S], 'f32', 'input_values'), mask, S };
}

// ---------------------------------------------------------------------------------------------------------------
// CPU-side semantics

test('conv lengths: 400-sample receptive field, fixture frame counts, HF mask indexing quirk for too-short items', () => {
  assert.is(receptiveField(XLSR_CONV), 400);
  assert.is(convOutputLength(XLSR_CONV, 400), 1);
  assert.is(convOutputLength(XLSR_CONV, 399), 0);
  assert.equal([16000, 12000, 9000].map((n) => convOutputLength(XLSR_CONV, n)), [49, 37, 27]); // manifest batch
  const { mask, frameLengths } = frameMaskFromSampleLengths(XLSR_CONV, [16000, 12000, 400], 49);
  assert.equal(frameLengths, [49, 37, 1]);
  assert.is(mask.slice(49, 98).reduce((a, b) => a + b, 0), 37);
  assert.is(mask[49 + 36], 1);
  assert.is(mask[49 + 37], 0);
  // HF sets mask[b, L - 1]; L = 0 indexes the last frame (Python), so every frame counts as valid
  const quirk = frameMaskFromFrameLengths([0, -1], 5);
  assert.equal(Array.from(quirk.mask), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  assert.equal(quirk.frameLengths, [5, 4]);
});

test('SpecAugment masks: span structure, counts, valid-frame bounds, seeded reproducibility', () => {
  const B = 3;
  const L = 120;
  const lengths = [120, 80, 33];
  const opts = { maskProb: 0.3, maskLength: 10, minMasks: 2, lengths };
  const m1 = computeMaskIndices(B, L, { ...opts, random: seededRandom(5) });
  const m2 = computeMaskIndices(B, L, { ...opts, random: seededRandom(5) });
  assert.equal(Array.from(m1), Array.from(m2), 'same seed, same mask');
  const m3 = computeMaskIndices(B, L, { ...opts, random: seededRandom(6) });
  assert.not.equal(Array.from(m1), Array.from(m3), 'another seed, another mask');
  for (let b = 0; b < B; b++) {
    const row = m1.subarray(b * L, (b + 1) * L);
    // spans start inside [0, len - maskLength], so nothing beyond the item's valid frames is masked
    for (let t = lengths[b]; t < L; t++) assert.is(row[t], 0, `item ${b} frame ${t} is padding`);
    // every masked run is made of whole spans: length >= maskLength
    let run = 0;
    for (let t = 0; t <= L; t++) {
      if (t < L && row[t]) run++;
      else {
        if (run) assert.ok(run >= 10, `item ${b}: masked run of ${run} < span length`);
        run = 0;
      }
    }
    const masked = row.reduce((a, v) => a + v, 0);
    const spansMax = Math.max(2, Math.floor(0.3 * lengths[b] / 10 + 1));
    assert.ok(masked >= 10 && masked <= spansMax * 10, `item ${b}: ${masked} masked frames`);
  }
  // feature masks (no lengths), and the HF errors
  const f = computeMaskIndices(2, 64, { maskProb: 0.5, maskLength: 8, random: seededRandom(1) });
  assert.ok(f.reduce((a, v) => a + v, 0) > 0);
  assert.throws(() => computeMaskIndices(1, 5, { maskProb: 0.5, maskLength: 10, random: seededRandom(1) }), /mask_length/);
  // maskProb 0 and no minimum: nothing masked
  assert.is(computeMaskIndices(2, 50, { maskProb: 0, maskLength: 10, random: seededRandom(1) }).reduce((a, v) => a + v, 0), 0);
});

test('init follows HF _init_weights: distributions per module kind, weight-norm g = ||v||', () => {
  const cfg = tinyConfig({ hidden_size: 64, intermediate_size: 128, mask_time_prob: 0.05, use_weighted_layer_sum: true });
  const w = initWav2Vec2Weights(cfg, { head: 'sequence-classification', seed: 3 });
  assert.equal([...w.keys()], parameterSpecs(cfg, 'sequence-classification').map((s) => s.name));
  const stats = (name: string) => {
    const d = w.get(name)!.data;
    let s = 0;
    let s2 = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of d) {
      s += v;
      s2 += v * v;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const mean = s / d.length;
    return { mean, std: Math.sqrt(s2 / d.length - mean * mean), lo, hi };
  };
  const near = (x: number, want: number, tol: number, what: string) => assert.ok(Math.abs(x - want) <= tol, `${what}: ${x} vs ${want}`);
  near(stats('wav2vec2.encoder.layers.0.attention.q_proj.weight').std, 0.02, 0.002, 'linear std');
  assert.is(stats('wav2vec2.encoder.layers.1.feed_forward.output_dense.bias').hi, 0);
  const ln = stats('wav2vec2.encoder.layers.1.final_layer_norm.weight');
  assert.ok(ln.lo === 1 && ln.hi === 1, 'LayerNorm weight 1');
  near(stats('wav2vec2.feature_extractor.conv_layers.1.conv.weight').std, Math.sqrt(2 / (16 * 3)), 0.02, 'kaiming normal');
  const cb = stats('wav2vec2.feature_extractor.conv_layers.1.conv.bias');
  assert.ok(cb.hi <= Math.sqrt(1 / 48) && cb.lo >= -Math.sqrt(1 / 48), 'conv bias bound');
  const pb = stats('wav2vec2.feature_projection.projection.weight');
  assert.ok(pb.hi <= 0.25 && pb.lo >= -0.25, 'projection U(-1/sqrt(16), 1/sqrt(16))');
  const ms = stats('wav2vec2.masked_spec_embed');
  assert.ok(ms.lo >= 0 && ms.hi < 1, 'masked_spec_embed U[0,1)');
  assert.equal(Array.from(w.get('layer_weights')!.data), new Array(3).fill(Math.fround(1 / 3)));
  const v = w.get('wav2vec2.encoder.pos_conv_embed.conv.weight_v')!;
  const g = w.get('wav2vec2.encoder.pos_conv_embed.conv.weight_g')!.data;
  const K = v.shape[2];
  for (let k = 0; k < K; k++) {
    let n = 0;
    for (let i = k; i < v.data.length; i += K) n += v.data[i] * v.data[i];
    near(g[k], Math.sqrt(n), 1e-5 * Math.sqrt(n), `g[${k}]`);
  }
  assert.is(stats('wav2vec2.encoder.pos_conv_embed.conv.bias').hi, 0);
});

// ---------------------------------------------------------------------------------------------------------------
// GPU: semantics of the forward

// With 'layer' feature-encoder norm, padding is invisible to valid frames in both encoder layouts. (With 'group' norm,
// as in wav2vec2-base, GroupNorm's statistics run over the whole padded time axis, so padding changes every frame:
// HF behaves the same, which is why those models are used without an attention mask; w2v_base checks that.)
for (const layout of ['stable (XLSR)', 'post-LN (base encoder)'] as const) {
  test(`${layout} layout: a padded batch gives each item's unpadded valid frames and masked-mean logits`, async () => {
    const rt = await getRuntime();
    const over = layout === 'stable (XLSR)' ? {} : { do_stable_layer_norm: false, conv_bias: false };
    const config = tinyConfig(over);
    const model = randomModel(rt, config, { seed: 11 });
    const clips = [waveform(4000, 1), waveform(2999, 2), waveform(1700, 3)];
    const { input, mask } = padBatch(rt, clips);
    const batched = noGrad(() => model.forward({ inputValues: input, attentionMask: mask }));
    const maskedHead = noGrad(() => model.classify(batched.last_hidden_state, [], batched.frameMask, { poolExcludePadding: true }));
    const T = batched.frames;
    const H = 32;
    const last = await batched.last_hidden_state.readFloat();
    const maskedLogits = await maskedHead.logits.readFloat();
    const plainLogits = await batched.logits!.readFloat();
    assert.equal(batched.frameLengths, clips.map((c) => convOutputLength(config, c.length)));
    for (let b = 0; b < clips.length; b++) {
      const single = tidy(() => {
        const x = Tensor.fromData(rt, Float32Array.from(clips[b]), [1, clips[b].length], 'f32', 'single');
        return noGrad(() => model.forward({ inputValues: x }));
      });
      const n = single.frames;
      assert.is(n, batched.frameLengths[b]);
      const alone = await single.last_hidden_state.readFloat();
      close(last.subarray(b * T * H, b * T * H + n * H), alone, 2e-5, `item ${b} valid frames`);
      const aloneLogits = await single.logits!.readFloat();
      close(maskedLogits.subarray(b * 3, b * 3 + 3), aloneLogits, 2e-5, `item ${b} masked-mean logits`);
      if (n < T) {
        // the notebook's plain mean includes padded frames, whose hidden states are not zero
        const diff = Math.max(...Array.from(aloneLogits, (v, i) => Math.abs(v - plainLogits[b * 3 + i])));
        assert.ok(diff > 1e-4, `item ${b}: plain-mean logits should depend on padding (diff ${diff})`);
      }
      disposeOutput(single);
    }
    disposeOutput(batched);
    disposeOutput(maskedHead);
    input.dispose();
    model.dispose();
  });
}

test('pooling modes (mean / sum / max, plain and masked) match a CPU pooling of last_hidden_state', async () => {
  const rt = await getRuntime();
  const model = randomModel(rt, tinyConfig(), { seed: 4 });
  const clips = [waveform(3000, 7), waveform(2200, 8)];
  const { input, mask } = padBatch(rt, clips);
  const out = noGrad(() => model.forward({ inputValues: input, attentionMask: mask }, { encoderOnly: true }));
  const last = await out.last_hidden_state.readFloat();
  const T = out.frames;
  const H = 32;
  for (const mode of ['mean', 'sum', 'max'] as const) {
    for (const exclude of [false, true]) {
      const head = noGrad(() => model.classify(out.last_hidden_state, [], out.frameMask, { pooling: mode, poolExcludePadding: exclude }));
      const got = await head.pooled.readFloat();
      const ref = new Float64Array(2 * H);
      for (let b = 0; b < 2; b++) {
        const n = exclude ? out.frameLengths[b] : T;
        for (let c = 0; c < H; c++) {
          let acc = mode === 'max' ? -Infinity : 0;
          for (let t = 0; t < n; t++) {
            const v = last[(b * T + t) * H + c];
            acc = mode === 'max' ? Math.max(acc, v) : acc + v;
          }
          ref[b * H + c] = mode === 'mean' ? acc / n : acc;
        }
      }
      close(got, ref, 1e-5, `${mode} pooling${exclude ? ' (valid frames)' : ''}`);
      disposeOutput(head);
    }
  }
  disposeOutput(out);
  input.dispose();
  model.dispose();
});

test('inputs shorter than the 400-sample receptive field are refused with a clear error', async () => {
  const rt = await getRuntime();
  const model = randomModel(rt, tinyConfig());
  const x = Tensor.fromData(rt, new Float32Array(399), [1, 399], 'f32', 'short');
  assert.throws(() => noGrad(() => model.forward({ inputValues: x })), /receptive field \(400 samples\)/);
  const ok = Tensor.fromData(rt, Float32Array.from(waveform(400, 9)), [1, 400], 'f32', 'minimal');
  const out = noGrad(() => model.forward({ inputValues: ok }));
  assert.is(out.frames, 1);
  assert.ok(Array.from(await out.logits!.readFloat()).every(Number.isFinite));
  disposeOutput(out);
  x.dispose();
  ok.dispose();
  model.dispose();
});

// ---------------------------------------------------------------------------------------------------------------
// GPU: gradients

/** loss as a function of one parameter's values, for finite differences */
async function lossWith(model: Wav2Vec2ForSpeechClassification, name: string, values: Float64Array, batch: () => Parameters<Wav2Vec2ForSpeechClassification['forward']>[0]): Promise<number> {
  const p = model.params.get(name)!;
  const saved = await p.readFloat();
  p.write(Float32Array.from(values));
  const out = noGrad(() => model.forward(batch()));
  const loss = (await out.loss!.readFloat())[0];
  disposeOutput(out);
  p.write(saved);
  return loss;
}

test('base layout + HF sequence-classification head (weighted layer sum): finite differences through the whole model', async () => {
  const rt = await getRuntime();
  const cfg = tinyConfig({ feat_extract_norm: 'group', do_stable_layer_norm: false, conv_bias: false, use_weighted_layer_sum: true, hidden_size: 16, intermediate_size: 24, num_attention_heads: 2 });
  const model = randomModel(rt, cfg, { head: 'sequence-classification', seed: 21 });
  assert.is(model.head, 'sequence-classification');
  assert.is(model.poolExcludePadding, true, 'HF head pools valid frames');
  // non-uniform layer weights so every hidden state matters
  model.params.get('layer_weights')!.write([0.3, -0.2, 0.5]);
  const clips = [waveform(2400, 31), waveform(1500, 32)];
  const { input, mask } = padBatch(rt, clips);
  const batch = () => ({ inputValues: input, attentionMask: mask, labels: [2, 0] });
  const out = model.forward(batch());
  backward(out.loss!);
  const probes: [string, number[]][] = [
    ['layer_weights', [0, 1, 2]],
    ['wav2vec2.encoder.pos_conv_embed.conv.weight_g', [1, 6]],
    ['wav2vec2.encoder.layers.0.attention.q_proj.weight', [5, 200]],
    ['wav2vec2.encoder.layers.1.feed_forward.intermediate_dense.bias', [3]],
    ['wav2vec2.feature_projection.layer_norm.weight', [2]],
    ['projector.weight', [17]],
    ['wav2vec2.encoder.layer_norm.bias', [9]],
  ];
  for (const [name, indices] of probes) {
    const p = model.params.get(name)!;
    assert.ok(p.grad, `${name} has a gradient`);
    const x = Float64Array.from(await p.readFloat());
    await finiteDifference({
      what: name,
      x,
      w: [1],
      analytic: await p.grad!.readFloat(),
      indices,
      h: 1e-2,
      tol: 3e-2,
      forward: async (xs) => [await lossWith(model, name, xs, batch)],
    });
  }
  // the frozen feature encoder gets none
  assert.is(model.params.get('wav2vec2.feature_extractor.conv_layers.0.conv.weight')!.grad, null);
  disposeOutput(out);
  input.dispose();
  model.dispose();
});

async function peakOfStep(rt: Awaited<ReturnType<typeof getRuntime>>, model: Wav2Vec2ForSpeechClassification, input: Tensor, mask: Int32Array, labels: number[]): Promise<{ peak: number; grads: Map<string, Float32Array>; loss: number }> {
  for (const t of model.params.values()) {
    t.grad?.dispose();
    t.grad = null;
  }
  await rt.sync();
  rt.pool.resetPeak();
  manualSeed(77);
  model.seed(5);
  const out = model.forward({ inputValues: input, attentionMask: mask, labels });
  const loss = (await out.loss!.readFloat())[0];
  backward(out.loss!);
  disposeOutput(out);
  await rt.sync();
  const peak = rt.pool.peakBytes;
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of model.params) if (t.grad) grads.set(name, await t.grad.readFloat());
  return { peak, grads, loss };
}

test('gradient checkpointing: same gradients (dropout + SpecAugment replayed) and a lower peak; freezing the feature encoder lowers it too', async () => {
  const rt = await getRuntime();
  const cfg = tinyConfig({
    hidden_size: 64,
    intermediate_size: 256,
    num_hidden_layers: 6,
    num_attention_heads: 4,
    hidden_dropout: 0.1,
    activation_dropout: 0.1,
    mask_time_prob: 0.2,
    mask_time_length: 4,
    mask_time_min_masks: 1,
  });
  const model = randomModel(rt, cfg, { seed: 8 });
  model.train();
  const clips = [waveform(16000, 41), waveform(12000, 42)];
  const { input, mask } = padBatch(rt, clips);
  const labels = [1, 2];

  model.gradientCheckpointing = false;
  const plain = await peakOfStep(rt, model, input, mask, labels);
  model.gradientCheckpointing = true;
  const ckpt = await peakOfStep(rt, model, input, mask, labels);
  assert.is(ckpt.loss, plain.loss, 'same loss');
  assert.is(ckpt.grads.size, plain.grads.size);
  assert.ok(plain.grads.has('wav2vec2.masked_spec_embed'), 'SpecAugment ran (masked_spec_embed has a gradient)');
  for (const [name, g] of plain.grads) close(ckpt.grads.get(name)!, g, 1e-6, `checkpointed grad ${name}`);
  assert.ok(ckpt.peak < plain.peak, `checkpointed peak ${ckpt.peak} < plain ${plain.peak}`);

  model.gradientCheckpointing = false;
  model.freezeFeatureEncoder = false;
  const unfrozen = await peakOfStep(rt, model, input, mask, labels);
  assert.ok(unfrozen.grads.has('wav2vec2.feature_extractor.conv_layers.0.conv.weight'), 'unfrozen encoder gets gradients');
  assert.ok(plain.peak < unfrozen.peak, `frozen peak ${plain.peak} < unfrozen ${unfrozen.peak}`);
  for (const [name, g] of plain.grads) close(unfrozen.grads.get(name)!, g, 1e-6, `unfrozen run, grad ${name}`);
  console.log(`peak bytes: plain ${plain.peak}, checkpointed ${ckpt.peak}, feature encoder unfrozen ${unfrozen.peak}`);

  // lower layers frozen (as with --unfreeze-top): checkpointing skips them and the trained layers' gradients agree
  model.freezeFeatureEncoder = true;
  for (const [name, t] of model.namedParameters()) if (/^wav2vec2\.(masked_spec_embed$|feature_projection\.|encoder\.(pos_conv_embed|layers\.[0-2])\.)/.test(name)) t.requiresGrad = false;
  const partPlain = await peakOfStep(rt, model, input, mask, labels);
  model.gradientCheckpointing = true;
  const partCkpt = await peakOfStep(rt, model, input, mask, labels);
  assert.ok(!partPlain.grads.has('wav2vec2.encoder.layers.0.attention.q_proj.weight') && !partPlain.grads.has('wav2vec2.masked_spec_embed'));
  assert.ok(partPlain.grads.has('wav2vec2.encoder.layers.4.attention.q_proj.weight'));
  assert.is(partCkpt.grads.size, partPlain.grads.size);
  for (const [name, g] of partPlain.grads) close(partCkpt.grads.get(name)!, g, 1e-6, `top layers only, checkpointed grad ${name}`);
  input.dispose();
  model.dispose();
});

test.run();
