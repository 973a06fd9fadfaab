// config.json / preprocessor_config.json: Hugging Face defaults (transformers v4.30) for absent fields, refusals that
// name the field and the file, and the writers for a fine-tuned model (round trip through the parser).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { configJsonText, fineTunedConfigJson as fineTunedConfigJsonAnyFamily, parsePreprocessorConfig, preprocessorConfigJson, type FineTunedConfigOptions, type ModelConfigBase } from '../src/io/config.js';
import { parseWav2Vec2Config, WAV2VEC2_CONFIG_FIELDS } from '../src/model/wav2vec2/config.js';

const fineTunedConfigJson = (c: ModelConfigBase, opts: FineTunedConfigOptions = {}) => fineTunedConfigJsonAnyFamily(c, opts, WAV2VEC2_CONFIG_FIELDS);

const TINY = path.resolve('../shared/fixtures/xlsr_tiny');
const haveShared = fs.existsSync(path.join(TINY, 'config.json'));
const sharedTest = haveShared ? test : test.skip;

function throwsWith(fn: () => unknown, ...parts: string[]): void {
  let msg: string | null = null;
  try {
    fn();
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.ok(msg !== null, `expected an error mentioning ${parts.join(' & ')}`);
  for (const p of parts) assert.ok(msg!.includes(p), `error should mention ${p}:\n${msg}`);
}

test('an empty config takes every Wav2Vec2Config default of transformers v4.30', () => {
  const c = parseWav2Vec2Config({}, 'empty.json');
  // values from configuration_wav2vec2.py (Wav2Vec2Config.__init__) and PretrainedConfig (num_labels 2)
  const hf: Record<string, unknown> = {
    vocab_size: 32, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
    hidden_act: 'gelu', hidden_dropout: 0.1, activation_dropout: 0.1, attention_dropout: 0.1, feat_proj_dropout: 0.0,
    final_dropout: 0.1, layerdrop: 0.1, initializer_range: 0.02, layer_norm_eps: 1e-5, feat_extract_norm: 'group',
    feat_extract_activation: 'gelu', conv_dim: [512, 512, 512, 512, 512, 512, 512], conv_stride: [5, 2, 2, 2, 2, 2, 2],
    conv_kernel: [10, 3, 3, 3, 3, 2, 2], conv_bias: false, num_conv_pos_embeddings: 128, num_conv_pos_embedding_groups: 16,
    do_stable_layer_norm: false, apply_spec_augment: true, mask_time_prob: 0.05, mask_time_length: 10,
    mask_time_min_masks: 2, mask_feature_prob: 0.0, mask_feature_length: 10, mask_feature_min_masks: 0,
    use_weighted_layer_sum: false, classifier_proj_size: 256, add_adapter: false, num_labels: 2, num_feat_extract_layers: 7,
    pooling_mode: 'mean', problem_type: null,
  };
  for (const [k, v] of Object.entries(hf)) assert.equal((c as unknown as Record<string, unknown>)[k], v, k);
  assert.equal(c.labels, ['LABEL_0', 'LABEL_1']);
  assert.equal(c.label2id, { LABEL_0: 0, LABEL_1: 1 });
  assert.equal(c.warnings, []);
});

sharedTest('the xlsr_tiny config.json (real transformers output) parses to its values', () => {
  const file = path.join(TINY, 'config.json');
  const c = parseWav2Vec2Config(fs.readFileSync(file, 'utf8'), file);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const k of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'conv_dim', 'conv_kernel', 'conv_stride', 'conv_bias', 'feat_extract_norm', 'do_stable_layer_norm', 'layer_norm_eps', 'num_conv_pos_embeddings', 'num_conv_pos_embedding_groups', 'mask_time_prob', 'mask_time_min_masks', 'pooling_mode', 'final_dropout']) {
    assert.equal((c as unknown as Record<string, unknown>)[k], raw[k], k);
  }
  assert.is(c.num_labels, 5);
  assert.equal(c.labels, ['anger', 'happiness', 'neutral', 'sadness', 'surprise']);
  assert.is(c.label2id.sadness, 3);
  assert.equal(c.architectures, ['Wav2Vec2ForSpeechClassification']);
  assert.is(c.finetuning_task, 'wav2vec2_clf');
  assert.equal(c.warnings, []);
});

