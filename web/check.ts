// The same computations on fixed inputs, in whichever engine runs them: the browser (dist/ser.browser.js on
// navigator.gpu) and Node (dist/ser.node.js on Dawn). tools/browser-test.mjs runs both and compares the outputs
// (relative L2). This file imports only types: the library it exercises is passed in, so the bundle under test is
// the one a page would load, and this file bundles to a few kilobytes usable from either side.
import type * as Core from '../src/index.js';

type Api = typeof Core;
type Runtime = Core.Runtime;
type Tensor = Core.Tensor;

export interface CheckOutput {
  name: string;
  shape: number[];
  data: number[];
  /** set when the check threw (shape and data are then empty) */
  error?: string;
  /** wall time of the check, including shader compilation on a first run */
  ms: number;
}

export interface CheckReport {
  adapter: string;
  features: string[];
  outputs: CheckOutput[];
}

/** Fixed pseudo-random numbers in [-1, 1): integer arithmetic only, so every JavaScript engine yields the same bits. */
export function fixedRandom(seed: number, n: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** ||a - b|| / ||b|| in float64 (1 when b is all zeros and a is not, 0 when both are). */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? (num === 0 ? 0 : 1) : Math.sqrt(num / den);
}

/** The two model layouts checked end to end, at a size that runs in a second on a software adapter. */
export function tinyConfigJson(layout: 'stable' | 'base'): Record<string, unknown> {
  const labels = ['anger', 'happiness', 'neutral'];
  return {
    model_type: 'wav2vec2',
    architectures: ['Wav2Vec2ForSpeechClassification'],
    conv_dim: [16, 16, 16],
    conv_kernel: [10, 3, 2],
    conv_stride: [5, 2, 2],
    conv_bias: layout === 'stable',
    feat_extract_norm: layout === 'stable' ? 'layer' : 'group',
    do_stable_layer_norm: layout === 'stable',
    hidden_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 3,
    intermediate_size: 40,
    num_conv_pos_embeddings: 8,
    num_conv_pos_embedding_groups: 4,
    layer_norm_eps: 1e-5,
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
  };
}

export const CHECK_NAMES = ['matmul', 'conv1d', 'layerNorm', 'attention.forward', 'attention.backward', 'wav2vec2.stable', 'wav2vec2.base', 'wav2vec2.backward'] as const;

/** parameters whose gradients the backward check compares: one per kind of op on the way down */
const BACKWARD_PARAMETERS = [
  'classifier.out_proj.weight',
  'wav2vec2.encoder.layers.0.attention.q_proj.weight',
  'wav2vec2.encoder.layers.0.layer_norm.weight',
  'wav2vec2.encoder.pos_conv_embed.conv.weight_v',
  'wav2vec2.feature_projection.projection.weight',
  'wav2vec2.feature_extractor.conv_layers.1.layer_norm.weight',
  'wav2vec2.feature_extractor.conv_layers.0.conv.weight',
];

/**
 * Runs every check (or those named in `only`) on `rt` and returns the outputs as plain arrays. Odd sizes throughout
 * (no dimension is a multiple of a tile), bias and activation epilogues, strides, padding, groups and a key mask.
 */
