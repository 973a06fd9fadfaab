// The Whisper family behind the registry: parameter layout and order against the fixture's manifest, checkpoint keys
// (a seq2seq checkpoint's model.encoder.* loaded, its decoder and proj_out skipped with a notice, the head newly
// initialised; a WhisperEncoder saved alone), config parsing with WhisperConfig's defaults, HF's init, the input rules
// (3000 frames for 1500 positions, no mask), gradient checkpointing, freezing, the softmax(layer_weights) the
// weighted sum uses, and the preprocessor. `ser check-reference` itself is in check-reference-whisper.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime, relL2 } from './helpers.js';
import { openTensorFile } from '../src/node/modeldir.js';
import type { TensorEntry, TensorSource } from '../src/io/source.js';
import { mapCheckpointKeys } from '../src/io/statedict.js';
import { parseModelConfig, familyOf } from '../src/model/registry.js';
import { SpeechClassifier, parameterShapes, initWeights, disposeOutput } from '../src/model/classifier.js';
import type { WhisperConfig } from '../src/model/whisper/config.js';
import { whisperEncoderShapes, whisperKeyRules } from '../src/model/whisper/params.js';
import { whisperEncoderFrames } from '../src/model/whisper/encoder.js';
import { WhisperPreprocessor } from '../src/model/whisper/preprocess.js';
import { Tensor } from '../src/tensor.js';
import { backward, tidy } from '../src/autograd.js';
import { AdamW } from '../src/ops/optim.js';

const SHARED = '../shared/fixtures/whisper_tiny_cls';
const haveShared = fs.existsSync(path.join(SHARED, 'reference.safetensors'));
const sharedTest = haveShared ? test : test.skip;

const fixtureConfig = () => parseModelConfig(fs.readFileSync(path.join(SHARED, 'config.json'), 'utf8'), 'config.json') as WhisperConfig;
const tiny = (extra: Record<string, unknown> = {}) =>
  parseModelConfig({ model_type: 'whisper', d_model: 16, encoder_layers: 2, encoder_attention_heads: 2, encoder_ffn_dim: 32, num_mel_bins: 6, max_source_positions: 9, classifier_proj_size: 8, num_labels: 3, use_weighted_layer_sum: true, ...extra }) as WhisperConfig;

async function readF64(e: TensorEntry): Promise<Float64Array> {
  if (e.dtype !== 'F64') return Float64Array.from(await e.read());
  const raw = (await e.readRaw()).slice();
  return new Float64Array(raw.buffer, 0, raw.byteLength / 8);
}

sharedTest('parameter layout: names, shapes and order of the fixture checkpoint (42 tensors, 225992 values)', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(SHARED, 'manifest.json'), 'utf8'));
  const config = fixtureConfig();
  assert.is(familyOf(config).name, 'whisper');
  const shapes = parameterShapes(config, 'sequence-classification');
  assert.equal([...shapes.keys()], manifest.weights.keys.map((k: { name: string }) => k.name));
  assert.equal([...shapes.values()], manifest.weights.keys.map((k: { shape: number[] }) => k.shape));
  assert.is([...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0), manifest.weights.num_parameters);
});

