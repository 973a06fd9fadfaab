// Every model family against the real Hugging Face code: `ser check-reference` on the float64 fixtures in
// ../shared/fixtures (HubertForSequenceClassification, Data2VecAudioForSequenceClassification, the notebook head with
// a regression target), both weight formats. Also the registry itself: model_type picks the family, unknown types
// are refused with the supported list, and a family's checkpoint loads as another's only with a clear error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime } from './helpers.js';
import { runReferenceCheck, formatTable, FORWARD_TOLERANCE, GRAD_TOLERANCE } from '../src/node/check-reference.js';
import { parseModelConfig, familyOf, registeredFamilies } from '../src/model/registry.js';
import { SpeechClassifier, parameterShapes } from '../src/model/classifier.js';
import { openModelDir } from '../src/node/modeldir.js';

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

// our own float64 generator (tools/ref/families_ref.py, validated against the HF fixtures above): the other layouts,
// head options and odd sizes: HuBERT base layout without the projection LayerNorm and a 400-sample clip, data2vec-audio
// with an even positional kernel and the weighted layer sum, HuBERT stable with one unpadded clip
const LOCAL = 'test/fixtures';
const generated = fs.existsSync(LOCAL) ? fs.readdirSync(LOCAL).filter((d) => d.startsWith('fam_')).sort() : [];
test('the generated family fixtures are present', () => assert.ok(generated.length >= 3, generated.join(', ')));
for (const d of generated) {
  for (const weights of ['safetensors', 'bin'] as const) {
    test(`${d} (${weights}): forward within ${FORWARD_TOLERANCE}, every weight gradient within ${GRAD_TOLERANCE}`, async () => {
      const rt = await getRuntime();
      const dir = path.join(LOCAL, d);
      const r = await runReferenceCheck(rt, dir, weights);
      const names = new Set(r.tensors.map((x) => x.name));
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
      for (const t of manifest.tensors as { name: string }[]) {
        if (t.name.startsWith('grad.') || t.name.startsWith('hidden_states.') || ['logits', 'pooled_output', 'projected_states', 'loss'].includes(t.name)) {
          assert.ok(names.has(t.name), `${t.name} compared`);
        }
      }
      const failed = r.tensors.filter((x) => !x.pass);
      assert.ok(r.ok && failed.length === 0, `${failed.map((x) => `${x.name} rel ${x.rel_l2}`).join('; ')}\n${formatTable(r)}`);
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
  for (const t of ['wav2vec2', 'hubert', 'data2vec-audio']) assert.ok(types.includes(t), t);
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
