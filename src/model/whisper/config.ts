// config.json of a Whisper model (WhisperConfig, transformers v4.30 defaults), as far as the encoder and
// WhisperForAudioClassification's head use it; decoder fields stay in `raw`, untouched. WhisperConfig's
// attribute_map names d_model hidden_size and encoder_layers num_hidden_layers: the common base carries both names.
// Sizes are bounded (hostile files); values this engine cannot run are refused with the file and field named.
import { CONFIG_LIMITS, ConfigReader, parseArchitectures, parseHeadConfig, type ModelConfigBase } from '../../io/config.js';

export interface WhisperConfig extends ModelConfigBase {
  model_type: 'whisper';
  num_mel_bins: number;
  d_model: number;
  encoder_layers: number;
  encoder_attention_heads: number;
  encoder_ffn_dim: number;
  /** frames after conv2 (1500 = 30 s); embed_positions has this many rows and HF adds all of them */
  max_source_positions: number;
  activation_function: 'gelu';
  /** HF's encoder computes embed_scale from it but never applies it (manifest: scale_embedding) */
  scale_embedding: boolean;
  dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  encoder_layerdrop: number;
  init_std: number;
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
  classifier_proj_size: 256,
} as const;

/** the fields parseWhisperConfig normalises (written back from the parsed values when saving) */
export const WHISPER_CONFIG_FIELDS = [
  'num_mel_bins', 'd_model', 'encoder_layers', 'encoder_attention_heads', 'encoder_ffn_dim', 'max_source_positions',
  'activation_function', 'scale_embedding', 'dropout', 'attention_dropout', 'activation_dropout', 'encoder_layerdrop',
  'init_std',
] as const;

export function parseWhisperConfig(json: Record<string, unknown>, file: string): WhisperConfig {
  const r = new ConfigReader(json, file);
  const D = WHISPER_DEFAULTS;
  const warnings: string[] = [];
  if (r.has('model_type') && json.model_type !== 'whisper') r.fail('model_type', `is ${JSON.stringify(json.model_type)}; expected "whisper"`);
  const d_model = r.bounded('d_model', D.d_model, 1, CONFIG_LIMITS.width);
  const encoder_layers = r.bounded('encoder_layers', D.encoder_layers, 1, CONFIG_LIMITS.layers);
  const encoder_attention_heads = r.bounded('encoder_attention_heads', D.encoder_attention_heads, 1, CONFIG_LIMITS.heads);
  if (d_model % encoder_attention_heads) r.fail('encoder_attention_heads', `(${encoder_attention_heads}) must divide d_model (${d_model})`);
  // Whisper's classifier head has no dropout before it (final_dropout 0); nn.Linear init uses init_std
  const head = parseHeadConfig(r, warnings, { finalDropout: 0, initializerField: 'init_std', initializerRange: D.init_std, classifierProjSize: D.classifier_proj_size });
  if (head.initializer_range > 10) r.fail('init_std', `is ${head.initializer_range}; expected a small standard deviation`);
  return {
    ...head,
    model_type: 'whisper',
    architectures: parseArchitectures(r),
    hidden_size: d_model,
    num_hidden_layers: encoder_layers,
    num_mel_bins: r.bounded('num_mel_bins', D.num_mel_bins, 1, 512),
    d_model,
    encoder_layers,
    encoder_attention_heads,
    encoder_ffn_dim: r.bounded('encoder_ffn_dim', D.encoder_ffn_dim, 1, CONFIG_LIMITS.width),
    max_source_positions: r.bounded('max_source_positions', D.max_source_positions, 1, CONFIG_LIMITS.width),
    activation_function: r.str('activation_function', D.activation_function, ['gelu'] as const, 'only the exact erf GELU is implemented'),
    scale_embedding: r.bool('scale_embedding', D.scale_embedding),
    dropout: r.prob('dropout', D.dropout),
    attention_dropout: r.prob('attention_dropout', D.attention_dropout),
    activation_dropout: r.prob('activation_dropout', D.activation_dropout),
    encoder_layerdrop: r.prob('encoder_layerdrop', D.encoder_layerdrop),
    init_std: head.initializer_range,
    raw: { ...json },
    warnings,
  };
}