sharedTest('fixture weights: softmax(layer_weights), the weighted sum\'s weights, equals the reference', async () => {
  const rt = await getRuntime();
  const st = await openTensorFile(path.join(SHARED, 'model.safetensors'));
  const ref = await openTensorFile(path.join(SHARED, 'reference.safetensors'));
  try {
    const { model } = await SpeechClassifier.fromSource(rt, fixtureConfig(), st);
    try {
      const w = await model.params.get('layer_weights')!.readFloat();
      const m = Math.max(...w);
      const e = [...w].map((v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      const err = relL2(e.map((v) => v / s), await readF64(ref.entries.get('layer_weights_softmax')!));
      assert.ok(err < 1e-6, `rel ${err}`);
    } finally {
      model.dispose();
    }
  } finally {
    await st.close();
    await ref.close();
  }
});

sharedTest('a seq2seq checkpoint (model.encoder.*, model.decoder.*, proj_out): encoder loaded as HF does, head newly initialised', async () => {
  const rt = await getRuntime();
  const config = fixtureConfig();
  const st = await openTensorFile(path.join(SHARED, 'model.safetensors'));
  try {
    // the fixture's encoder renamed as WhisperForConditionalGeneration names it, plus decoder weights
    const entries = new Map<string, TensorEntry>();
    for (const [k, e] of st.entries) if (k.startsWith('encoder.')) entries.set(`model.${k}`, e);
    const any = st.entries.get('encoder.layers.0.fc1.weight')!;
    for (const k of ['model.decoder.layers.0.fc1.weight', 'model.decoder.embed_tokens.weight', 'proj_out.weight']) entries.set(k, any);
    const source: TensorSource = { entries, files: ['seq2seq.safetensors'], metadata: {} };
    const { model, report } = await SpeechClassifier.fromSource(rt, config, source, { checkpoint: 'seq2seq.safetensors', head: 'sequence-classification' });
    try {
      assert.equal([...report.newlyInitialized].sort(), ['classifier.bias', 'classifier.weight', 'layer_weights', 'projector.bias', 'projector.weight']);
      assert.equal(report.skipped.map((s) => s.key).sort(), ['model.decoder.embed_tokens.weight', 'model.decoder.layers.0.fc1.weight', 'proj_out.weight']);
      assert.equal(report.unexpected, []);
      assert.ok(report.notices.some((n) => /skipped 2 weight\(s\) of the text decoder/.test(n)), report.notices.join('\n'));
      assert.ok(report.notices.some((n) => /WhisperForAudioClassification were not initialized .*newly initialized: \[layer_weights/.test(n)), report.notices.join('\n'));
      for (const k of ['encoder.conv1.weight', 'encoder.embed_positions.weight', 'encoder.layers.1.self_attn.k_proj.weight', 'encoder.layer_norm.bias']) {
        assert.equal(await model.params.get(k)!.readFloat(), await st.entries.get(k)!.read(), `${k} loaded identically`);
      }
      assert.equal([...(await model.params.get('layer_weights')!.readFloat())], [1 / 3, 1 / 3, 1 / 3].map(Math.fround));
    } finally {
      model.dispose();
    }
  } finally {
    await st.close();
  }
});

test('key rules: a WhisperEncoder saved alone (conv1.*, layers.*) maps; layers beyond the config are skipped; missing encoder weights are errors', () => {
  const config = tiny({ encoder_layers: 1 });
  const expected = whisperEncoderShapes(config);
  const bare = [...expected].map(([k, s]) => [k.slice('encoder.'.length), s] as const);
  bare.push(['layers.1.fc1.weight', [32, 16]]);
  const m = mapCheckpointKeys(bare, expected, { rules: whisperKeyRules(config), checkpoint: 'enc.bin' });
  assert.equal(m.errors, []);
  assert.is(m.mapping.size, expected.size);
  assert.equal(m.skipped.map((s) => s.key), ['layers.1.fc1.weight']);
  const partial = mapCheckpointKeys([['model.encoder.conv1.weight', [16, 6, 3]]], expected, { rules: whisperKeyRules(config), checkpoint: 'x.bin' });
  assert.is(partial.mapping.get('encoder.conv1.weight'), 'model.encoder.conv1.weight');
  assert.ok(partial.errors.some((e) => /x\.bin: \d+ encoder weight\(s\) missing/.test(e)), partial.errors.join('\n'));
});

test('config: WhisperConfig defaults through the registry, bounds, and the fields refused', () => {
  const c = parseModelConfig({ model_type: 'whisper' }, 'c.json') as WhisperConfig;
  assert.equal(
    [c.num_mel_bins, c.d_model, c.hidden_size, c.encoder_layers, c.num_hidden_layers, c.encoder_attention_heads, c.encoder_ffn_dim, c.max_source_positions, c.use_weighted_layer_sum, c.classifier_proj_size, c.num_labels, c.init_std, c.initializer_range, c.final_dropout],
    [80, 256, 256, 6, 6, 4, 1536, 1500, false, 256, 2, 0.02, 0.02, 0],
  );
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ d_model: 1e9 }, /c\.json: "d_model" is 1000000000; the largest supported value/],
    [{ d_model: 64, encoder_attention_heads: 5 }, /"encoder_attention_heads" \(5\) must divide d_model/],
    [{ activation_function: 'relu' }, /"activation_function"/],
    [{ encoder_layers: 0 }, /"encoder_layers"/],
    [{ max_source_positions: 1e12 }, /"max_source_positions"/],
    [{ num_mel_bins: 4096 }, /"num_mel_bins"/],
    [{ dropout: 2 }, /"dropout"/],
    [{ init_std: 1e6 }, /"init_std"/],
    [{ id2label: { 0: 'a', 5: 'b' } }, /"id2label"/],
  ];
  for (const [json, re] of bad) assert.throws(() => parseModelConfig({ model_type: 'whisper', ...json }, 'c.json'), re, JSON.stringify(json));
  assert.is(whisperEncoderFrames(3000), 1500);
  assert.is(whisperEncoderFrames(2999), 1500);
  assert.is(whisperEncoderFrames(2998), 1499);
});