test('labels: num_labels alone gives LABEL_i; id2label wins over a disagreeing num_labels with a warning', () => {
  assert.equal(parseWav2Vec2Config({ num_labels: 3 }).labels, ['LABEL_0', 'LABEL_1', 'LABEL_2']);
  const c = parseWav2Vec2Config({ num_labels: 4, id2label: { 1: 'b', 0: 'a' } }, 'x.json');
  assert.equal(c.labels, ['a', 'b']);
  assert.is(c.num_labels, 2);
  assert.is(c.warnings.length, 1);
  assert.ok(c.warnings[0].includes('x.json') && c.warnings[0].includes('num_labels'));
});

test('unsupported or malformed values are refused, naming the field and the file', () => {
  const f = 'model/config.json';
  const bad: [Record<string, unknown>, string][] = [
    [{ hidden_act: 'relu' }, 'hidden_act'],
    [{ feat_extract_activation: 'swish' }, 'feat_extract_activation'],
    [{ add_adapter: true, num_adapter_layers: 3 }, 'add_adapter'],
    [{ adapter_attn_dim: 16 }, 'adapter_attn_dim'],
    [{ conv_dim: [512, 512], conv_kernel: [10, 3, 3], conv_stride: [5, 2] }, 'conv_dim'],
    [{ conv_kernel: [10, 0, 3, 3, 3, 2, 2] }, 'conv_kernel'],
    [{ num_feat_extract_layers: 6 }, 'num_feat_extract_layers'],
    [{ feat_extract_norm: 'batch' }, 'feat_extract_norm'],
    [{ model_type: 'hubert' }, 'model_type'],
    [{ pooling_mode: 'attention' }, 'pooling_mode'],
    [{ hidden_size: 100, num_attention_heads: 16 }, 'num_attention_heads'],
    [{ hidden_size: 96, num_attention_heads: 12, num_conv_pos_embedding_groups: 7 }, 'num_conv_pos_embedding_groups'],
    [{ hidden_dropout: 1.5 }, 'hidden_dropout'],
    [{ num_hidden_layers: 2.5 }, 'num_hidden_layers'],
    [{ do_stable_layer_norm: 'yes' }, 'do_stable_layer_norm'],
    [{ layer_norm_eps: 0 }, 'layer_norm_eps'],
    [{ id2label: { 0: 'a', 2: 'b' } }, 'id2label'],
    [{ id2label: { 0: 'a', 1: 'a' } }, 'id2label'],
    [{ id2label: { 0: 'a', 1: 'b' }, label2id: { a: 1, b: 0 } }, 'label2id'],
    [{ problem_type: 'multi_label_classification' }, 'problem_type'],
    [{ output_hidden_size: 512 }, 'output_hidden_size'],
  ];
  for (const [json, field] of bad) throwsWith(() => parseWav2Vec2Config(json, f), f, `"${field}"`);
  throwsWith(() => parseWav2Vec2Config('{"hidden_size": ', f), f, 'not valid JSON');
  throwsWith(() => parseWav2Vec2Config([1], f), f, 'JSON object');
});

