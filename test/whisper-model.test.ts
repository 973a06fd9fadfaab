// Whisper encoder + WhisperForAudioClassification head against the shared fixture made by the real Hugging Face code
// (float64): input_features from the raw waveforms with our extractor, every activation, the logits and loss within
// 1e-4 relative L2, every gradient within 1e-3, from both weight files. Also: the parameter layout (count and order
// against the manifest), seq2seq key mapping (model.encoder.* loaded, decoder and proj_out skipped with a notice, head
// newly initialised), config parsing, and the input-length rule.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime, relL2 } from './helpers.js';
import { openTensorFile } from '../src/node/modeldir.js';
import type { TensorEntry, TensorSource } from '../src/io/source.js';
import { parseWhisperConfig } from '../src/model/whisper/config.js';
import { WhisperFeatureExtractor } from '../src/model/whisper/features.js';
import { whisperParameterShapes, mapWhisperCheckpointKeys, initWhisperWeights, whisperSinusoids } from '../src/model/whisper/params.js';
import { WhisperForAudioClassification, whisperEncoderFrames } from '../src/model/whisper/model.js';
import { whisperReferenceOutputs } from '../src/model/whisper/reference.js';
import { Tensor } from '../src/tensor.js';
import { backward } from '../src/autograd.js';

const SHARED = '../shared/fixtures/whisper_tiny_cls';
const haveShared = fs.existsSync(path.join(SHARED, 'reference.safetensors'));
const sharedTest = haveShared ? test : test.skip;

async function readF64(e: TensorEntry): Promise<Float64Array> {
  if (e.dtype !== 'F64') return Float64Array.from(await e.read());
  const raw = (await e.readRaw()).slice();
  return new Float64Array(raw.buffer, 0, raw.byteLength / 8);
}

function fixtureConfig() {
  return parseWhisperConfig(fs.readFileSync(path.join(SHARED, 'config.json'), 'utf8'), 'config.json');
}

for (const file of ['model.safetensors', 'pytorch_model.bin']) {
  sharedTest(`fixture (${file}): input_features, activations, logits, loss within 1e-4; every gradient within 1e-3`, async () => {
    const rt = await getRuntime();
    const config = fixtureConfig();
    const fx = WhisperFeatureExtractor.fromJson(fs.readFileSync(path.join(SHARED, 'preprocessor_config.json'), 'utf8'));
    const weights = await openTensorFile(path.join(SHARED, file));
    const ref = await openTensorFile(path.join(SHARED, 'reference.safetensors'));
    try {
      const { tensors } = await whisperReferenceOutputs(rt, config, weights, ref, fx, { checkpoint: file });
      const produced = new Set(tensors.map((t) => t.name));
      const manifest = JSON.parse(fs.readFileSync(path.join(SHARED, 'manifest.json'), 'utf8'));
      const inputs = new Set(['input_lengths', 'labels', 'feature_extractor.window', 'feature_extractor.mel_filters']);
      for (const t of manifest.tensors as { name: string }[]) {
        if (inputs.has(t.name) || t.name.startsWith('raw_waveform.')) continue;
        assert.ok(produced.has(t.name), `${t.name} compared`);
      }
      let worstF = 0;
      let worstG = 0;
      const lines: string[] = [];
      for (const t of tensors) {
        const r = await readF64(ref.entries.get(t.name)!);
        const err = relL2(t.values, r);
        lines.push(`${t.name}: ${err.toExponential(2)}`);
        if (t.kind === 'forward') {
          assert.ok(err <= 1e-4, `${t.name}: rel L2 ${err}`);
          worstF = Math.max(worstF, err);
        } else {
          assert.ok(err <= 1e-3, `${t.name}: rel L2 ${err}`);
          worstG = Math.max(worstG, err);
        }
      }
      console.log(`${file}: worst forward ${worstF.toExponential(2)}, worst grad ${worstG.toExponential(2)} over ${tensors.length} tensors`);
    } finally {
      await weights.close();
      await ref.close();
    }
  });
}

sharedTest('parameter layout: names, shapes and order of the fixture checkpoint (42 tensors, 225992 values)', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(SHARED, 'manifest.json'), 'utf8'));
  const shapes = whisperParameterShapes(fixtureConfig());
  assert.equal([...shapes.keys()], manifest.weights.keys.map((k: { name: string }) => k.name));
  assert.equal([...shapes.values()], manifest.weights.keys.map((k: { shape: number[] }) => k.shape));
  assert.is([...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0), manifest.weights.num_parameters);
});

