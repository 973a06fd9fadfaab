// Wav2Vec2Config (transformers v4.30, configuration_wav2vec2.py): the fields this engine runs, with Hugging Face's
// defaults for absent ones; values it cannot run are refused with the field and file named. HuBERT, WavLM and
// data2vec-audio share most of these fields (their folders parse their own differences through the same reader).
import { CONFIG_LIMITS, ConfigReader, configObject, parseArchitectures, parseHeadConfig, HEAD_CONFIG_FIELDS, type ModelConfigBase } from '../../io/config.js';

export interface Wav2Vec2Config extends ModelConfigBase {
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
  layerdrop: number;
  // SpecAugment
  apply_spec_augment: boolean;
  mask_time_prob: number;
  mask_time_length: number;
  mask_time_min_masks: number;
  mask_feature_prob: number;
  mask_feature_length: number;
  mask_feature_min_masks: number;
  vocab_size: number;
  add_adapter: false;
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

type Widen<T> = T extends readonly number[] ? readonly number[] : T extends number ? number : T extends string ? string : T extends boolean ? boolean : T;
/** a family's defaults for the wav2vec2-style fields (HuBERT and data2vec-audio differ in a few) */
export type Wav2Vec2Defaults = { readonly [K in keyof typeof WAV2VEC2_DEFAULTS]: Widen<(typeof WAV2VEC2_DEFAULTS)[K]> };

/** the fields parseWav2Vec2Config normalises (written back from the parsed values, not the raw JSON) */
export const WAV2VEC2_CONFIG_FIELDS = [
  ...HEAD_CONFIG_FIELDS,
  'conv_dim', 'conv_kernel', 'conv_stride', 'conv_bias', 'num_feat_extract_layers', 'feat_extract_norm',
  'feat_extract_activation', 'do_stable_layer_norm', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
  'intermediate_size', 'hidden_act', 'layer_norm_eps', 'num_conv_pos_embeddings', 'num_conv_pos_embedding_groups',
  'hidden_dropout', 'attention_dropout', 'activation_dropout', 'feat_proj_dropout', 'final_dropout', 'layerdrop',
  'apply_spec_augment', 'mask_time_prob', 'mask_time_length', 'mask_time_min_masks', 'mask_feature_prob',
  'mask_feature_length', 'mask_feature_min_masks', 'vocab_size', 'initializer_range', 'add_adapter',
] as const;

/**
 * The wav2vec2-style fields of a config (shared by HuBERT, WavLM, data2vec-audio), with `defaults` (the family's
 * HF defaults, which differ in a few fields). The caller checks model_type.
 */
export function parseWav2Vec2StyleConfig(r: ConfigReader, modelType: string, defaults: Wav2Vec2Defaults = WAV2VEC2_DEFAULTS): Wav2Vec2Config {
  const json = r.json;
  const D = defaults;
  const L = CONFIG_LIMITS;
  const warnings: string[] = [];
  if (r.has('add_adapter') && r.bool('add_adapter', false)) {
    r.fail('add_adapter', 'is true: the convolutional adapter on top of the encoder (num_adapter_layers etc.) is not supported');
  }
  if (r.has('adapter_attn_dim')) r.fail('adapter_attn_dim', 'is set: attention adapters inside the encoder layers are not supported');

  const conv_dim = r.intList('conv_dim', D.conv_dim, L.width);
  const conv_kernel = r.intList('conv_kernel', D.conv_kernel, L.kernel);
  const conv_stride = r.intList('conv_stride', D.conv_stride, L.stride);
  if (conv_kernel.length !== conv_dim.length || conv_stride.length !== conv_dim.length) {
    r.fail(
      'conv_dim',
      `has ${conv_dim.length} layers but conv_kernel has ${conv_kernel.length} and conv_stride ${conv_stride.length}; the three lists must have the same length`,
    );
  }
  if (r.has('num_feat_extract_layers') && json.num_feat_extract_layers !== conv_dim.length) {
    r.fail('num_feat_extract_layers', `is ${JSON.stringify(json.num_feat_extract_layers)} but conv_dim has ${conv_dim.length} layers`);
  }
  const hidden_size = r.bounded('hidden_size', D.hidden_size, 1, L.width);
  const num_attention_heads = r.bounded('num_attention_heads', D.num_attention_heads, 1, L.heads);
  if (hidden_size % num_attention_heads) r.fail('num_attention_heads', `(${num_attention_heads}) must divide hidden_size (${hidden_size})`);
  const num_conv_pos_embedding_groups = r.bounded('num_conv_pos_embedding_groups', D.num_conv_pos_embedding_groups, 1, L.width);
  if (hidden_size % num_conv_pos_embedding_groups) {
    r.fail('num_conv_pos_embedding_groups', `(${num_conv_pos_embedding_groups}) must divide hidden_size (${hidden_size})`);
  }
  if (r.has('output_hidden_size') && json.output_hidden_size !== hidden_size) {
    r.fail('output_hidden_size', `is ${JSON.stringify(json.output_hidden_size)}; without an adapter it must equal hidden_size (${hidden_size})`);
  }
  const head = parseHeadConfig(r, warnings, { finalDropout: D.final_dropout, initializerRange: D.initializer_range, classifierProjSize: D.classifier_proj_size });

  return {
    model_type: modelType,
    architectures: parseArchitectures(r),
    ...head,
    conv_dim,
    conv_kernel,
    conv_stride,
    conv_bias: r.bool('conv_bias', D.conv_bias),
    num_feat_extract_layers: conv_dim.length,
    feat_extract_norm: r.str('feat_extract_norm', D.feat_extract_norm as 'group' | 'layer', ['group', 'layer'] as const),
    feat_extract_activation: r.str('feat_extract_activation', 'gelu', ['gelu'] as const, 'other activations are not implemented'),
    do_stable_layer_norm: r.bool('do_stable_layer_norm', D.do_stable_layer_norm),
    hidden_size,
    num_hidden_layers: r.bounded('num_hidden_layers', D.num_hidden_layers, 1, L.layers),
    num_attention_heads,
    intermediate_size: r.bounded('intermediate_size', D.intermediate_size, 1, L.width * 4),
    hidden_act: r.str('hidden_act', 'gelu', ['gelu'] as const, 'other activations are not implemented'),
    layer_norm_eps: r.num('layer_norm_eps', D.layer_norm_eps, Number.MIN_VALUE, 1, ' > 0'),
    num_conv_pos_embeddings: r.bounded('num_conv_pos_embeddings', D.num_conv_pos_embeddings, 1, L.kernel),
    num_conv_pos_embedding_groups,
    hidden_dropout: r.prob('hidden_dropout', D.hidden_dropout),
    attention_dropout: r.prob('attention_dropout', D.attention_dropout),
    activation_dropout: r.prob('activation_dropout', D.activation_dropout),
    feat_proj_dropout: r.prob('feat_proj_dropout', D.feat_proj_dropout),
    layerdrop: r.prob('layerdrop', D.layerdrop),
    apply_spec_augment: r.bool('apply_spec_augment', D.apply_spec_augment),
    mask_time_prob: r.prob('mask_time_prob', D.mask_time_prob),
    mask_time_length: r.bounded('mask_time_length', D.mask_time_length, 1, 1 << 20),
    mask_time_min_masks: r.bounded('mask_time_min_masks', D.mask_time_min_masks, 0, 1 << 20),
    mask_feature_prob: r.prob('mask_feature_prob', D.mask_feature_prob),
    mask_feature_length: r.bounded('mask_feature_length', D.mask_feature_length, 1, 1 << 20),
    mask_feature_min_masks: r.bounded('mask_feature_min_masks', D.mask_feature_min_masks, 0, 1 << 20),
    vocab_size: r.bounded('vocab_size', D.vocab_size, 1, 1 << 24),
    add_adapter: false,
    raw: { ...json },
    warnings,
  };
}

export function parseWav2Vec2Config(input: unknown, fileName = 'config.json'): Wav2Vec2Config {
  const json = configObject(input, fileName);
  const r = new ConfigReader(json, fileName);
  if (r.has('model_type') && json.model_type !== 'wav2vec2') {
    r.fail('model_type', `is ${JSON.stringify(json.model_type)}; this parser reads "wav2vec2" configs (the model registry picks the parser by model_type)`);
  }
  return parseWav2Vec2StyleConfig(r, 'wav2vec2');
}
