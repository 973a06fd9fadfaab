// Parameter layout of the wav2vec2-style encoders (wav2vec2, HuBERT, WavLM share it under their own prefix), the
// checkpoint key rules, and Hugging Face's initialisation of each parameter (Wav2Vec2PreTrainedModel._init_weights):
//   nn.Linear (attention, feed-forward): N(0, initializer_range), bias 0
//   feature_projection.projection: U(-k, k) for weight and bias, k = 1/sqrt(in_features)
//   feature-encoder convs (nn.Conv1d): kaiming_normal_ (std sqrt(2 / fan_in)), bias U(-k, k), k = sqrt(1 / fan_in)
//   LayerNorm / GroupNorm: weight 1, bias 0
//   positional conv: bias 0. HF's normal_(conv.weight, std = 2 sqrt(1 / (K * H))) writes to the weight that weight
//     norm recomputes from weight_g / weight_v before every forward, so it has no effect: the effective init is
//     PyTorch's Conv1d default for weight_v (kaiming_uniform_(a=sqrt(5)): U(-b, b), b = 1/sqrt(fan_in), fan_in =
//     H/groups * K) and weight_g = ||weight_v|| over dims 0 and 1 (weight_norm(dim=2)).
//   masked_spec_embed: U[0, 1)
import { commonSkipReason, extraLayerSkip, type KeyRules } from '../../io/statedict.js';
import { defaultRule, type InitRule } from '../init.js';
import type { Wav2Vec2Config } from './config.js';

export interface Wav2Vec2LayoutOptions {
  /** HuBERT's feat_proj_layer_norm: false drops feature_projection.layer_norm (distilhubert) */
  featureProjectionLayerNorm?: boolean;
  /** extra parameters of encoder layer `l`, inserted after its attention projections (WavLM's gated bias) */
  attentionExtras?: (layer: number) => [string, number[]][];
}

/** The encoder's parameters (names with `prefix`) and shapes in PyTorch state_dict order. */
export function wav2vec2StyleShapes(c: Wav2Vec2Config, prefix: string, opts: Wav2Vec2LayoutOptions = {}): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const H = c.hidden_size;
  const add = (name: string, shape: number[]) => m.set(name, shape);
  const linear = (name: string, out: number, inp: number) => {
    add(`${name}.weight`, [out, inp]);
    add(`${name}.bias`, [out]);
  };
  const norm = (name: string, n: number) => {
    add(`${name}.weight`, [n]);
    add(`${name}.bias`, [n]);
  };
  const p = prefix;
  if (c.mask_time_prob > 0 || c.mask_feature_prob > 0) add(`${p}masked_spec_embed`, [H]);
  for (let i = 0; i < c.conv_dim.length; i++) {
    const base = `${p}feature_extractor.conv_layers.${i}`;
    add(`${base}.conv.weight`, [c.conv_dim[i], i === 0 ? 1 : c.conv_dim[i - 1], c.conv_kernel[i]]);
    if (c.conv_bias) add(`${base}.conv.bias`, [c.conv_dim[i]]);
    // 'group': GroupNorm(C groups) after the first conv only, still named layer_norm
    if (c.feat_extract_norm === 'layer' || i === 0) norm(`${base}.layer_norm`, c.conv_dim[i]);
  }
  const C = c.conv_dim[c.conv_dim.length - 1];
  if (opts.featureProjectionLayerNorm ?? true) norm(`${p}feature_projection.layer_norm`, C);
  linear(`${p}feature_projection.projection`, H, C);
  const K = c.num_conv_pos_embeddings;
  add(`${p}encoder.pos_conv_embed.conv.bias`, [H]);
  add(`${p}encoder.pos_conv_embed.conv.weight_g`, [1, 1, K]);
  add(`${p}encoder.pos_conv_embed.conv.weight_v`, [H, H / c.num_conv_pos_embedding_groups, K]);
  norm(`${p}encoder.layer_norm`, H);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const base = `${p}encoder.layers.${l}`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) linear(`${base}.attention.${proj}`, H, H);
    for (const [name, shape] of opts.attentionExtras?.(l) ?? []) add(`${base}.attention.${name}`, shape);
    norm(`${base}.layer_norm`, H);
    linear(`${base}.feed_forward.intermediate_dense`, c.intermediate_size, H);
    linear(`${base}.feed_forward.output_dense`, H, c.intermediate_size);
    norm(`${base}.final_layer_norm`, H);
  }
  return m;
}

/** top-level modules of the wav2vec2-style base models: a key starting with one of these lacks the prefix */
const BASE_MODEL_PARTS = new Set(['feature_extractor', 'feature_projection', 'encoder', 'masked_spec_embed', 'adapter']);

export function wav2vec2StyleKeyRules(c: Pick<Wav2Vec2Config, 'num_hidden_layers'>, prefix: string): KeyRules {
  const extra = extraLayerSkip(`${prefix}encoder.layers.`, c.num_hidden_layers);
  return {
    prefix,
    baseModelParts: BASE_MODEL_PARTS,
    skipReason: (key) => extra(key) ?? commonSkipReason(key),
    mayBeNew: (name) => name === `${prefix}masked_spec_embed`,
  };
}

/** HF's init of one wav2vec2-style encoder parameter (see the header). */
export function wav2vec2StyleInitRule(name: string, shape: readonly number[], c: Wav2Vec2Config, prefix: string): InitRule {
  if (name === `${prefix}masked_spec_embed`) return { kind: 'uniform', lo: 0, hi: 1 };
  if (name.startsWith(`${prefix}feature_extractor.conv_layers.`) && name.includes('.conv.')) {
    const i = Number(name.slice(`${prefix}feature_extractor.conv_layers.`.length).split('.')[0]);
    const fanIn = (i === 0 ? 1 : c.conv_dim[i - 1]) * c.conv_kernel[i];
    if (name.endsWith('.conv.weight')) return { kind: 'normal', std: Math.sqrt(2 / fanIn) };
    const k = Math.sqrt(1 / fanIn);
    return { kind: 'uniform', lo: -k, hi: k };
  }
  if (name.startsWith(`${prefix}feature_projection.projection.`)) {
    const k = Math.sqrt(1 / c.conv_dim[c.conv_dim.length - 1]);
    return { kind: 'uniform', lo: -k, hi: k };
  }
  if (name.endsWith('pos_conv_embed.conv.bias')) return { kind: 'fill', value: 0 };
  if (name.endsWith('pos_conv_embed.conv.weight_g')) return { kind: 'weightNormMagnitude', of: name.replace(/weight_g$/, 'weight_v') };
  if (name.endsWith('pos_conv_embed.conv.weight_v')) {
    const b = 1 / Math.sqrt(shape[1] * shape[2]);
    return { kind: 'uniform', lo: -b, hi: b };
  }
  return defaultRule(name, c.initializer_range);
}