test('init: HF v4.30 rules (N(0, init_std) for linear, conv and embed_positions; LayerNorm 1/0; layer_weights 1/(L+1))', () => {
  const config = tiny({ init_std: 0.05, max_source_positions: 300 });
  const w = initWeights(config, { head: 'sequence-classification', seed: 1 });
  const std = (name: string) => {
    const d = w.get(name)!.data;
    return Math.sqrt(d.reduce((s, v) => s + v * v, 0) / d.length);
  };
  for (const n of ['encoder.embed_positions.weight', 'encoder.conv1.weight', 'encoder.layers.0.fc1.weight']) assert.ok(Math.abs(std(n) - 0.05) < 0.01, `${n} std ${std(n)}`);
  assert.ok(w.get('encoder.layers.1.self_attn_layer_norm.weight')!.data.every((v) => v === 1));
  assert.ok(w.get('encoder.conv2.bias')!.data.every((v) => v === 0));
  assert.equal([...w.get('layer_weights')!.data], [1 / 3, 1 / 3, 1 / 3].map(Math.fround));
});

test('input rules: the frame count must give max_source_positions; masks and lengths are refused; the head pools all frames', async () => {
  const rt = await getRuntime();
  const model = SpeechClassifier.random(rt, tiny(), { head: 'sequence-classification' });
  try {
    const x = Tensor.fromData(rt, new Float32Array(2 * 6 * 16), [2, 6, 16], 'f32', 'x');
    assert.throws(() => model.forward({ inputValues: x }), /16 input frames give 8 encoder frames, but embed_positions has max_source_positions = 9/);
    x.dispose();
    const y = Tensor.fromData(rt, new Float32Array(2 * 6 * 18).map((_, i) => Math.sin(i)), [2, 6, 18], 'f32', 'y');
    assert.throws(() => model.forward({ inputValues: y, inputLengths: [18, 10] }), /takes no attention mask/);
    const out = model.eval().forward({ inputValues: y, labels: [0, 2] });
    assert.equal(out.logits!.shape, [2, 3]);
    assert.is(out.frameMask, null);
    assert.ok(Number.isFinite((await out.loss!.readFloat())[0]));
    disposeOutput(out);
    y.dispose();
  } finally {
    model.dispose();
  }
});

test('gradient checkpointing gives the same gradients; freezeFeatureEncoder freezes conv1/conv2 only', async () => {
  const rt = await getRuntime();
  const config = tiny();
  const grads = async (opts: { gradientCheckpointing?: boolean; freezeFeatureEncoder?: boolean }) => {
    const model = SpeechClassifier.random(rt, config, { head: 'sequence-classification', initSeed: 3, ...opts });
    const x = Tensor.fromData(rt, new Float32Array(2 * 6 * 18).map((_, i) => Math.sin(0.37 * i)), [2, 6, 18], 'f32', 'x');
    try {
      const out = model.train().forward({ inputValues: x, labels: [1, 2] });
      backward(out.loss!);
      const g = new Map<string, Float32Array | null>();
      for (const [name, p] of model.namedParameters()) g.set(name, p.grad ? await p.grad.readFloat() : null);
      disposeOutput(out);
      return g;
    } finally {
      x.dispose();
      model.dispose();
    }
  };
  const plain = await grads({ freezeFeatureEncoder: false });
  const ckpt = await grads({ freezeFeatureEncoder: false, gradientCheckpointing: true });
  for (const [name, g] of plain) {
    assert.ok(g, `${name} has a gradient`);
    assert.ok(relL2(ckpt.get(name)!, g) < 1e-6, `${name} with checkpointing`);
  }
  const frozen = await grads({ freezeFeatureEncoder: true });
  for (const [name, g] of frozen) {
    if (/^encoder\.conv[12]\./.test(name)) assert.is(g, null, `${name} frozen`);
    else assert.ok(g && relL2(g, plain.get(name)!) < 1e-6, `${name} trains, same gradient`);
  }
});

