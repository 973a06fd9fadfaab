// The demo's small models, one per family (`ser demo --family F`): the same size everywhere (hidden 64, 2 layers,
// 4 heads, a 32-channel conv front end) so lavapipe trains each from scratch in minutes, in each family's own layout.
/** The demo's model: the XLSR layout (layer-norm conv encoder, stable layer norm) at a size lavapipe trains in minutes. */
export const DEMO_CONFIG = {
  model_type: 'wav2vec2',
  architectures: ['Wav2Vec2ForSpeechClassification'],
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  feat_extract_activation: 'gelu',
  do_stable_layer_norm: true,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 128,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-5,
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
  hidden_dropout: 0.05,
  attention_dropout: 0.0,
  activation_dropout: 0.0,
  feat_proj_dropout: 0.0,
  final_dropout: 0.1,
  layerdrop: 0.0,
  apply_spec_augment: true,
  mask_time_prob: 0.05,
  mask_time_length: 5,
  mask_feature_prob: 0.0,
  pooling_mode: 'mean',
};

/** config.json (without labels) of the demo model of a family. */
export const DEMO_CONFIGS: Record<string, Record<string, unknown>> = {
  wav2vec2: DEMO_CONFIG,
  hubert: { ...DEMO_CONFIG, model_type: 'hubert', architectures: ['HubertForSequenceClassification'], feat_proj_layer_norm: true },
  'data2vec-audio': (() => {
    const { feat_extract_norm: _norm, do_stable_layer_norm: _stable, ...rest } = DEMO_CONFIG;
    // 2 stacked positional convs of kernel 7 (num_conv_pos_embeddings counts layers in data2vec-audio)
    return { ...rest, model_type: 'data2vec-audio', architectures: ['Data2VecAudioForSequenceClassification'], num_conv_pos_embeddings: 2, conv_pos_kernel_size: 7 };
  })(),
};

/** Family names `--family` accepts (aliases: data2vec). */
export function demoConfigFor(family: string): Record<string, unknown> {
  const key = family === 'data2vec' ? 'data2vec-audio' : family;
  const c = DEMO_CONFIGS[key];
  if (!c) throw new Error(`--family must be one of ${Object.keys(DEMO_CONFIGS).join(', ')} (or data2vec), got '${family}'`);
  return c;
}
