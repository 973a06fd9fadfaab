// The WavLM family: `ser check-reference` against the real Hugging Face WavLMForSequenceClassification (float64
// fixture ../shared/fixtures/wavlm_tiny, stable layout, both weight formats; skipped when ../shared is absent), with the
// bias tensors HF materialises (position_bias, relative_position_bucket) and each layer's gate compared; then the
// family's own rules: WavLMConfig defaults, the state_dict order of the parameters, HF's init of the bias parameters,
// and the base (post-LN) layout end to end: gradient checkpointing gives the same gradients, and finite differences
// of the loss confirm the gradients of rel_attn_embed and of both layers' gate parameters.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime, randn } from './helpers.js';
import { runReferenceCheck, formatTable } from '../src/node/check-reference.js';
import { parseModelConfig, familyOf } from '../src/model/registry.js';
import { SpeechClassifier, parameterShapes, initWeights } from '../src/model/classifier.js';
import { backward, noGrad, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';
import type { Runtime } from '../src/runtime/runtime.js';

const FIXTURE = '../shared/fixtures/wavlm_tiny';
const haveFixture = fs.existsSync(path.join(FIXTURE, 'reference.safetensors'));

for (const weights of ['safetensors', 'bin'] as const) {
  (haveFixture ? test : test.skip)(`wavlm_tiny (${weights}): every fixture tensor incl. position_bias, buckets and gates within the limits`, async () => {
    const rt = await getRuntime();
    const r = await runReferenceCheck(rt, FIXTURE, weights);
    assert.is(r.head, 'sequence-classification');
    const names = new Set(r.tensors.map((x) => x.name));
    const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8'));
    const refNames: string[] = manifest.tensors.map((x: { name: string }) => x.name);
    const inputs = new Set(['input_values', 'attention_mask', 'labels', 'input_lengths', 'frame_lengths', 'frame_mask']);
    // every reference tensor is compared (the inputs excepted), the bias ones included
    for (const n of refNames) if (!inputs.has(n) && !n.startsWith('raw_waveform.')) assert.ok(names.has(n), `${n} compared`);
    for (const n of ['position_bias', 'relative_position_bucket', 'gate.0', 'gate.1', 'grad.wavlm.encoder.layers.0.attention.rel_attn_embed.weight', 'grad.wavlm.encoder.layers.1.attention.gru_rel_pos_const']) {
      assert.ok(names.has(n), `${n} compared`);
    }
    const failed = r.tensors.filter((x) => !x.pass);
    assert.ok(r.ok && failed.length === 0, `${failed.map((x) => `${x.name} rel ${x.rel_l2}`).join('; ')}\n${formatTable(r)}`);
    console.log(`wavlm_tiny/${weights}: worst forward ${r.worst_forward.toExponential(2)} (${r.worst_forward_name}), worst grad ${r.worst_grad.toExponential(2)} (${r.worst_grad_name}), ${r.tensors.length} tensors`);
  });
}

test('WavLMConfig defaults (HF v4.30) and refusals', () => {
  const c = parseModelConfig({ model_type: 'wavlm' }, 'wavlm/config.json');
  assert.is(familyOf(c).name, 'wavlm');
  const fields = c as unknown as Record<string, unknown>;
  const expected: Record<string, unknown> = {
    num_buckets: 320, max_bucket_distance: 800, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
    do_stable_layer_norm: false, feat_extract_norm: 'group', num_conv_pos_embeddings: 128, num_conv_pos_embedding_groups: 16,
    layerdrop: 0.1, attention_dropout: 0.1, mask_time_prob: 0.05, classifier_proj_size: 256,
  };
  for (const [k, v] of Object.entries(expected)) assert.equal(fields[k], v, `default ${k}`);
  assert.throws(() => parseModelConfig({ model_type: 'wavlm', num_buckets: 3 }, 'w.json'), (e: Error) => e.message.includes('w.json') && e.message.includes('num_buckets'));
  // num_buckets 32 -> max_exact 8: a max distance of 8 would make HF divide by log(1)
  assert.throws(() => parseModelConfig({ model_type: 'wavlm', num_buckets: 32, max_bucket_distance: 8 }, 'w.json'), /max_bucket_distance/);
});

(haveFixture ? test : test.skip)('parameter layout: the fixture checkpoint\'s names, shapes and state_dict order', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8'));
  const config = parseModelConfig(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'), 'config.json');
  const ours = [...parameterShapes(config, 'sequence-classification')];
  const theirs: [string, number[]][] = manifest.weights.keys.map((k: { name: string; shape: number[] }) => [k.name, k.shape]);
  assert.equal(ours.map(([n]) => n), theirs.map(([n]) => n));
  assert.equal(ours.map(([, s]) => s), theirs.map(([, s]) => s));
});

/** A small post-LN WavLM (the base layout) with a sequence-classification head. */
function baseConfig() {
  return parseModelConfig({
    model_type: 'wavlm', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 40,
    conv_dim: [16, 16], conv_kernel: [10, 3], conv_stride: [5, 2], num_conv_pos_embeddings: 4, num_conv_pos_embedding_groups: 2,
    num_buckets: 16, max_bucket_distance: 30, do_stable_layer_norm: false, feat_extract_norm: 'group',
    hidden_dropout: 0, attention_dropout: 0, activation_dropout: 0, feat_proj_dropout: 0, layerdrop: 0, final_dropout: 0,
    apply_spec_augment: false, classifier_proj_size: 8, num_labels: 3,
  }, 'base-layout config');
}

test('init: gru_rel_pos_const = 1, rel_attn_embed ~ N(0, 1) in layer 0 only, gru_rel_pos_linear ~ N(0, initializer_range) with zero bias', () => {
  const config = parseModelConfig({ model_type: 'wavlm', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, num_conv_pos_embedding_groups: 4, num_buckets: 320 });
  const w = initWeights(config, { head: 'sequence-classification', seed: 3 });
  for (const l of [0, 1]) {
    assert.ok(w.get(`wavlm.encoder.layers.${l}.attention.gru_rel_pos_const`)!.data.every((x) => x === 1));
    assert.ok(w.get(`wavlm.encoder.layers.${l}.attention.gru_rel_pos_linear.bias`)!.data.every((x) => x === 0));
  }
  assert.not.ok(w.has('wavlm.encoder.layers.1.attention.rel_attn_embed.weight'));
  const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  const embedStd = std(w.get('wavlm.encoder.layers.0.attention.rel_attn_embed.weight')!.data);
  assert.ok(embedStd > 0.9 && embedStd < 1.1, `rel_attn_embed std ${embedStd}`);
  const linearStd = std(w.get('wavlm.encoder.layers.1.attention.gru_rel_pos_linear.weight')!.data);
  assert.ok(linearStd > 0.01 && linearStd < 0.03, `gru_rel_pos_linear std ${linearStd}`);
});

async function lossAndGrads(rt: Runtime, model: SpeechClassifier, input: Tensor, names: string[]): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const out = model.forward({ inputValues: input, inputLengths: [1600, 1100], labels: [2, 0] });
  const loss = (await out.loss!.read())[0];
  backward(out.loss!);
  const grads = new Map<string, Float32Array>();
  for (const n of names) grads.set(n, (await model.params.get(n)!.grad!.read()) as Float32Array);
  for (const t of model.params.values()) {
    t.grad?.dispose();
    t.grad = null;
  }
  for (const t of [out.last_hidden_state, out.pooled, out.logits, out.loss, out.frameMask, ...out.hidden_states]) t?.dispose();
  void rt;
  return { loss, grads };
}

