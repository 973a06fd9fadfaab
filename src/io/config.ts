// Hugging Face config files, the family-independent part: a checked reader for config.json fields (errors name the
// file and the field), the fields every classifier head reads (labels, problem_type, pooling, projector size,
// weighted layer sum), the writer of a fine-tuned config.json, and preprocessor_config.json of the raw-waveform
// families (Wav2Vec2FeatureExtractor). Each family parses its own architecture fields with Hugging Face's defaults
// in src/model/<family>/config.ts; the model registry picks the family by model_type.
import { isPlainObject } from './source.js';

export type PoolingMode = 'mean' | 'sum' | 'max';
export type ProblemType = 'single_label_classification' | 'regression';

/** What the heads need from any family's config (PretrainedConfig and the *ForSequenceClassification fields). */
export interface HeadConfig {
  use_weighted_layer_sum: boolean;
  classifier_proj_size: number;
  num_labels: number;
  id2label: Record<number, string>;
  label2id: Record<string, number>;
  /** label names by output index (id2label as a list); for regression, the names of the targets */
  labels: string[];
  /** the notebook's Wav2Vec2ForSpeechClassification pooling over time (default 'mean') */
  pooling_mode: PoolingMode;
  /** null: classification (cross entropy); 'regression': MSE on float targets, one output per label */
  problem_type: ProblemType | null;
  finetuning_task: string | null;
  final_dropout: number;
  initializer_range: number;
}

/** Every family's parsed config has these (hidden_size: the width of the encoder output). */
export interface ModelConfigBase extends HeadConfig {
  model_type: string;
  architectures: string[];
  hidden_size: number;
  num_hidden_layers: number;
  /** the JSON as read, for writing back unknown fields unchanged */
  raw: Record<string, unknown>;
  /** notes about the file that are not errors (e.g. num_labels disagreeing with id2label) */
  warnings: string[];
}

