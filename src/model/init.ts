// Random initialisation as Hugging Face's Wav2Vec2PreTrainedModel._init_weights leaves a fresh model (what
// from_pretrained does to the parameters a checkpoint lacks, e.g. a new classification head):
//   nn.Linear (attention, feed-forward, classifier.dense/out_proj, projector, classifier): N(0, initializer_range),
//     bias 0
//   feature_projection.projection: U(-k, k) for weight and bias, k = 1/sqrt(in_features)
//   feature-encoder convs (nn.Conv1d): kaiming_normal_ (std sqrt(2 / fan_in)), bias U(-k, k), k = sqrt(1 / fan_in)
//   LayerNorm / GroupNorm: weight 1, bias 0
//   positional conv: bias 0. HF's normal_(conv.weight, std = 2 sqrt(1 / (K * H))) writes to the weight that weight
//     norm recomputes from weight_g / weight_v before every forward, so it has no effect: the effective init is
//     PyTorch's Conv1d default for weight_v (kaiming_uniform_(a=sqrt(5)): U(-b, b), b = 1/sqrt(fan_in), fan_in =
//     H/groups * K) and weight_g = ||weight_v|| over dims 0 and 1 (weight_norm(dim=2)).
//   masked_spec_embed: U[0, 1);  layer_weights: 1 / (num_hidden_layers + 1)
// Values come from our seeded generator (not torch's), so they match HF's distributions, not its numbers.
import type { Wav2Vec2Config } from '../io/config.js';
import { expectedParameterShapes } from '../io/statedict.js';
import type { ModelHead } from './wav2vec2.js';
import { seededRandom } from './specaugment.js';

export interface InitOptions {
  head: ModelHead;
  seed?: number;
  /** initialise only these names (default: every parameter of the config and head) */
  only?: (name: string) => boolean;
}

export interface InitTensor {
  shape: number[];
  data: Float32Array;
}

/** Fresh parameters for a config and head, keyed by HF name, in state-dict order. */
export function initWav2Vec2Weights(config: Wav2Vec2Config, opts: InitOptions): Map<string, InitTensor> {
  const random = seededRandom(opts.seed ?? 0);
  const specs = [...expectedParameterShapes(config, opts.head)].map(([name, shape]) => ({ name, shape }));
  const out = new Map<string, InitTensor>();
  const byName = new Map(specs.map((s) => [s.name, s]));
  for (const s of specs) {
    if (opts.only && !opts.only(s.name)) continue;
    if (s.name.endsWith('pos_conv_embed.conv.weight_g')) continue; // derived from weight_v below
    out.set(s.name, { shape: s.shape, data: initialValues(s, config, random) });
    if (s.name.endsWith('pos_conv_embed.conv.weight_v')) {
      const gName = s.name.replace(/weight_v$/, 'weight_g');
      const g = byName.get(gName);
      if (g && (!opts.only || opts.only(gName))) out.set(gName, { shape: g.shape, data: weightNormMagnitude(out.get(s.name)!.data, s.shape) });
    }
  }
  // keep state-dict order (weight_g precedes weight_v there)
  const ordered = new Map<string, InitTensor>();
  for (const s of specs) if (out.has(s.name)) ordered.set(s.name, out.get(s.name)!);
  return ordered;
}

function initialValues(s: { name: string; shape: number[] }, config: Wav2Vec2Config, random: () => number): Float32Array {
  const n = s.shape.reduce((a, b) => a * b, 1);
  const name = s.name;
  const normal = (std: number) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      // Box-Muller: two independent normals per pair of uniforms
      const u = Math.max(random(), 1e-12);
      const v = random();
      const r = Math.sqrt(-2 * Math.log(u));
      out[i] = std * r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = std * r * Math.sin(2 * Math.PI * v);
    }
    return out;
  };
  const uniform = (lo: number, hi: number) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * random();
    return out;
  };
  const fill = (v: number) => new Float32Array(n).fill(v);

  if (name === 'wav2vec2.masked_spec_embed') return uniform(0, 1);
  if (name === 'layer_weights') return fill(1 / n);
  if (/\.(layer_norm|final_layer_norm)\.weight$/.test(name)) return fill(1);
  if (/\.(layer_norm|final_layer_norm)\.bias$/.test(name)) return fill(0);
  if (name.startsWith('wav2vec2.feature_extractor.conv_layers.')) {
    const i = Number(name.split('.')[3]);
    const fanIn = (i === 0 ? 1 : config.conv_dim[i - 1]) * config.conv_kernel[i];
    if (name.endsWith('.conv.weight')) return normal(Math.sqrt(2 / fanIn));
    const k = Math.sqrt(1 / fanIn);
    return uniform(-k, k);
  }
  if (name.startsWith('wav2vec2.feature_projection.projection.')) {
    const k = Math.sqrt(1 / config.conv_dim[config.conv_dim.length - 1]);
    return uniform(-k, k);
  }
  if (name.endsWith('pos_conv_embed.conv.bias')) return fill(0);
  if (name.endsWith('pos_conv_embed.conv.weight_v')) {
    const b = 1 / Math.sqrt(s.shape[1] * s.shape[2]);
    return uniform(-b, b);
  }
  // every other parameter belongs to an nn.Linear
  if (name.endsWith('.weight')) return normal(config.initializer_range);
  if (name.endsWith('.bias')) return fill(0);
  throw new Error(`wav2vec2 init: no rule for ${name}`);
}

/** weight_norm(dim=2)'s g for v [O, I, K]: g[k] = sqrt(sum over o, i of v[o, i, k]^2), shaped [1, 1, K]. */
export function weightNormMagnitude(v: Float32Array, shape: readonly number[]): Float32Array {
  const K = shape[2];
  const g = new Float64Array(K);
  for (let i = 0; i < v.length; i++) g[i % K] += v[i] * v[i];
  return Float32Array.from(g, Math.sqrt);
}