test('base layout end to end: gradient checkpointing changes nothing; finite differences of the loss for E and the gates', async () => {
  const rt = await getRuntime();
  const config = baseConfig();
  const model = SpeechClassifier.random(rt, config, { head: 'sequence-classification', initSeed: 11 });
  model.eval();
  // HF's init (Linear std 0.02) leaves the loss almost blind to the bias: larger projections and gates make the bias
  // terms matter, so that the finite differences below test something
  let seed = 100;
  for (const [name, t] of model.params) {
    if (/(attention\.(q_proj|k_proj|v_proj|out_proj|gru_rel_pos_linear)|feed_forward\.\w+|projector|classifier)\.weight$/.test(name)) {
      t.write(randn(t.size, seed++, 0.4));
    }
  }
  const input = Tensor.fromData(rt, Float32Array.from(randn(2 * 1600, 5)), [2, 1600], 'f32', 'input_values');
  const E = 'wavlm.encoder.layers.0.attention.rel_attn_embed.weight';
  const probed: [string, number[]][] = [
    [E, [3, 12, 30]],
    ['wavlm.encoder.layers.1.attention.gru_rel_pos_const', [0, 1]],
    ['wavlm.encoder.layers.0.attention.gru_rel_pos_linear.weight', [5]],
    ['wavlm.encoder.layers.1.attention.gru_rel_pos_linear.bias', [6]],
  ];
  const names = probed.map(([n]) => n);
  const plain = await lossAndGrads(rt, model, input, names);
  model.encoder.gradientCheckpointing = true;
  const replayed = await lossAndGrads(rt, model, input, names);
  model.encoder.gradientCheckpointing = false;
  assert.is(replayed.loss, plain.loss);
  for (const n of names) assert.ok(plain.grads.get(n)!.every((x, i) => x === replayed.grads.get(n)![i]), `${n}: checkpointing changed the gradient`);
  // E [16 buckets, 2 heads]: bucket nb = 8 is reached by no relative position (delta 0 is bucket 0), so its row gets
  // exactly 0; every other bucket is reached at T = 159 and gets a gradient from both layers
  const gE = plain.grads.get(E)!;
  for (let bucket = 0; bucket < 16; bucket++) {
    for (let h = 0; h < 2; h++) {
      const g = gE[bucket * 2 + h];
      if (bucket === 8) assert.is(g, 0, `bucket 8 head ${h}`);
      else assert.ok(Math.abs(g) > 1e-6, `bucket ${bucket} head ${h} gradient ${g}`);
    }
  }
  const lossAt = async (): Promise<number> => {
    const out = noGrad(() => tidy(() => model.forward({ inputValues: input, inputLengths: [1600, 1100], labels: [2, 0] })));
    const v = (await out.loss!.read())[0];
    for (const t of [out.last_hidden_state, out.pooled, out.logits, out.loss, out.frameMask]) t?.dispose();
    return v;
  };
  for (const [name, indices] of probed) {
    const p = model.params.get(name)!;
    const base = (await p.read()) as Float32Array;
    for (const i of indices) {
      const h = 2e-2;
      const at = async (delta: number) => {
        const v = Float32Array.from(base);
        v[i] += delta;
        p.write(v);
        return lossAt();
      };
      const lossPlus = await at(h);
      const numeric = (lossPlus - (await at(-h))) / (2 * h);
      p.write(base);
      const analytic = plain.grads.get(name)![i];
      const err = Math.abs(numeric - analytic) / Math.max(Math.abs(numeric), Math.abs(analytic), 1e-4);
      assert.ok(Math.abs(analytic) > 1e-4, `${name}[${i}]: gradient ${analytic} too small for the probe to mean anything`);
      if (process.env.WAVLM_FD_PRINT) console.log(name, i, numeric, analytic);
      // the f32 loss is rounded to ~1.2e-7 relative: a central difference cannot resolve gradients better than
      // a few ulps of the loss over 2h, so small gradients are judged against that floor instead of 2%
      const floor = (8 * 1.2e-7 * Math.abs(lossPlus)) / (2 * h);
      assert.ok(err < 2e-2 || Math.abs(numeric - analytic) < floor, `${name}[${i}]: numeric ${numeric.toPrecision(5)} vs analytic ${analytic.toPrecision(5)} (rel err ${err.toExponential(2)}, f32 floor ${floor.toExponential(2)})`);
    }
  }
  input.dispose();
  model.dispose();
});

test.run();
