// The data2vec-audio family (model_type "data2vec-audio": facebook/data2vec-audio-base/large and fine-tunes),
// found by the registry. Parameters live under `data2vec_audio.`. Differences from wav2vec2 (HF's
// modeling_data2vec_audio.py, v4.30), all handled here:
//   - one layout: LayerNorm after every feature-encoder conv (no feat_extract_norm), post-LN transformer layers
//     (wav2vec2-base order: encoder.layer_norm after the positional embedding is added);
//   - the positional embedding is a stack of num_conv_pos_embeddings layers (the COUNT here; wav2vec2 uses the
//     name for the kernel), each Conv1d(H, H, conv_pos_kernel_size, padding k//2, groups, bias; no weight norm)
//     -> drop the last frame for an even kernel -> LayerNorm(H) without affine weights (eps 1e-5) -> GELU;
//     the stack's output is added to its input.
// HF zeroes padded frames only before the first positional layer; later layers read the (now non-zero) padded
// frames, so a padded batch's last valid frames differ from the same clip run alone. We match HF (the fixture's
// data2vec_padding_leak documents it), which falls out of running the same ops in the same order.
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../tensor.js';
import { tidy } from '../../autograd.js';
import { conv1d } from '../../ops/conv.js';
import { layerNorm } from '../../ops/norm.js';
import { gelu } from '../../ops/activation.js';
import { transposeLast2, sliceLast } from '../../ops/shape.js';
import type { ModelFamily, TensorHook } from '../family.js';
import { CONFIG_LIMITS, ConfigReader, HEAD_CONFIG_FIELDS } from '../../io/config.js';
import { commonSkipReason, extraLayerSkip } from '../../io/statedict.js';
import { defaultRule } from '../init.js';
import { parseWav2Vec2StyleConfig, WAV2VEC2_DEFAULTS, type Wav2Vec2Config } from '../wav2vec2/config.js';
import { wav2vec2StyleShapes, wav2vec2StyleInitRule } from '../wav2vec2/params.js';
import { Wav2Vec2Encoder, receptiveField, swap } from '../wav2vec2/encoder.js';
import { WaveformPreprocessor } from '../wav2vec2/preprocess.js';
import { wav2vec2StyleRoles } from '../wav2vec2/index.js';

const PREFIX = 'data2vec_audio.';

export interface Data2VecAudioConfig extends Wav2Vec2Config {
  /** kernel of each positional conv layer (num_conv_pos_embeddings counts the layers) */
  conv_pos_kernel_size: number;
}

/** Data2VecAudioConfig (transformers v4.30) defaults where they differ from Wav2Vec2Config's */
export const DATA2VEC_AUDIO_DEFAULTS = { ...WAV2VEC2_DEFAULTS, num_conv_pos_embeddings: 5, feat_extract_norm: 'layer', do_stable_layer_norm: false } as const;

export function parseData2VecAudioConfig(json: Record<string, unknown>, file: string): Data2VecAudioConfig {
  const r = new ConfigReader(json, file);
  // the fixed layout: refuse a config that asks for another one rather than run it wrongly
  if (r.has('feat_extract_norm') && json.feat_extract_norm !== 'layer') r.fail('feat_extract_norm', 'must be "layer" (data2vec-audio has LayerNorm in every conv layer)');
  if (r.has('do_stable_layer_norm') && json.do_stable_layer_norm !== false) r.fail('do_stable_layer_norm', 'must be false (data2vec-audio is post-LN)');
  const base = parseWav2Vec2StyleConfig(r, 'data2vec-audio', DATA2VEC_AUDIO_DEFAULTS);
  return { ...base, feat_extract_norm: 'layer', do_stable_layer_norm: false, conv_pos_kernel_size: r.bounded('conv_pos_kernel_size', 19, 1, CONFIG_LIMITS.kernel) };
}

/** Parameters in state_dict order: wav2vec2's layout with the positional conv stack in place of the weight-normed conv. */
function shapes(c: Data2VecAudioConfig): Map<string, number[]> {
  const H = c.hidden_size;
  const out = new Map<string, number[]>();
  for (const [name, shape] of wav2vec2StyleShapes(c, PREFIX)) {
    if (name.startsWith(`${PREFIX}encoder.pos_conv_embed.`)) {
      if (!name.endsWith('conv.bias')) continue;
      for (let j = 0; j < c.num_conv_pos_embeddings; j++) {
        out.set(`${PREFIX}encoder.pos_conv_embed.layers.${j}.conv.weight`, [H, H / c.num_conv_pos_embedding_groups, c.conv_pos_kernel_size]);
        out.set(`${PREFIX}encoder.pos_conv_embed.layers.${j}.conv.bias`, [H]);
      }
      continue;
    }
    out.set(name, shape);
  }
  return out;
}

