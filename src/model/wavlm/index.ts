// The WavLM family (model_type "wavlm": microsoft/wavlm-base, -base-plus, -large and their fine-tunes), found by the
// registry. Parameters live under `wavlm.`. WavLM is wav2vec2's encoder (both layouts: do_stable_layer_norm true for
// wavlm-large, false for base) plus a gated relative position bias in every attention layer (HF's
// modeling_wavlm.py, v4.30):
//   - layer 0 alone owns rel_attn_embed [num_buckets, heads]; the ungated bias E[bucket(key - query), h] over the
//     padded length is computed once and reused by every layer (so E's gradient sums over all layers);
//   - each layer gates it per (batch, head, query) from its own attention input x (after layers.L.layer_norm in the
//     stable layout, the raw layer input in the base layout), split per head: r = gru_rel_pos_linear(x_h) [.., 8],
//     a, c = sigmoid(sums of r's first and last four), gate = a * (c * gru_rel_pos_const[h] - 1) + 2;
//   - scores = q k^T / sqrt(d) + gate * bias, padded keys masked.
// The bias never exists as a T x T array here: attentionPacked() takes E and the gate and adds the bias inside the flash
// kernels (kernels/attention.wgsl). With outputHiddenStates the encoder also reports the dense position_bias,
// relative_position_bucket and gate.L (the names of the HF fixture's tensors).
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../tensor.js';
import { keep } from '../../autograd.js';
import { linear } from '../../ops/matmul.js';
import { relativePositionBiasMatrix, relativePositionGate } from '../../ops/attention.js';
import { packedQkvAttention } from '../qkv.js';
import type { EncoderForwardOptions, EncoderInput, EncoderOutput, ModelFamily } from '../family.js';
import { ConfigReader } from '../../io/config.js';
import { defaultRule } from '../init.js';
import { parseWav2Vec2StyleConfig, WAV2VEC2_CONFIG_FIELDS, WAV2VEC2_DEFAULTS, type Wav2Vec2Config } from '../wav2vec2/config.js';
import { wav2vec2StyleShapes, wav2vec2StyleKeyRules, wav2vec2StyleInitRule } from '../wav2vec2/params.js';
import { Wav2Vec2Encoder, receptiveField, type LayerContext } from '../wav2vec2/encoder.js';
import { WaveformPreprocessor } from '../wav2vec2/preprocess.js';
import { wav2vec2StyleRoles } from '../wav2vec2/index.js';

const PREFIX = 'wavlm.';
/** the parameter that holds the (only) relative position embedding */
const EMBEDDING = `${PREFIX}encoder.layers.0.attention.rel_attn_embed.weight`;

export interface WavLMConfig extends Wav2Vec2Config {
  /** buckets of the relative position embedding (both directions together) */
  num_buckets: number;
  /** relative distance at which the logarithmic buckets reach the last one */
  max_bucket_distance: number;
}

/** WavLMConfig (transformers v4.30) has wav2vec2's defaults for every shared field, plus these two. */
export const WAVLM_DEFAULTS = { num_buckets: 320, max_bucket_distance: 800 } as const;

export function parseWavLMConfig(json: Record<string, unknown>, file: string): WavLMConfig {
  const r = new ConfigReader(json, file);
  const base = parseWav2Vec2StyleConfig(r, 'wavlm', WAV2VEC2_DEFAULTS);
  // at least 4 buckets (max_exact = num_buckets / 4 >= 1: HF divides by it), and a max distance above max_exact (HF
  // divides by log(max_distance / max_exact))
  const num_buckets = r.bounded('num_buckets', WAVLM_DEFAULTS.num_buckets, 4, 1 << 20);
  const maxExact = Math.floor(num_buckets / 4);
  const max_bucket_distance = r.bounded('max_bucket_distance', WAVLM_DEFAULTS.max_bucket_distance, maxExact + 1, 1 << 30);
  return { ...base, num_buckets, max_bucket_distance };
}

/** Parameters in state_dict order: wav2vec2's layout with each layer's gate (and layer 0's embedding) added. */
export function wavlmParameterShapes(c: WavLMConfig): Map<string, number[]> {
  const H = c.num_attention_heads;
  const headDim = c.hidden_size / H;
  const withExtras = wav2vec2StyleShapes(c, PREFIX, {
    attentionExtras: (l) => [
      ['gru_rel_pos_linear.weight', [8, headDim]],
      ['gru_rel_pos_linear.bias', [8]],
      ...(l === 0 ? [['rel_attn_embed.weight', [c.num_buckets, H]] as [string, number[]]] : []),
    ],
  });
  // gru_rel_pos_const is a Parameter of WavLMAttention itself: PyTorch lists it before the submodules' (k_proj, ...)
  const out = new Map<string, number[]>();
  for (const [name, shape] of withExtras) {
    const m = name.match(/^(.*\.attention\.)k_proj\.weight$/);
    if (m) out.set(`${m[1]}gru_rel_pos_const`, [1, H, 1, 1]);
    out.set(name, shape);
  }
  return out;
}

