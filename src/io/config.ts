// Hugging Face config files of a wav2vec2 model: config.json (Wav2Vec2Config) and preprocessor_config.json
// (Wav2Vec2FeatureExtractor). Absent fields take transformers' defaults (v4.30, configuration_wav2vec2.py and
// PretrainedConfig); values this engine cannot run are refused with the field and file named. Field names are kept
// exactly as in the JSON so they can be checked against the Hugging Face documentation one to one.
// The writers emit what save_pretrained would for a fine-tuned classifier: the source config's fields (unknown ones
// passed through), plus architectures, id2label/label2id and the notebook's pooling_mode.
import { isPlainObject } from './source.js';

export type PoolingMode = 'mean' | 'sum' | 'max';

export interface Wav2Vec2Config {
  model_type: 'wav2vec2';
  architectures: string[];
  // feature encoder (7 strided convolutions in the XLSR layout)
  conv_dim: number[];
  conv_kernel: number[];
  conv_stride: number[];
  conv_bias: boolean;
  num_feat_extract_layers: number;
  /** 'group': GroupNorm after the first conv only (base models); 'layer': LayerNorm after every conv (XLSR, large) */
  feat_extract_norm: 'group' | 'layer';
  feat_extract_activation: 'gelu';
  // transformer encoder
  /** true: pre-LN transformer with a final LayerNorm (XLSR, large); false: post-LN (base) */
  do_stable_layer_norm: boolean;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: 'gelu';
  layer_norm_eps: number;
  num_conv_pos_embeddings: number;
  num_conv_pos_embedding_groups: number;
  // regularisation
  hidden_dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  feat_proj_dropout: number;
  final_dropout: number;
  layerdrop: number;
  // SpecAugment
  apply_spec_augment: boolean;
  mask_time_prob: number;
  mask_time_length: number;
  mask_time_min_masks: number;
  mask_feature_prob: number;
  mask_feature_length: number;
  mask_feature_min_masks: number;
  // heads
  use_weighted_layer_sum: boolean;
  classifier_proj_size: number;
  num_labels: number;
  id2label: Record<number, string>;
  label2id: Record<string, number>;
  /** label names by class index (id2label as a list) */
  labels: string[];
  /** the notebook's Wav2Vec2ForSpeechClassification pooling over time (default 'mean') */
  pooling_mode: PoolingMode;
  problem_type: string | null;
  finetuning_task: string | null;
  vocab_size: number;
  initializer_range: number;
  add_adapter: false;
  /** the JSON as read, for writing back unknown fields unchanged */
  raw: Record<string, unknown>;
  /** notes about the file that are not errors (e.g. num_labels disagreeing with id2label) */
  warnings: string[];
}

/** transformers v4.30 Wav2Vec2Config.__init__ defaults */
export const WAV2VEC2_DEFAULTS = {
  vocab_size: 32,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  hidden_dropout: 0.1,
  activation_dropout: 0.1,
  attention_dropout: 0.1,
  feat_proj_dropout: 0.0,
  final_dropout: 0.1,
  layerdrop: 0.1,
  initializer_range: 0.02,
  layer_norm_eps: 1e-5,
  feat_extract_norm: 'group',
  feat_extract_activation: 'gelu',
  conv_dim: [512, 512, 512, 512, 512, 512, 512],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_bias: false,
  num_conv_pos_embeddings: 128,
  num_conv_pos_embedding_groups: 16,
  do_stable_layer_norm: false,
  apply_spec_augment: true,
  mask_time_prob: 0.05,
  mask_time_length: 10,
  mask_time_min_masks: 2,
  mask_feature_prob: 0.0,
  mask_feature_length: 10,
  mask_feature_min_masks: 0,
  use_weighted_layer_sum: false,
  classifier_proj_size: 256,
  add_adapter: false,
  // PretrainedConfig: num_labels is 2 when there is no id2label
  num_labels: 2,
} as const;