export async function runChecks(api: Api, rt: Runtime, only?: readonly string[]): Promise<CheckReport> {
  const { Tensor } = api;
  const outputs: CheckOutput[] = [];
  const owned: Tensor[] = [];
  const t = (seed: number, shape: number[], scale = 1): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = fixedRandom(seed, n);
    if (scale !== 1) for (let i = 0; i < n; i++) data[i] *= scale;
    const x = Tensor.fromData(rt, data, shape, 'f32', `input${seed}`);
    owned.push(x);
    return x;
  };
  const emit = async (name: string, x: Tensor, t0: number) => {
    const data = await x.readFloat();
    outputs.push({ name, shape: [...x.shape], data: Array.from(data), ms: performance.now() - t0 });
  };
  const want = (name: string) => !only || only.includes(name) || only.some((o) => name.startsWith(`${o}.`));
  // one failing check (an adapter limit, a compile error) is reported under its name and the others still run
  const attempt = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      outputs.push({ name, shape: [], data: [], ms: 0, error: e instanceof Error ? e.message : String(e) });
      await rt.sync().catch(() => {}); // drop GPU errors the failure left pending, so they are not blamed on the next check
    }
  };

  try {
    if (want('matmul')) await attempt('matmul', async () => {
      const t0 = performance.now();
      const y = api.matmul(t(1, [3, 37, 45]), t(2, [45, 29]), { bias: t(3, [29]), activation: 'gelu' });
      owned.push(y);
      await emit('matmul', y, t0);
    });
    if (want('conv1d')) await attempt('conv1d', async () => {
      const t0 = performance.now();
      const y = api.conv1d(t(4, [2, 6, 101]), t(5, [10, 3, 5], 0.5), t(6, [10]), { stride: 2, padding: 2, groups: 2 });
      owned.push(y);
      await emit('conv1d', y, t0);
    });
    if (want('layerNorm')) await attempt('layerNorm', async () => {
      const t0 = performance.now();
      const x = t(7, [5, 23, 67], 3);
      const y = api.layerNorm(x, t(8, [67]), t(9, [67]), 1e-5);
      owned.push(y);
      await emit('layerNorm', y, t0);
    });
    if (want('attention.forward') || want('attention.backward')) await attempt('attention', async () => {
      const t0 = performance.now();
      const [B, T, H, D] = [2, 19, 3, 8];
      const q = t(10, [B, T, H * D]);
      const k = t(11, [B, T, H * D]);
      const v = t(12, [B, T, H * D]);
      for (const x of [q, k, v]) x.requiresGrad = true;
      const mask = new Int32Array(B * T).fill(1);
      for (let i = 13; i < T; i++) mask[T + i] = 0; // the second item has 13 real frames
      const keyMask = Tensor.fromData(rt, mask, [B, T], 'i32', 'key_mask');
      owned.push(keyMask);
      const y = api.attention(q, k, v, { heads: H, keyMask });
      owned.push(y);
      if (want('attention.forward')) await emit('attention.forward', y, t0);
      if (want('attention.backward')) {
        await attempt('attention.backward', async () => {
          const t1 = performance.now();
          api.backward(y, t(13, [B, T, H * D]));
          for (const x of [q, k, v]) if (x.grad) owned.push(x.grad);
          for (const [name, x] of [['dq', q], ['dk', k], ['dv', v]] as const) await emit(`attention.backward.${name}`, x.grad!, t1);
        });
      }
    });
    for (const layout of ['stable', 'base'] as const) {
      const name = `wav2vec2.${layout}`;
      if (!want(name)) continue;
      await attempt(name, async () => {
        const t0 = performance.now();
        const config = api.parseWav2Vec2Config(tinyConfigJson(layout), `${name}/config.json`);
        const model = api.Wav2Vec2ForSpeechClassification.random(rt, config, { initSeed: 7 });
        try {
          model.eval();
          const S = 1601;
          const input = t(layout === 'stable' ? 20 : 21, [2, S], 0.5);
          const out = api.noGrad(() => model.forward({ inputValues: input, inputLengths: [S, 1203] }));
          await emit(`${name}.logits`, out.logits!, t0);
          await emit(`${name}.last_hidden_state`, out.last_hidden_state, t0);
          api.disposeOutput(out);
        } finally {
          model.dispose();
        }
      });
    }
    // a training step's gradients through the whole model (feature encoder unfrozen, eval mode: no dropout, so
    // both engines compute the same function)
    if (want('wav2vec2.backward')) await attempt('wav2vec2.backward', async () => {
      const t0 = performance.now();
      const config = api.parseWav2Vec2Config(tinyConfigJson('stable'), 'wav2vec2.backward/config.json');
      const model = api.Wav2Vec2ForSpeechClassification.random(rt, config, { initSeed: 8, freezeFeatureEncoder: false });
      try {
        model.eval();
        const S = 1337;
        const out = model.forward({ inputValues: t(22, [2, S], 0.5), inputLengths: [S, 1111], labels: [2, 0] });
        api.backward(out.loss!);
        await emit('wav2vec2.backward.loss', out.loss!, t0);
        api.disposeOutput(out);
        for (const name of BACKWARD_PARAMETERS) await emit(`wav2vec2.backward.${name}`, model.params.get(name)!.grad!, t0);
      } finally {
        model.dispose();
      }
    });
  } finally {
    for (const x of owned) x.dispose();
  }
  return { adapter: `${rt.adapter.vendor} ${rt.adapter.architecture} ${rt.adapter.description}`.trim(), features: [...rt.features].sort(), outputs };
}