export class WavLMEncoder extends Wav2Vec2Encoder {
  declare readonly config: WavLMConfig;
  /** with outputHiddenStates: the reported intermediates of the running forward (gates), else null */
  private reported: Map<string, Tensor> | null = null;

  constructor(rt: Runtime, config: WavLMConfig, params: ReadonlyMap<string, Tensor>) {
    super(rt, config, params, PREFIX);
  }

  override forward(input: EncoderInput, opts: EncoderForwardOptions = {}): EncoderOutput {
    const reported = opts.outputHiddenStates ? new Map<string, Tensor>() : null;
    this.reported = reported;
    let out: EncoderOutput;
    try {
      out = super.forward(input, opts);
    } catch (e) {
      for (const t of reported?.values() ?? []) t.dispose();
      throw e;
    } finally {
      // a checkpointed layer replayed in backward must not report again
      this.reported = null;
    }
    if (reported) {
      const cfg = this.config;
      const { bias, buckets } = relativePositionBiasMatrix(this.p(EMBEDDING.slice(PREFIX.length)), out.frames, cfg.num_buckets, cfg.max_bucket_distance);
      out.intermediates.set('relative_position_bucket', buckets);
      out.intermediates.set('position_bias', bias);
      for (const [name, t] of reported) out.intermediates.set(name, t);
    }
    return out;
  }

  /** Attention of layer `index` with the gated relative position bias (E from layer 0, this layer's gate). */
  override selfAttention(index: number, x: Tensor, ctx: LayerContext): Tensor {
    const cfg = this.config;
    const H = cfg.num_attention_heads;
    const L = `encoder.layers.${index}.attention`;
    const proj = (name: string) => ({ weight: this.p(`${L}.${name}.weight`), bias: this.p(`${L}.${name}.bias`) });
    let gate = relativePositionGate(x, this.p(`${L}.gru_rel_pos_linear.weight`), this.p(`${L}.gru_rel_pos_linear.bias`), this.p(`${L}.gru_rel_pos_const`), H);
    gate = ctx.hook(`gate.${index}`, gate);
    if (this.reported && !this.reported.has(`gate.${index}`)) this.reported.set(`gate.${index}`, keep(gate));
    const relativeBias = { embedding: this.p(EMBEDDING.slice(PREFIX.length)), gate, numBuckets: cfg.num_buckets, maxDistance: cfg.max_bucket_distance };
    const out = packedQkvAttention(x, proj('q_proj'), proj('k_proj'), proj('v_proj'), { heads: H, keyMask: ctx.keyMask, dropout: this.training ? cfg.attention_dropout : 0, relativeBias });
    return linear(out, this.p(`${L}.out_proj.weight`), this.p(`${L}.out_proj.bias`));
  }
}

export const wavlmFamily: ModelFamily<WavLMConfig> = {
  name: 'wavlm',
  modelTypes: ['wavlm'],
  classNames: { base: 'WavLMModel', sequenceClassification: 'WavLMForSequenceClassification' },
  parseConfig: parseWavLMConfig,
  configFields: [...WAV2VEC2_CONFIG_FIELDS, 'num_buckets', 'max_bucket_distance'],
  encoderParameterShapes: wavlmParameterShapes,
  keyRules: (c) => wav2vec2StyleKeyRules(c, PREFIX),
  initRule: (name, shape, c) => {
    // WavLMPreTrainedModel._init_weights is wav2vec2's; what it does not touch keeps PyTorch's construction values:
    // gru_rel_pos_const = ones, rel_attn_embed (nn.Embedding) ~ N(0, 1); gru_rel_pos_linear is an nn.Linear
    if (name.endsWith('.attention.gru_rel_pos_const')) return { kind: 'fill', value: 1 };
    if (name === EMBEDDING) return { kind: 'normal', std: 1 };
    if (name.includes('.attention.gru_rel_pos_linear.')) return defaultRule(name, c.initializer_range);
    return wav2vec2StyleInitRule(name, shape, c, PREFIX);
  },
  ...wav2vec2StyleRoles(PREFIX),
  createEncoder: (rt, c, params) => new WavLMEncoder(rt, c, params),
  parsePreprocessor: (json, file, c) => WaveformPreprocessor.parse(json, file, receptiveField(c)),
};