test('preprocessor: clips -> [B, 80, 3000] log-mel with no mask; preprocessor_config.json written back as HF names it', () => {
  const pp = WhisperPreprocessor.parse({ feature_size: 80, chunk_length: 30, some_field: 'kept' }, 'p.json');
  assert.is(pp.samplingRate, 16000);
  const r = pp.prepare([new Float32Array(1600).fill(0.1), new Float32Array(20)]);
  assert.equal(r.shape, [2, 80, 3000]);
  assert.is(r.mask, null);
  assert.equal(r.lengths, [1600, 20]);
  const j = pp.json();
  assert.equal([j.feature_extractor_type, j.feature_size, j.n_fft, j.hop_length, j.n_samples, j.nb_max_frames, j.some_field], ['WhisperFeatureExtractor', 80, 400, 160, 480000, 3000, 'kept']);
  // the written file parses back to the same extractor
  assert.equal(WhisperPreprocessor.parse(j, 'p.json').extractor.config.num_frames, 3000);
});

for (const head of ['speech-classification', 'sequence-classification'] as const) {
  test(`training (${head} head): 12 AdamW steps on a fixed batch of log-mel inputs lower the loss; the frozen conv stem gets no gradient`, async () => {
    const rt = await getRuntime();
    // 1 s chunks (100 frames -> 50 positions) keep it quick; the code path is the 30 s one. init_std 0.2: with HF's
    // 0.02 the frozen random conv stem's output is buried under the position table and 12 steps barely move the loss
    const config = tiny({ max_source_positions: 50, num_mel_bins: 40, dropout: 0, init_std: 0.2 });
    const pp = WhisperPreprocessor.parse({ feature_size: 40, chunk_length: 1 }, 'preprocessor_config.json');
    const clips: Float32Array[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 6; i++) {
      const f = [180, 420, 900][i % 3];
      clips.push(Float32Array.from({ length: 6400 - 400 * i }, (_, t) => Math.sin((2 * Math.PI * f * t) / 16000) + 0.3 * Math.sin(12.9898 * (t + 97 * i))));
      labels.push(i % 3);
    }
    const x = pp.prepare(clips);
    assert.equal(x.shape, [6, 40, 100]);
    const model = SpeechClassifier.random(rt, config, { head, initSeed: 3 }).train();
    const opt = new AdamW(model.trainableParameters(), { lr: 3e-3 });
    const losses: number[] = [];
    try {
      for (let step = 0; step < 12; step++) {
        const loss = tidy(() => {
          const input = Tensor.fromData(rt, x.values, x.shape, 'f32', 'input_features');
          const out = model.forward({ inputValues: input, attentionMask: x.mask, labels });
          return out.loss!;
        });
        losses.push((await loss.readFloat())[0]);
        backward(loss);
        if (step === 0) {
          for (const [name, t] of model.namedParameters()) {
            if (model.family.isFeatureEncoderParameter(name)) assert.is(t.grad, null, `${name} is frozen`);
            else assert.ok(t.grad, `${name} has a gradient`);
          }
        }
        opt.step();
        opt.zeroGrad();
        loss.dispose();
      }
    } finally {
      model.dispose();
    }
    assert.ok(losses.every(Number.isFinite), `finite losses ${losses}`);
    assert.ok(losses[11] < 0.7 * losses[0], `loss fell: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    console.log(`whisper/${head}: loss ${losses[0].toFixed(3)} -> ${losses[11].toFixed(3)}`);
  });
}

test.run();