sharedTest('a seq2seq checkpoint (model.encoder.*, model.decoder.*, proj_out): encoder loaded as HF does, head newly initialised', async () => {
  const rt = await getRuntime();
  const config = fixtureConfig();
  const st = await openTensorFile(path.join(SHARED, 'model.safetensors'));
  try {
    // the fixture's weights renamed as WhisperForConditionalGeneration names them, plus decoder weights
    const entries = new Map<string, TensorEntry>();
    for (const [k, e] of st.entries) if (k.startsWith('encoder.')) entries.set(`model.${k}`, e);
    const dec = st.entries.get('encoder.layers.0.fc1.weight')!;
    entries.set('model.decoder.layers.0.fc1.weight', dec);
    entries.set('model.decoder.embed_tokens.weight', dec);
    entries.set('proj_out.weight', dec);
    const source: TensorSource = { entries, files: ['seq2seq.safetensors'], metadata: {} };
    const { model, report } = await WhisperForAudioClassification.fromSource(rt, config, source, { checkpoint: 'seq2seq.safetensors' });
    try {
      assert.equal(report.newlyInitialized.sort(), ['classifier.bias', 'classifier.weight', 'layer_weights', 'projector.bias', 'projector.weight']);
      assert.equal(report.skipped.map((s) => s.key).sort(), ['model.decoder.embed_tokens.weight', 'model.decoder.layers.0.fc1.weight', 'proj_out.weight']);
      assert.equal(report.unexpected, []);
      assert.ok(report.notices.some((n) => /skipped 2 weight\(s\) of the text decoder/.test(n)));
      assert.ok(report.notices.some((n) => /newly initialized: \[layer_weights/.test(n)));
      const conv1 = await model.params.get('encoder.conv1.weight')!.readFloat();
      assert.equal(conv1, await st.entries.get('encoder.conv1.weight')!.read(), 'encoder weights loaded identically');
      const lw = await model.params.get('layer_weights')!.readFloat();
      assert.equal([...lw], [1 / 3, 1 / 3, 1 / 3].map(Math.fround));
    } finally {
      model.dispose();
    }
    // with the prefix, unprefixed keys are not used (HF prefixes every expected name), and a missing encoder weight is an error
    const m = mapWhisperCheckpointKeys([['model.encoder.conv1.weight', [64, 80, 3]], ['encoder.conv1.bias', [64]]], whisperParameterShapes(config), { checkpoint: 'x.bin' });
    assert.equal(m.unexpected, ['encoder.conv1.bias']);
    assert.ok(m.errors.some((e) => /x\.bin: 36 encoder weight\(s\) missing/.test(e)), m.errors.join('\n'));
    const bad = mapWhisperCheckpointKeys([['encoder.conv1.weight', [64, 80, 5]]], whisperParameterShapes(config), { checkpoint: 'x.bin' });
    assert.ok(bad.errors.some((e) => /shape mismatch for 'encoder\.conv1\.weight'.*\[64, 80, 5\]/.test(e)), bad.errors.join('\n'));
  } finally {
    await st.close();
  }
});

test('config: WhisperConfig defaults, bounds, and the fields refused', () => {
  const c = parseWhisperConfig({}, 'c.json');
  assert.equal(
    [c.num_mel_bins, c.d_model, c.encoder_layers, c.encoder_attention_heads, c.encoder_ffn_dim, c.max_source_positions, c.use_weighted_layer_sum, c.classifier_proj_size, c.num_labels, c.init_std],
    [80, 256, 6, 4, 1536, 1500, false, 256, 2, 0.02],
  );
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ model_type: 'wav2vec2' }, /c\.json: "model_type"/],
    [{ d_model: 1e9 }, /"d_model" must be an integer/],
    [{ d_model: 64, encoder_attention_heads: 5 }, /"encoder_attention_heads" \(5\) must divide d_model/],
    [{ activation_function: 'relu' }, /"activation_function"/],
    [{ encoder_layers: 0 }, /"encoder_layers"/],
    [{ max_source_positions: 1e12 }, /"max_source_positions"/],
    [{ dropout: 2 }, /"dropout"/],
    [{ id2label: { 0: 'a', 5: 'b' } }, /"id2label"/],
    [{ problem_type: 'regression' }, /"problem_type"/],
  ];
  for (const [json, re] of bad) assert.throws(() => parseWhisperConfig(json, 'c.json'), re, JSON.stringify(json));
  assert.is(whisperEncoderFrames(3000), 1500);
  assert.is(whisperEncoderFrames(2999), 1500);
  assert.is(whisperEncoderFrames(2998), 1499);
});