class Data2VecAudioEncoder extends Wav2Vec2Encoder {
  declare readonly config: Data2VecAudioConfig;

  constructor(rt: Runtime, config: Data2VecAudioConfig, params: ReadonlyMap<string, Tensor>) {
    super(rt, config, params, PREFIX);
  }

  /** The stacked positional convolutions: x [B, T, H] -> stack output [B, T, H] (added to x by the caller). */
  override positionalEmbedding(x: Tensor, _hook?: TensorHook): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const K = cfg.conv_pos_kernel_size;
      const T = x.shape[1];
      let y = transposeLast2(x);
      for (let j = 0; j < cfg.num_conv_pos_embeddings; j++) {
        const L = `encoder.pos_conv_embed.layers.${j}.conv`;
        y = swap(y, conv1d(y, this.p(`${L}.weight`), this.p(`${L}.bias`), { padding: Math.floor(K / 2), groups: cfg.num_conv_pos_embedding_groups, derived: this.derived }));
        if (y.shape[2] !== T) y = swap(y, sliceLast(y, 0, T));
        // LayerNorm over channels, no affine weights, eps 1e-5 (nn.LayerNorm default), then GELU
        y = swap(y, transposeLast2(y));
        y = swap(y, layerNorm(y, null, null, 1e-5));
        y = swap(y, gelu(y));
        y = swap(y, transposeLast2(y));
      }
      return swap(y, transposeLast2(y));
    });
  }
}

export const data2vecAudioFamily: ModelFamily<Data2VecAudioConfig> = {
  name: 'data2vec-audio',
  modelTypes: ['data2vec-audio'],
  classNames: { base: 'Data2VecAudioModel', sequenceClassification: 'Data2VecAudioForSequenceClassification' },
  parseConfig: parseData2VecAudioConfig,
  configFields: [
    ...HEAD_CONFIG_FIELDS, 'conv_dim', 'conv_kernel', 'conv_stride', 'conv_bias', 'num_feat_extract_layers', 'feat_extract_activation',
    'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'hidden_act', 'layer_norm_eps',
    'num_conv_pos_embeddings', 'num_conv_pos_embedding_groups', 'conv_pos_kernel_size', 'hidden_dropout', 'attention_dropout',
    'activation_dropout', 'feat_proj_dropout', 'final_dropout', 'layerdrop', 'mask_time_prob', 'mask_time_length',
    'mask_time_min_masks', 'mask_feature_prob', 'mask_feature_length', 'mask_feature_min_masks', 'vocab_size', 'initializer_range',
  ],
  encoderParameterShapes: shapes,
  keyRules: (c) => {
    const extra = extraLayerSkip(`${PREFIX}encoder.layers.`, c.num_hidden_layers);
    return {
      prefix: PREFIX,
      baseModelParts: new Set(['feature_extractor', 'feature_projection', 'encoder', 'masked_spec_embed', 'adapter']),
      skipReason: (key) => extra(key) ?? commonSkipReason(key),
      mayBeNew: (name) => name === `${PREFIX}masked_spec_embed`,
    };
  },
  initRule: (name, shape, c) => {
    // Data2VecAudioPreTrainedModel._init_weights: positional convs kaiming_normal_ (fan_in = H/groups * k), bias 0
    if (name.startsWith(`${PREFIX}encoder.pos_conv_embed.layers.`)) {
      if (name.endsWith('.bias')) return { kind: 'fill', value: 0 };
      return { kind: 'normal', std: Math.sqrt(2 / (shape[1] * shape[2])) };
    }
    if (name.startsWith(`${PREFIX}feature_extractor.`) || name.startsWith(`${PREFIX}feature_projection.projection.`) || name === `${PREFIX}masked_spec_embed`) {
      return wav2vec2StyleInitRule(name, shape, c, PREFIX);
    }
    return defaultRule(name, c.initializer_range);
  },
  ...wav2vec2StyleRoles(PREFIX),
  createEncoder: (rt, c, params) => new Data2VecAudioEncoder(rt, c, params),
  parsePreprocessor: (json, file, c) => WaveformPreprocessor.parse(json, file, receptiveField(c)),
};
