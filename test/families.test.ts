// Every model family against the real Hugging Face code: `ser check-reference` on the float64 fixtures in
// ../shared/fixtures (HubertForSequenceClassification, Data2VecAudioForSequenceClassification, the notebook head with
// a regression target), both weight formats. Also the registry itself: model_type picks the family, unknown types
// are refused with the supported list, and a family's checkpoint loads as another's only with a clear error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime } from './helpers.js';
import { runReferenceCheck, formatTable, compare, FORWARD_TOLERANCE, GRAD_TOLERANCE } from '../src/node/check-reference.js';
import { parseModelConfig, familyOf, registeredFamilies } from '../src/model/registry.js';
import { SpeechClassifier, parameterShapes, disposeOutput } from '../src/model/classifier.js';
import { openModelDir, openTensorFile } from '../src/node/modeldir.js';
import { Tensor } from '../src/tensor.js';

const SHARED = '../shared/fixtures';
const have = (d: string) => fs.existsSync(path.join(SHARED, d, 'reference.safetensors'));

const CASES = [
  { dir: 'hubert_tiny', family: 'hubert', head: 'sequence-classification', outputs: ['pooled_output', 'logits', 'loss', 'projected_states'] },
  { dir: 'data2vec_audio_tiny', family: 'data2vec-audio', head: 'sequence-classification', outputs: ['pooled_output', 'logits', 'loss', 'projected_states'] },
  { dir: 'xlsr_tiny_regression', family: 'wav2vec2', head: 'speech-classification', outputs: ['logits_masked_mean', 'loss_masked_mean', 'pooled_masked_mean'] },
] as const;

for (const c of CASES) {
  for (const weights of ['safetensors', 'bin'] as const) {
    const t = have(c.dir) ? test : test.skip;
    t(`${c.dir} (${weights}): forward within ${FORWARD_TOLERANCE}, every weight gradient within ${GRAD_TOLERANCE}`, async () => {
      const rt = await getRuntime();
      const dir = path.join(SHARED, c.dir);
      const r = await runReferenceCheck(rt, dir, weights);
      assert.is(r.head, c.head);
      const names = new Set(r.tensors.map((x) => x.name));
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
      const refNames: string[] = manifest.tensors.map((x: { name: string }) => x.name);
      for (const n of c.outputs) assert.ok(names.has(n), `${n} compared`);
      for (const n of refNames) if (n.startsWith('hidden_states.')) assert.ok(names.has(n), `${n} compared`);
      const weightNames = new Set<string>(manifest.weights.keys.map((k: { name: string }) => k.name));
      const grads = refNames.filter((n) => n.startsWith('grad.') && weightNames.has(n.slice(5)));
      assert.ok(grads.length > 10, 'the fixture has weight gradients');
      for (const n of grads) assert.ok(names.has(n), `${n} compared`);
      const failed = r.tensors.filter((x) => !x.pass);
      assert.ok(r.ok && failed.length === 0, `${failed.map((x) => `${x.name} rel ${x.rel_l2}`).join('; ')}\n${formatTable(r)}`);
      console.log(`${c.dir}/${weights}: worst forward ${r.worst_forward.toExponential(2)} (${r.worst_forward_name}), worst grad ${r.worst_grad.toExponential(2)} (${r.worst_grad_name}), ${r.tensors.length} tensors`);
    });
  }
}