class ConfigReader {
  constructor(
    readonly json: Record<string, unknown>,
    readonly file: string,
  ) {}

  fail(field: string, msg: string): never {
    throw new Error(`${this.file}: "${field}" ${msg}`);
  }

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  int(field: string, def: number, min = 0): number {
    const v = this.has(field) ? this.json[field] : def;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(field, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  }

  num(field: string, def: number, lo = -Infinity, hi = Infinity, what = ''): number {
    const v = this.has(field) ? this.json[field] : def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
      this.fail(field, `must be a number${what || (lo > -Infinity ? ` in [${lo}, ${hi}]` : '')}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }

  prob(field: string, def: number): number {
    return this.num(field, def, 0, 1);
  }

  bool(field: string, def: boolean): boolean {
    const v = this.has(field) ? this.json[field] : def;
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  }

  str<T extends string>(field: string, def: T, allowed: readonly T[], why = ''): T {
    const v = this.has(field) ? this.json[field] : def;
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      this.fail(field, `is ${JSON.stringify(v)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')}${why ? ` (${why})` : ''}`);
    }
    return v as T;
  }

  intList(field: string, def: readonly number[]): number[] {
    const v = this.has(field) ? this.json[field] : def;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 1)) {
      this.fail(field, `must be a non-empty list of positive integers, got ${JSON.stringify(v)}`);
    }
    return [...(v as number[])];
  }
}