test('init: sinusoidal positions (OpenAI sinusoids), N(0, init_std) weights, LayerNorm 1/0; wrong input lengths refused', async () => {
  const config = parseWhisperConfig({ d_model: 8, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 16, num_mel_bins: 4, max_source_positions: 6, classifier_proj_size: 4, num_labels: 3, use_weighted_layer_sum: true });
  const w = initWhisperWeights(config, { head: 'sequence-classification', seed: 1 });
  const pos = w.get('encoder.embed_positions.weight')!.data;
  // row t: sin(t * 10000^(-i/3)) for i < 4, then the cosines
  assert.ok(Math.abs(pos[2 * 8 + 1] - Math.sin(2 * Math.pow(10000, -1 / 3))) < 1e-6);
  assert.ok(Math.abs(pos[2 * 8 + 4 + 1] - Math.cos(2 * Math.pow(10000, -1 / 3))) < 1e-6);
  assert.equal(whisperSinusoids(1, 4), Float32Array.from([0, 0, 1, 1]));
  assert.ok(w.get('encoder.layer_norm.weight')!.data.every((v) => v === 1));
  assert.ok(w.get('projector.bias')!.data.every((v) => v === 0));
  const fc1 = w.get('encoder.layers.0.fc1.weight')!.data;
  const std = Math.sqrt(fc1.reduce((s, v) => s + v * v, 0) / fc1.length);
  assert.ok(std > 0.01 && std < 0.03, `fc1 std ${std}`);
  const rt = await getRuntime();
  const model = WhisperForAudioClassification.random(rt, config);
  try {
    const x = Tensor.fromData(rt, new Float32Array(2 * 4 * 10), [2, 4, 10], 'f32', 'x');
    assert.throws(() => model.forward({ inputFeatures: x }), /10 input frames give 5 encoder frames, but embed_positions has max_source_positions = 6/);
    x.dispose();
    const y = Tensor.fromData(rt, new Float32Array(2 * 4 * 12).map((_, i) => Math.sin(i)), [2, 4, 12], 'f32', 'y');
    const out = model.forward({ inputFeatures: y, labels: [0, 2] });
    assert.equal(out.logits!.shape, [2, 3]);
    assert.ok(Number.isFinite((await out.loss!.readFloat())[0]));
    for (const t of [out.logits, out.loss, out.pooled, out.last_hidden_state]) t?.dispose();
    y.dispose();
  } finally {
    model.dispose();
  }
});

test('gradient checkpointing gives the same gradients; freezeEncoder leaves only the head trainable (HF freeze_encoder)', async () => {
  const rt = await getRuntime();
  const config = parseWhisperConfig({ d_model: 16, encoder_layers: 2, encoder_attention_heads: 2, encoder_ffn_dim: 32, num_mel_bins: 6, max_source_positions: 9, classifier_proj_size: 8, num_labels: 3, use_weighted_layer_sum: true });
  const grads = async (opts: { gradientCheckpointing?: boolean; freezeEncoder?: boolean }) => {
    const model = WhisperForAudioClassification.random(rt, config, { initSeed: 3, ...opts });
    const x = Tensor.fromData(rt, new Float32Array(2 * 6 * 18).map((_, i) => Math.sin(0.37 * i)), [2, 6, 18], 'f32', 'x');
    try {
      const out = model.forward({ inputFeatures: x, labels: [1, 2] });
      backward(out.loss!);
      const g = new Map<string, Float32Array | null>();
      for (const [name, p] of model.namedParameters()) g.set(name, p.grad ? await p.grad.readFloat() : null);
      for (const t of [out.logits, out.loss, out.pooled, out.last_hidden_state]) t?.dispose();
      return g;
    } finally {
      x.dispose();
      model.dispose();
    }
  };
  const plain = await grads({});
  const ckpt = await grads({ gradientCheckpointing: true });
  for (const [name, g] of plain) {
    assert.ok(g, `${name} has a gradient`);
    assert.ok(relL2(ckpt.get(name)!, g) < 1e-6, `${name} with checkpointing`);
  }
  const frozen = await grads({ freezeEncoder: true });
  for (const [name, g] of frozen) {
    if (name.startsWith('encoder.')) assert.is(g, null, `${name} frozen`);
    else assert.ok(g && relL2(g, plain.get(name)!) < 1e-6, `${name} trains, same gradient`);
  }
});

test.run();