// our own float64 generators (tools/ref/families_ref.py and wavlm_whisper_ref.py, validated against the HF fixtures
// above and ../shared's wavlm_tiny and whisper_tiny_cls): the other layouts, head options and odd sizes. HuBERT base
// layout without the projection LayerNorm and a 400-sample clip, data2vec-audio with an even positional kernel and the
// weighted layer sum, HuBERT stable with one unpadded clip; WavLM base layout with relative distances past
// max_bucket_distance (log branch and cap) and a 400-sample clip, WavLM stable with the weighted sum and an odd
// num_buckets; Whisper with 128 mel bins, a 2 s chunk (max_source_positions 100) and a clip longer than the chunk.
// fam_whisper_seq2seq_encoder (manifest.checkpoint "seq2seq_encoder_only") has no head weights: its own test below.
const LOCAL = 'test/fixtures';
const generated = fs.existsSync(LOCAL) ? fs.readdirSync(LOCAL).filter((d) => d.startsWith('fam_')).sort() : [];
const manifestOf = (d: string) => JSON.parse(fs.readFileSync(path.join(LOCAL, d, 'manifest.json'), 'utf8'));
const seq2seq = generated.filter((d) => manifestOf(d).checkpoint === 'seq2seq_encoder_only');
const referenced = generated.filter((d) => !seq2seq.includes(d));
test('the generated family fixtures are present', () => {
  const families = new Set(referenced.map((d) => manifestOf(d).family ?? JSON.parse(fs.readFileSync(path.join(LOCAL, d, 'config.json'), 'utf8')).model_type));
  for (const f of ['hubert', 'data2vec-audio', 'wavlm', 'whisper']) assert.ok(families.has(f), `a generated ${f} fixture (${generated.join(', ')})`);
  assert.ok(referenced.length >= 6 && seq2seq.length >= 1, generated.join(', '));
});
for (const d of referenced) {
  for (const weights of ['safetensors', 'bin'] as const) {
    test(`${d} (${weights}): forward within ${FORWARD_TOLERANCE}, every weight gradient within ${GRAD_TOLERANCE}`, async () => {
      const rt = await getRuntime();
      const dir = path.join(LOCAL, d);
      const r = await runReferenceCheck(rt, dir, weights);
      const names = new Set(r.tensors.map((x) => x.name));
      const manifest = manifestOf(d);
      // every output, hidden state and gradient, WavLM's bucket / bias / gates, Whisper's log-mel from the raw audio
      const mustCompare = (n: string) =>
        n.startsWith('grad.') || n.startsWith('hidden_states.') || n.startsWith('gate.') ||
        ['logits', 'pooled_output', 'projected_states', 'loss', 'position_bias', 'relative_position_bucket', 'input_features', 'extract_features'].includes(n);
      for (const t of manifest.tensors as { name: string }[]) if (mustCompare(t.name)) assert.ok(names.has(t.name), `${t.name} compared`);
      assert.equal(r.skipped, [], 'every reference tensor has a counterpart');
      const weightNames = new Set<string>(manifest.weights.keys.map((k: { name: string }) => k.name));
      assert.ok((manifest.tensors as { name: string }[]).filter((t) => weightNames.has(t.name.slice(5))).length > 10, 'the fixture has weight gradients');
      const failed = r.tensors.filter((x) => !x.pass);
      assert.ok(r.ok && failed.length === 0, `${failed.map((x) => `${x.name} rel ${x.rel_l2}`).join('; ')}\n${formatTable(r)}`);
      const features = r.tensors.find((x) => x.name === 'input_features');
      if (features) assert.ok(features.max_abs <= 1e-5, `input_features max abs ${features.max_abs}`);
      console.log(`${d}/${weights}: worst forward ${r.worst_forward.toExponential(2)} (${r.worst_forward_name}), worst grad ${r.worst_grad.toExponential(2)} (${r.worst_grad_name}), ${r.tensors.length} tensors`);
    });
  }
}