export function parseWav2Vec2Config(json: unknown, fileName = 'config.json'): Wav2Vec2Config {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object`);
  const r = new ConfigReader(json, fileName);
  const D = WAV2VEC2_DEFAULTS;
  const warnings: string[] = [];

  if (r.has('model_type') && json.model_type !== 'wav2vec2') {
    r.fail('model_type', `is ${JSON.stringify(json.model_type)}; only "wav2vec2" models (e.g. XLSR-53) are supported`);
  }
  if (r.has('add_adapter') && r.bool('add_adapter', false)) {
    r.fail('add_adapter', 'is true: the convolutional adapter on top of the encoder (num_adapter_layers etc.) is not supported');
  }
  if (r.has('adapter_attn_dim')) r.fail('adapter_attn_dim', 'is set: attention adapters inside the encoder layers are not supported');

  const conv_dim = r.intList('conv_dim', D.conv_dim);
  const conv_kernel = r.intList('conv_kernel', D.conv_kernel);
  const conv_stride = r.intList('conv_stride', D.conv_stride);
  if (conv_kernel.length !== conv_dim.length || conv_stride.length !== conv_dim.length) {
    r.fail(
      'conv_dim',
      `has ${conv_dim.length} layers but conv_kernel has ${conv_kernel.length} and conv_stride ${conv_stride.length}; the three lists must have the same length`,
    );
  }
  if (r.has('num_feat_extract_layers') && json.num_feat_extract_layers !== conv_dim.length) {
    r.fail('num_feat_extract_layers', `is ${JSON.stringify(json.num_feat_extract_layers)} but conv_dim has ${conv_dim.length} layers`);
  }
  const hidden_size = r.int('hidden_size', D.hidden_size, 1);
  const num_attention_heads = r.int('num_attention_heads', D.num_attention_heads, 1);
  if (hidden_size % num_attention_heads) r.fail('num_attention_heads', `(${num_attention_heads}) must divide hidden_size (${hidden_size})`);
  const num_conv_pos_embedding_groups = r.int('num_conv_pos_embedding_groups', D.num_conv_pos_embedding_groups, 1);
  if (hidden_size % num_conv_pos_embedding_groups) {
    r.fail('num_conv_pos_embedding_groups', `(${num_conv_pos_embedding_groups}) must divide hidden_size (${hidden_size})`);
  }
  if (r.has('output_hidden_size') && json.output_hidden_size !== hidden_size) {
    r.fail('output_hidden_size', `is ${JSON.stringify(json.output_hidden_size)}; without an adapter it must equal hidden_size (${hidden_size})`);
  }

  // labels (PretrainedConfig): id2label wins over num_labels; keys are strings in JSON
  let labels: string[];
  if (r.has('id2label')) {
    const raw = json.id2label;
    if (!isPlainObject(raw)) r.fail('id2label', 'must be an object of class index -> label name');
    const pairs = Object.entries(raw as Record<string, unknown>).map(([k, v]) => {
      const i = Number(k);
      if (!Number.isSafeInteger(i) || i < 0 || String(i) !== k.trim()) r.fail('id2label', `has a key ${JSON.stringify(k)} that is not a class index`);
      if (typeof v !== 'string') r.fail('id2label', `["${k}"] must be a string`);
      return [i, v as string] as const;
    });
    labels = new Array(pairs.length);
    for (const [i, v] of pairs) {
      if (i >= pairs.length) r.fail('id2label', `indices must be 0..${pairs.length - 1}, found ${i}`);
      labels[i] = v;
    }
    if (new Set(labels).size !== labels.length) r.fail('id2label', `has duplicate label names`);
    if (r.has('num_labels') && json.num_labels !== labels.length) {
      warnings.push(`${fileName}: num_labels=${JSON.stringify(json.num_labels)} disagrees with id2label (${labels.length} labels); using id2label, as transformers does`);
    }
  } else {
    const n = r.int('num_labels', D.num_labels, 1);
    labels = Array.from({ length: n }, (_, i) => `LABEL_${i}`);
  }
  if (labels.length < 1) r.fail('id2label', 'is empty');
  const id2label: Record<number, string> = {};
  const label2id: Record<string, number> = {};
  labels.forEach((l, i) => {
    id2label[i] = l;
    label2id[l] = i;
  });
  if (r.has('label2id') && r.has('id2label')) {
    const raw = json.label2id;
    if (!isPlainObject(raw)) r.fail('label2id', 'must be an object of label name -> class index');
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (label2id[k] !== Number(v)) r.fail('label2id', `["${k}"] = ${JSON.stringify(v)} disagrees with id2label`);
    }
  }

  let architectures: string[] = [];
  if (r.has('architectures')) {
    if (!Array.isArray(json.architectures) || !json.architectures.every((a) => typeof a === 'string')) r.fail('architectures', 'must be a list of strings');
    architectures = [...(json.architectures as string[])];
  }
  const optStr = (f: string): string | null => {
    if (!r.has(f)) return null;
    if (typeof json[f] !== 'string') r.fail(f, 'must be a string');
    return json[f] as string;
  };
  const problem_type = optStr('problem_type');
  if (problem_type !== null && problem_type !== 'single_label_classification') {
    r.fail('problem_type', `is ${JSON.stringify(problem_type)}; only "single_label_classification" (cross-entropy over labels) is supported`);
  }

  return {
    model_type: 'wav2vec2',
    architectures,
    conv_dim,
    conv_kernel,
    conv_stride,
    conv_bias: r.bool('conv_bias', D.conv_bias),
    num_feat_extract_layers: conv_dim.length,
    feat_extract_norm: r.str('feat_extract_norm', D.feat_extract_norm, ['group', 'layer'] as const),
    feat_extract_activation: r.str('feat_extract_activation', 'gelu', ['gelu'] as const, 'other activations are not implemented'),
    do_stable_layer_norm: r.bool('do_stable_layer_norm', D.do_stable_layer_norm),
    hidden_size,
    num_hidden_layers: r.int('num_hidden_layers', D.num_hidden_layers, 1),
    num_attention_heads,
    intermediate_size: r.int('intermediate_size', D.intermediate_size, 1),
    hidden_act: r.str('hidden_act', 'gelu', ['gelu'] as const, 'other activations are not implemented'),
    layer_norm_eps: r.num('layer_norm_eps', D.layer_norm_eps, Number.MIN_VALUE, 1, ' > 0'),
    num_conv_pos_embeddings: r.int('num_conv_pos_embeddings', D.num_conv_pos_embeddings, 1),
    num_conv_pos_embedding_groups,
    hidden_dropout: r.prob('hidden_dropout', D.hidden_dropout),
    attention_dropout: r.prob('attention_dropout', D.attention_dropout),
    activation_dropout: r.prob('activation_dropout', D.activation_dropout),
    feat_proj_dropout: r.prob('feat_proj_dropout', D.feat_proj_dropout),
    final_dropout: r.prob('final_dropout', D.final_dropout),
    layerdrop: r.prob('layerdrop', D.layerdrop),
    apply_spec_augment: r.bool('apply_spec_augment', D.apply_spec_augment),
    mask_time_prob: r.prob('mask_time_prob', D.mask_time_prob),
    mask_time_length: r.int('mask_time_length', D.mask_time_length, 1),
    mask_time_min_masks: r.int('mask_time_min_masks', D.mask_time_min_masks, 0),
    mask_feature_prob: r.prob('mask_feature_prob', D.mask_feature_prob),
    mask_feature_length: r.int('mask_feature_length', D.mask_feature_length, 1),
    mask_feature_min_masks: r.int('mask_feature_min_masks', D.mask_feature_min_masks, 0),
    use_weighted_layer_sum: r.bool('use_weighted_layer_sum', D.use_weighted_layer_sum),
    classifier_proj_size: r.int('classifier_proj_size', D.classifier_proj_size, 1),
    num_labels: labels.length,
    id2label,
    label2id,
    labels,
    pooling_mode: r.str('pooling_mode', 'mean', ['mean', 'sum', 'max'] as const),
    problem_type,
    finetuning_task: optStr('finetuning_task'),
    vocab_size: r.int('vocab_size', D.vocab_size, 1),
    initializer_range: r.num('initializer_range', D.initializer_range, 0),
    add_adapter: false,
    raw: { ...json },
    warnings,
  };
}

/** the fields parseWav2Vec2Config normalises (written back from the parsed values, not the raw JSON) */
const KNOWN_FIELDS = [
  'architectures', 'conv_dim', 'conv_kernel', 'conv_stride', 'conv_bias', 'num_feat_extract_layers', 'feat_extract_norm',
  'feat_extract_activation', 'do_stable_layer_norm', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
  'intermediate_size', 'hidden_act', 'layer_norm_eps', 'num_conv_pos_embeddings', 'num_conv_pos_embedding_groups',
  'hidden_dropout', 'attention_dropout', 'activation_dropout', 'feat_proj_dropout', 'final_dropout', 'layerdrop',
  'apply_spec_augment', 'mask_time_prob', 'mask_time_length', 'mask_time_min_masks', 'mask_feature_prob',
  'mask_feature_length', 'mask_feature_min_masks', 'use_weighted_layer_sum', 'classifier_proj_size', 'id2label',
  'label2id', 'pooling_mode', 'vocab_size', 'initializer_range', 'add_adapter', 'model_type',
] as const;

export interface FineTunedConfigOptions {
  /** class names in index order (replaces id2label/label2id) */
  labels?: string[];
  pooling_mode?: PoolingMode;
  /** default ['Wav2Vec2ForSpeechClassification'] (the notebook's model class) */
  architectures?: string[];
  finetuning_task?: string;
  /** any further fields to set (e.g. dropout used for training) */
  extra?: Record<string, unknown>;
}

/**
 * config.json of a fine-tuned classifier as a JSON object: every field of the source config (unknown ones passed
 * through), the parsed values of the known ones, then the classifier fields. Like save_pretrained it does not store
 * num_labels (transformers derives it from id2label); parseWav2Vec2Config(result) round-trips.
 */
export function fineTunedConfigJson(base: Wav2Vec2Config, opts: FineTunedConfigOptions = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base.raw };
  delete out.num_labels;
  for (const f of KNOWN_FIELDS) out[f] = (base as unknown as Record<string, unknown>)[f];
  const labels = opts.labels ?? base.labels;
  if (!labels.length || new Set(labels).size !== labels.length) throw new Error(`labels must be a non-empty list of distinct names, got ${JSON.stringify(labels)}`);
  out.id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
  out.label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
  out.architectures = opts.architectures ?? ['Wav2Vec2ForSpeechClassification'];
  out.pooling_mode = opts.pooling_mode ?? base.pooling_mode;
  if (opts.finetuning_task !== undefined) out.finetuning_task = opts.finetuning_task;
  Object.assign(out, opts.extra ?? {});
  delete out.raw;
  delete out.warnings;
  return sortKeys(out);
}

/** JSON text as transformers writes it (sorted keys, 2-space indent, trailing newline). */
export function configJsonText(json: Record<string, unknown>): string {
  return `${JSON.stringify(sortKeys(json), null, 2)}\n`;
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

// ---------------------------------------------------------------------------------------------------------------
// preprocessor_config.json (Wav2Vec2FeatureExtractor)

export interface PreprocessorConfig {
  feature_extractor_type: string;
  /** zero-mean unit-variance normalisation of each waveform over its real samples */
  do_normalize: boolean;
  sampling_rate: number;
  padding_value: number;
  padding_side: 'right';
  return_attention_mask: boolean;
  /** channels per sample; 1 (mono) */
  feature_size: 1;
  raw: Record<string, unknown>;
}

/** Wav2Vec2FeatureExtractor defaults (transformers v4.30) */
export const PREPROCESSOR_DEFAULTS = {
  feature_extractor_type: 'Wav2Vec2FeatureExtractor',
  feature_size: 1,
  sampling_rate: 16000,
  padding_value: 0.0,
  return_attention_mask: false,
  do_normalize: true,
  padding_side: 'right',
} as const;

export function parsePreprocessorConfig(json: unknown, fileName = 'preprocessor_config.json'): PreprocessorConfig {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object`);
  const r = new ConfigReader(json, fileName);
  const D = PREPROCESSOR_DEFAULTS;
  if (r.has('feature_extractor_type') && json.feature_extractor_type !== 'Wav2Vec2FeatureExtractor') {
    r.fail('feature_extractor_type', `is ${JSON.stringify(json.feature_extractor_type)}; only "Wav2Vec2FeatureExtractor" (raw waveform input) is supported`);
  }
  const feature_size = r.int('feature_size', D.feature_size, 1);
  if (feature_size !== 1) r.fail('feature_size', `is ${feature_size}; wav2vec2 takes mono waveforms (1)`);
  // the clip paths resample every file to this rate: bound it as src/audio/validate.ts bounds a file's own rate
  // (MIN_SAMPLE_RATE..MAX_SAMPLE_RATE; test/hostile-audio.test.ts checks the two agree)
  const sampling_rate = r.int('sampling_rate', D.sampling_rate, 1);
  if (sampling_rate < 1000 || sampling_rate > 384000) r.fail('sampling_rate', `is ${sampling_rate} Hz; it must be within 1000-384000 Hz (wav2vec2 models use 16000)`);
  return {
    feature_extractor_type: 'Wav2Vec2FeatureExtractor',
    do_normalize: r.bool('do_normalize', D.do_normalize),
    sampling_rate,
    padding_value: r.num('padding_value', D.padding_value),
    padding_side: r.str('padding_side', D.padding_side, ['right'] as const, 'left padding is not supported'),
    return_attention_mask: r.bool('return_attention_mask', D.return_attention_mask),
    feature_size: 1,
    raw: { ...json },
  };
}

export function preprocessorConfigJson(p: PreprocessorConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...p.raw };
  for (const f of ['feature_extractor_type', 'do_normalize', 'sampling_rate', 'padding_value', 'padding_side', 'return_attention_mask', 'feature_size'] as const) {
    out[f] = p[f];
  }
  return sortKeys(out);
}
