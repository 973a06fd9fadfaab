// config.json of a Whisper model (WhisperConfig, transformers v4.30 defaults), as far as the encoder and
// WhisperForAudioClassification's head use it. Decoder fields are kept in `raw` and otherwise ignored. Sizes are
// bounded (hostile files) and values this engine cannot run are refused with the file and field named.
import { isPlainObject } from '../../io/source.js';

export interface WhisperConfig {
  model_type: 'whisper';
  architectures: string[];
  num_mel_bins: number;
  d_model: number;
  encoder_layers: number;
  encoder_attention_heads: number;
  encoder_ffn_dim: number;
  /** frames after conv2 (1500 = 30 s); embed_positions has this many rows and HF adds all of them */
  max_source_positions: number;
  activation_function: 'gelu';
  /** computed by HF's encoder but never used in its forward (manifest: scale_embedding) */
  scale_embedding: boolean;
  dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  encoder_layerdrop: number;
  init_std: number;
  use_weighted_layer_sum: boolean;
  classifier_proj_size: number;
  num_labels: number;
  labels: string[];
  id2label: Record<number, string>;
  label2id: Record<string, number>;
  problem_type: string | null;
  raw: Record<string, unknown>;
  warnings: string[];
}

/** WhisperConfig.__init__ defaults (transformers v4.30) for the fields the encoder and the classification head read */
export const WHISPER_DEFAULTS = {
  num_mel_bins: 80,
  d_model: 256,
  encoder_layers: 6,
  encoder_attention_heads: 4,
  encoder_ffn_dim: 1536,
  max_source_positions: 1500,
  activation_function: 'gelu',
  scale_embedding: false,
  dropout: 0.0,
  attention_dropout: 0.0,
  activation_dropout: 0.0,
  encoder_layerdrop: 0.0,
  init_std: 0.02,
  use_weighted_layer_sum: false,
  classifier_proj_size: 256,
  num_labels: 2,
} as const;

// generous for real checkpoints (large-v3: d_model 1280, 32 layers, 20 heads, ffn 5120, 128 mels, 1500 positions)
const MAX_DIM = 1 << 14;
const MAX_LAYERS = 256;
const MAX_POSITIONS = 1 << 16;
const MAX_LABELS = 1 << 16;

export function parseWhisperConfig(json: unknown, fileName = 'config.json'): WhisperConfig {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object`);
  const j = json;
  const fail = (field: string, msg: string): never => {
    throw new Error(`${fileName}: "${field}" ${msg}`);
  };
  const has = (f: string) => j[f] !== undefined && j[f] !== null;
  const int = (f: string, def: number, lo: number, hi: number): number => {
    const v = has(f) ? j[f] : def;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) fail(f, `must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    return v as number;
  };
  const prob = (f: string, def: number): number => {
    const v = has(f) ? j[f] : def;
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(f, `must be a number in [0, 1], got ${JSON.stringify(v)}`);
    return v as number;
  };
  const bool = (f: string, def: boolean): boolean => {
    const v = has(f) ? j[f] : def;
    if (typeof v !== 'boolean') fail(f, `must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const D = WHISPER_DEFAULTS;
  const warnings: string[] = [];
  if (has('model_type') && j.model_type !== 'whisper') fail('model_type', `is ${JSON.stringify(j.model_type)}; expected "whisper"`);

  const d_model = int('d_model', D.d_model, 1, MAX_DIM);
  const encoder_attention_heads = int('encoder_attention_heads', D.encoder_attention_heads, 1, MAX_DIM);
  if (d_model % encoder_attention_heads) fail('encoder_attention_heads', `(${encoder_attention_heads}) must divide d_model (${d_model})`);
  const activation = has('activation_function') ? j.activation_function : D.activation_function;
  if (activation !== 'gelu') fail('activation_function', `is ${JSON.stringify(activation)}; only "gelu" (exact erf GELU) is implemented`);
  const init_std = has('init_std') ? j.init_std : D.init_std;
  if (typeof init_std !== 'number' || !(init_std >= 0 && init_std <= 10)) fail('init_std', `must be a number in [0, 10], got ${JSON.stringify(init_std)}`);

  // labels (PretrainedConfig): id2label wins over num_labels; JSON keys are strings
  let labels: string[];
  if (has('id2label')) {
    const raw = j.id2label;
    if (!isPlainObject(raw)) return fail('id2label', 'must be an object of class index -> label name');
    const entries = Object.entries(raw);
    if (entries.length < 1 || entries.length > MAX_LABELS) fail('id2label', `must have 1..${MAX_LABELS} labels, has ${entries.length}`);
    labels = new Array<string>(entries.length);
    for (const [k, v] of entries) {
      const i = Number(k);
      if (!Number.isSafeInteger(i) || String(i) !== k.trim() || i < 0 || i >= entries.length) fail('id2label', `has key ${JSON.stringify(k)}; keys must be the class indices 0..${entries.length - 1}`);
      if (typeof v !== 'string') fail('id2label', `["${k}"] must be a string`);
      labels[i] = v as string;
    }
    if (new Set(labels).size !== labels.length) fail('id2label', 'has duplicate label names');
    if (has('num_labels') && j.num_labels !== labels.length) {
      warnings.push(`${fileName}: num_labels=${JSON.stringify(j.num_labels)} disagrees with id2label (${labels.length} labels); using id2label, as transformers does`);
    }
  } else {
    const n = int('num_labels', D.num_labels, 1, MAX_LABELS);
    labels = Array.from({ length: n }, (_, i) => `LABEL_${i}`);
  }
  const id2label: Record<number, string> = {};
  const label2id: Record<string, number> = {};
  labels.forEach((l, i) => {
    id2label[i] = l;
    label2id[l] = i;
  });
  let architectures: string[] = [];
  if (has('architectures')) {
    if (!Array.isArray(j.architectures) || j.architectures.length > 64 || !j.architectures.every((a) => typeof a === 'string')) fail('architectures', 'must be a list of strings');
    architectures = [...(j.architectures as string[])];
  }
  let problem_type: string | null = null;
  if (has('problem_type')) {
    if (j.problem_type !== 'single_label_classification') fail('problem_type', `is ${JSON.stringify(j.problem_type)}; only "single_label_classification" is supported`);
    problem_type = 'single_label_classification';
  }
  return {
    model_type: 'whisper',
    architectures,
    num_mel_bins: int('num_mel_bins', D.num_mel_bins, 1, 512),
    d_model,
    encoder_layers: int('encoder_layers', D.encoder_layers, 1, MAX_LAYERS),
    encoder_attention_heads,
    encoder_ffn_dim: int('encoder_ffn_dim', D.encoder_ffn_dim, 1, 4 * MAX_DIM),
    max_source_positions: int('max_source_positions', D.max_source_positions, 1, MAX_POSITIONS),
    activation_function: 'gelu',
    scale_embedding: bool('scale_embedding', D.scale_embedding),
    dropout: prob('dropout', D.dropout),
    attention_dropout: prob('attention_dropout', D.attention_dropout),
    activation_dropout: prob('activation_dropout', D.activation_dropout),
    encoder_layerdrop: prob('encoder_layerdrop', D.encoder_layerdrop),
    init_std: init_std as number,
    use_weighted_layer_sum: bool('use_weighted_layer_sum', D.use_weighted_layer_sum),
    classifier_proj_size: int('classifier_proj_size', D.classifier_proj_size, 1, 4 * MAX_DIM),
    num_labels: labels.length,
    labels,
    id2label,
    label2id,
    problem_type,
    raw: { ...j },
    warnings,
  };
}