// A seq2seq checkpoint on disk (WhisperForConditionalGeneration's names: model.encoder.*, model.decoder.*, and in the
// .bin the tied proj_out.weight) with no head weights, through openModelDir / the .bin reader: the decoder is skipped
// with a notice, the head newly initialised, and the encoder, fed our log-mel of the raw clips, reproduces the float64
// reference's hidden states (which a mis-mapped or transposed weight would not). whisper-model.test.ts covers the key
// mapping itself on in-memory renamed entries.
for (const d of seq2seq) {
  for (const weights of ['safetensors', 'bin'] as const) {
    test(`${d} (${weights}): decoder skipped with a notice, head initialised, encoder outputs within ${FORWARD_TOLERANCE}`, async () => {
      const rt = await getRuntime();
      const dir = path.join(LOCAL, d);
      const manifest = manifestOf(d);
      const md = await openModelDir(dir);
      const file = path.join(dir, weights === 'bin' ? 'pytorch_model.bin' : 'model.safetensors');
      const src = weights === 'bin' ? await openTensorFile(file) : md.weights;
      const ref = await openTensorFile(path.join(dir, 'reference.safetensors'));
      try {
        const { model, report } = await SpeechClassifier.fromSource(rt, md.config, src, { checkpoint: file });
        try {
          assert.is(model.head, 'sequence-classification');
          assert.equal([...report.newlyInitialized].sort(), [...manifest.expected_loading.newly_initialized].sort());
          const expectSkipped = (manifest.expected_loading.skipped_keys as string[]).filter((k) => weights === 'bin' || k !== 'proj_out.weight');
          assert.equal(report.skipped.map((s) => s.key).sort(), [...expectSkipped].sort());
          assert.equal(report.unexpected, []);
          assert.ok(report.notices.some((n) => n.includes(file) && /skipped \d+ weight\(s\) of the text decoder/.test(n)), report.notices.join('\n'));
          if (weights === 'bin') assert.ok(report.notices.some((n) => /proj_out/.test(n)), report.notices.join('\n'));
          assert.ok(report.notices.some((n) => /newly initialized: \[/.test(n)), report.notices.join('\n'));
          const clips: Float32Array[] = [];
          for (let i = 0; ref.entries.has(`raw_waveform.${i}`); i++) clips.push(Float32Array.from(await ref.entries.get(`raw_waveform.${i}`)!.read()));
          assert.is(clips.length, manifest.batch.input_lengths.length);
          const prepared = md.preprocessor.prepare(clips);
          const featuresRef = ref.entries.get('input_features')!;
          assert.equal(prepared.shape, [...featuresRef.shape]);
          assert.ok(compare(prepared.values, await featuresRef.read()).max_abs <= 1e-5, 'input_features');
          const input = Tensor.fromData(rt, prepared.values, prepared.shape, 'f32', 'input_features');
          const out = model.forward({ inputValues: input, attentionMask: null }, { outputHiddenStates: true, encoderOnly: true });
          try {
            const ours = new Map<string, Tensor>([...out.intermediates]);
            out.hidden_states.forEach((t, i) => ours.set(`hidden_states.${i}`, t));
            ours.set('last_hidden_state', out.last_hidden_state);
            let compared = 0;
            for (const [name, e] of ref.entries) {
              if (name.startsWith('raw_waveform.') || ['input_features', 'input_lengths'].includes(name)) continue;
              const t = ours.get(name);
              assert.ok(t, `${name}: our encoder reports it`);
              const c = compare(await t!.readFloat(), await e.read());
              assert.ok(c.rel_l2 <= FORWARD_TOLERANCE, `${name}: rel L2 ${c.rel_l2}`);
              compared++;
            }
            assert.ok(compared >= md.config.num_hidden_layers + 2, `${compared} encoder tensors compared`);
          } finally {
            disposeOutput(out);
            input.dispose();
          }
        } finally {
          model.dispose();
        }
      } finally {
        await ref.close();
        if (src !== md.weights) await src.close();
        await md.close();
      }
    });
  }
}

test('the registry: model_type picks the family; an unknown one is refused with the supported list', () => {
  for (const c of CASES) {
    if (!have(c.dir)) continue;
    const file = path.join(SHARED, c.dir, 'config.json');
    assert.is(familyOf(parseModelConfig(fs.readFileSync(file, 'utf8'), file)).name, c.family);
  }
  const types = registeredFamilies().flatMap((f) => f.modelTypes);
  for (const t of ['wav2vec2', 'hubert', 'data2vec-audio', 'wavlm', 'whisper']) assert.ok(types.includes(t), t);
  assert.throws(() => parseModelConfig({ model_type: 'bert' }, 'x/config.json'), (e: Error) => e.message.includes('x/config.json') && e.message.includes('"bert"') && e.message.includes('"hubert"'));
  // no model_type: an old wav2vec2 config
  assert.is(parseModelConfig({}, 'old.json').model_type, 'wav2vec2');
});

test('family config defaults and layout: HuBERT feat_proj_layer_norm false drops the projection LayerNorm; data2vec stacks its pos convs', () => {
  const hub = parseModelConfig({ model_type: 'hubert', feat_proj_layer_norm: false, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_conv_pos_embedding_groups: 4 });
  const hubShapes = parameterShapes(hub, 'none');
  assert.not.ok(hubShapes.has('hubert.feature_projection.layer_norm.weight'));
  assert.ok(hubShapes.has('hubert.feature_projection.projection.weight'));
  const d2v = parseModelConfig({ model_type: 'data2vec-audio', hidden_size: 64, num_attention_heads: 4, num_conv_pos_embedding_groups: 4, num_hidden_layers: 1 });
  const d2vShapes = parameterShapes(d2v, 'none');
  // Data2VecAudioConfig defaults: 5 positional conv layers of kernel 19
  for (let j = 0; j < 5; j++) assert.equal(d2vShapes.get(`data2vec_audio.encoder.pos_conv_embed.layers.${j}.conv.weight`), [64, 16, 19]);
  assert.not.ok(d2vShapes.has('data2vec_audio.encoder.pos_conv_embed.layers.5.conv.weight'));
  assert.ok(d2vShapes.has('data2vec_audio.feature_extractor.conv_layers.6.layer_norm.weight'), 'LayerNorm in every conv layer');
  assert.throws(() => parseModelConfig({ model_type: 'data2vec-audio', do_stable_layer_norm: true }, 'd.json'), /do_stable_layer_norm/);
});

test('a hostile config.json: each size is bounded with the field named, and the model as a whole before allocation', () => {
  assert.throws(() => parseModelConfig({ num_hidden_layers: 1e6 }, 'c.json'), (e: Error) => e.message.startsWith('c.json: "num_hidden_layers" is 1000000; the largest supported value is 1024'));
  assert.throws(() => parseModelConfig({ model_type: 'hubert', intermediate_size: 1e9 }, 'c.json'), (e: Error) => e.message.startsWith('c.json: "intermediate_size"'));
  assert.throws(() => parseModelConfig({ model_type: 'data2vec-audio', conv_dim: new Array(100000).fill(512) }, 'c.json'), (e: Error) => e.message.startsWith('c.json: "conv_dim"'));
  assert.throws(() => parseModelConfig(`${'['.repeat(200000)}${']'.repeat(200000)}`, 'deep/config.json'), (e: Error) => e.message.startsWith('deep/config.json: ') && !(e instanceof RangeError));
  assert.throws(() => parseModelConfig('{"hidden_size": ', 'torn/config.json'), (e: Error) => e.message.startsWith('torn/config.json: not valid JSON'));
  const big = parseModelConfig({ hidden_size: 16384, num_attention_heads: 16, num_hidden_layers: 512, num_conv_pos_embedding_groups: 16 }, 'c.json');
  assert.throws(() => parameterShapes(big, 'none'), /billion parameters/);
});

const crossTest = have('hubert_tiny') ? test : test.skip;
crossTest('a HuBERT checkpoint read with a wav2vec2 config fails with a message naming the mismatch, not silently', async () => {
  const rt = await getRuntime();
  const md = await openModelDir(path.join(SHARED, 'hubert_tiny'));
  try {
    const w2vConfig = parseModelConfig({ ...md.config.raw, model_type: 'wav2vec2' }, 'relabelled.json');
    let message = '';
    await SpeechClassifier.fromSource(rt, w2vConfig, md.weights, { checkpoint: 'hubert_tiny' }).catch((e: Error) => { message = e.message; });
    assert.match(message, /hubert_tiny: \d+ encoder weight\(s\) missing/);
  } finally {
    await md.close();
  }
});

test.run();