/** Parse JSON text (or pass an object through), naming the file on failure. */
export function configObject(json: unknown, fileName: string): Record<string, unknown> {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object`);
  return json;
}

/** Upper bounds on sizes a config may ask for: a hostile config.json must not make us allocate or loop forever. */
export const CONFIG_LIMITS = { width: 1 << 16, layers: 1024, heads: 1024, labels: 1 << 16, kernel: 4096, stride: 4096, convLayers: 64 } as const;

export class ConfigReader {
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

  /** an integer in [min, max]: the max bounds what a hostile file can make us allocate */
  bounded(field: string, def: number, min: number, max: number): number {
    const v = this.int(field, def, min);
    if (v > max) this.fail(field, `is ${v}; the largest supported value is ${max}`);
    return v;
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

  intList(field: string, def: readonly number[], max = Number.MAX_SAFE_INTEGER, maxLength: number = CONFIG_LIMITS.convLayers): number[] {
    const v = this.has(field) ? this.json[field] : def;
    if (!Array.isArray(v) || v.length === 0 || v.length > maxLength || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 1 && x <= max)) {
      this.fail(field, `must be a non-empty list (at most ${maxLength}) of integers in [1, ${max}], got ${JSON.stringify(v).slice(0, 200)}`);
    }
    return [...(v as number[])];
  }

  optString(field: string): string | null {
    if (!this.has(field)) return null;
    if (typeof this.json[field] !== 'string') this.fail(field, 'must be a string');
    return this.json[field] as string;
  }
}

/**
 * The head fields of config.json (PretrainedConfig labels and problem_type, the *ForSequenceClassification fields,
 * the notebook's pooling_mode), with transformers' defaults. `finalDropoutField` names the family's dropout before
 * the classifier (final_dropout in wav2vec2; Whisper has none).
 */
export function parseHeadConfig(r: ConfigReader, warnings: string[], defaults: { finalDropout?: number; initializerRange?: number; initializerField?: string; classifierProjSize?: number } = {}): HeadConfig {
  const json = r.json;
  const fileName = r.file;
  // labels (PretrainedConfig): id2label wins over num_labels; keys are strings in JSON
  let labels: string[];
  if (r.has('id2label')) {
    const raw = json.id2label;
    if (!isPlainObject(raw)) r.fail('id2label', 'must be an object of class index -> label name');
    const entries = Object.entries(raw as Record<string, unknown>);
    if (entries.length > CONFIG_LIMITS.labels) r.fail('id2label', `has ${entries.length} labels; at most ${CONFIG_LIMITS.labels} are supported`);
    const pairs = entries.map(([k, v]) => {
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
    const n = r.bounded('num_labels', 2, 1, CONFIG_LIMITS.labels);
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
  const problem = r.optString('problem_type');
  if (problem !== null && problem !== 'single_label_classification' && problem !== 'regression') {
    r.fail('problem_type', `is ${JSON.stringify(problem)}; supported: "single_label_classification" (cross entropy over labels) and "regression" (MSE, one float target per label)`);
  }
  return {
    use_weighted_layer_sum: r.bool('use_weighted_layer_sum', false),
    classifier_proj_size: r.bounded('classifier_proj_size', defaults.classifierProjSize ?? 256, 1, CONFIG_LIMITS.width),
    num_labels: labels.length,
    id2label,
    label2id,
    labels,
    pooling_mode: r.str('pooling_mode', 'mean', ['mean', 'sum', 'max'] as const),
    problem_type: problem,
    finetuning_task: r.optString('finetuning_task'),
    final_dropout: r.prob('final_dropout', defaults.finalDropout ?? 0.1),
    initializer_range: r.num(defaults.initializerField ?? 'initializer_range', defaults.initializerRange ?? 0.02, 0),
  };
}

/** Architectures list of config.json (empty when absent). */
export function parseArchitectures(r: ConfigReader): string[] {
  if (!r.has('architectures')) return [];
  const a = r.json.architectures;
  if (!Array.isArray(a) || a.length > 64 || !a.every((x) => typeof x === 'string')) r.fail('architectures', 'must be a list of strings');
  return [...(a as string[])];
}

/** the head fields every family's config writes back from parsed values */
export const HEAD_CONFIG_FIELDS = ['architectures', 'use_weighted_layer_sum', 'classifier_proj_size', 'id2label', 'label2id', 'pooling_mode', 'model_type'] as const;

export interface FineTunedConfigOptions {
  /** class names in index order (replaces id2label/label2id) */
  labels?: string[];
  pooling_mode?: PoolingMode;
  /** default ['Wav2Vec2ForSpeechClassification'] (the notebook's model class; SpeechClassifier.architectures() names the right one) */
  architectures?: string[];
  finetuning_task?: string;
  /** any further fields to set (e.g. dropout used for training) */
  extra?: Record<string, unknown>;
}

/**
 * config.json of a fine-tuned classifier as a JSON object: every field of the source config (unknown ones passed
 * through), the parsed values of the known ones, then the classifier fields. Like save_pretrained it does not store
 * num_labels (transformers derives it from id2label); the family's parser round-trips it.
 */
export function fineTunedConfigJson(base: ModelConfigBase, opts: FineTunedConfigOptions = {}, parsedFields: readonly string[] = HEAD_CONFIG_FIELDS): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base.raw };
  delete out.num_labels;
  const parsed = new Map<string, unknown>(Object.entries(base));
  for (const f of new Set([...HEAD_CONFIG_FIELDS, ...parsedFields])) if (parsed.get(f) !== undefined) out[f] = parsed.get(f);
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

export function parsePreprocessorConfig(input: unknown, fileName = 'preprocessor_config.json'): PreprocessorConfig {
  const json = configObject(input, fileName);
  const r = new ConfigReader(json, fileName);
  const D = PREPROCESSOR_DEFAULTS;
  if (r.has('feature_extractor_type') && json.feature_extractor_type !== 'Wav2Vec2FeatureExtractor') {
    r.fail('feature_extractor_type', `is ${JSON.stringify(json.feature_extractor_type)}; only "Wav2Vec2FeatureExtractor" (raw waveform input) is supported`);
  }
  const feature_size = r.int('feature_size', D.feature_size, 1);
  if (feature_size !== 1) r.fail('feature_size', `is ${feature_size}; wav2vec2 takes mono waveforms (1)`);
  return {
    feature_extractor_type: 'Wav2Vec2FeatureExtractor',
    do_normalize: r.bool('do_normalize', D.do_normalize),
    sampling_rate: r.int('sampling_rate', D.sampling_rate, 1),
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