sharedTest('fine-tuned config.json: new labels and pooling, unknown fields passed through, re-parses to the same model', () => {
  const file = path.join(TINY, 'config.json');
  const base = parseWav2Vec2Config(fs.readFileSync(file, 'utf8'), file);
  const json = fineTunedConfigJson(base, { labels: ['neutral', 'angry', 'sad'], pooling_mode: 'max', finetuning_task: 'ser' });
  const text = configJsonText(json);
  assert.ok(text.endsWith('}\n'));
  const keys = Object.keys(JSON.parse(text));
  assert.equal(keys, [...keys].sort(), 'sorted keys, as transformers writes them');
  const again = parseWav2Vec2Config(text, 'saved/config.json');
  assert.equal(again.labels, ['neutral', 'angry', 'sad']);
  assert.equal(JSON.parse(text).id2label, { 0: 'neutral', 1: 'angry', 2: 'sad' });
  assert.equal(JSON.parse(text).label2id, { neutral: 0, angry: 1, sad: 2 });
  assert.is(again.pooling_mode, 'max');
  assert.equal(again.architectures, ['Wav2Vec2ForSpeechClassification']);
  assert.is(again.finetuning_task, 'ser');
  assert.not.ok('num_labels' in JSON.parse(text), 'num_labels is derived from id2label, as in transformers');
  for (const k of ['tdnn_dim', 'transformers_version', 'codevector_dim', 'ctc_loss_reduction', 'bos_token_id']) assert.equal(JSON.parse(text)[k], base.raw[k], k);
  for (const k of ['hidden_size', 'conv_dim', 'conv_kernel', 'conv_stride', 'do_stable_layer_norm', 'feat_extract_norm', 'layer_norm_eps', 'mask_time_prob', 'num_conv_pos_embeddings']) {
    assert.equal((again as unknown as Record<string, unknown>)[k], (base as unknown as Record<string, unknown>)[k], k);
  }
  // written from a config with defaults only: the defaults become explicit
  const fromDefaults = JSON.parse(configJsonText(fineTunedConfigJson(parseWav2Vec2Config({}), { labels: ['x', 'y'] })));
  assert.is(fromDefaults.hidden_size, 768);
  assert.is(fromDefaults.feat_extract_norm, 'group');
  assert.throws(() => fineTunedConfigJson(base, { labels: ['a', 'a'] }), /distinct/);
});

test('preprocessor_config.json: Wav2Vec2FeatureExtractor defaults, refusals, writer round trip', () => {
  const d = parsePreprocessorConfig({});
  assert.equal(
    { do_normalize: d.do_normalize, sampling_rate: d.sampling_rate, padding_value: d.padding_value, return_attention_mask: d.return_attention_mask, feature_size: d.feature_size, padding_side: d.padding_side },
    { do_normalize: true, sampling_rate: 16000, padding_value: 0, return_attention_mask: false, feature_size: 1, padding_side: 'right' },
  );
  const f = 'm/preprocessor_config.json';
  throwsWith(() => parsePreprocessorConfig({ feature_size: 2 }, f), f, '"feature_size"');
  throwsWith(() => parsePreprocessorConfig({ padding_side: 'left' }, f), f, '"padding_side"');
  throwsWith(() => parsePreprocessorConfig({ sampling_rate: -8000 }, f), f, '"sampling_rate"');
  throwsWith(() => parsePreprocessorConfig({ do_normalize: 1 }, f), f, '"do_normalize"');
  throwsWith(() => parsePreprocessorConfig({ feature_extractor_type: 'WhisperFeatureExtractor' }, f), f, '"feature_extractor_type"');
  const p = parsePreprocessorConfig({ do_normalize: false, sampling_rate: 8000, return_attention_mask: true, custom: 1 }, f);
  const back = parsePreprocessorConfig(configJsonText(preprocessorConfigJson(p)), f);
  assert.equal({ ...back, raw: null }, { ...p, raw: null });
  assert.is(preprocessorConfigJson(p).custom, 1);
});

sharedTest('the xlsr_tiny preprocessor_config.json parses', () => {
  const file = path.join(TINY, 'preprocessor_config.json');
  const p = parsePreprocessorConfig(fs.readFileSync(file, 'utf8'), file);
  assert.is(p.do_normalize, true);
  assert.is(p.return_attention_mask, true);
  assert.is(p.sampling_rate, 16000);
});

test.run();
