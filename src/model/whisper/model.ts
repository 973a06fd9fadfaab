// Whisper's encoder with transformers' WhisperForAudioClassification head, forward and backward through our autograd,
// with Hugging Face semantics (modeling_whisper.py v4.30; the weighted layer sum as fixed in v4.37, see
// ../shared/fixtures/whisper_tiny_cls/manifest.json) and Hugging Face parameter names:
//
//   input_features [B, num_mel_bins, F] (log-mel, features.ts; F = 3000 for 30 s)
//   --conv1 (k3, p1) -> GELU -> conv2 (k3, s2, p1) -> GELU, to [B, T, D]--> extract_features (T = (F - 1)/2 + 1)
//   + encoder.embed_positions.weight (all max_source_positions rows: T must equal it, 1500 for 3000 frames, as HF's
//     broadcasting demands; a parameter with a gradient) -> dropout --> hidden_states.0
//   --pre-LN layers: x + out_proj(attn(LN(x))) (k_proj without bias, softmax(q k / sqrt(d)), no attention mask),
//     x + fc2(dropout(GELU(fc1(LN(x)))))--> hidden_states.1 .. L-1
//   --encoder.layer_norm--> hidden_states.L = last_hidden_state
//   head: [softmax(layer_weights)-weighted sum of all L + 1 hidden states] -> projector per frame -> mean over all T
//     frames (no mask: padding frames count, as in HF) -> classifier -> logits; loss = cross entropy, batch mean.
//
// HF computes embed_scale but never applies it (scale_embedding has no effect); we do the same. Dropout
// (config.dropout, activation_dropout, attention_dropout) and encoder_layerdrop act in training mode only and draw
// from our seeded generators, not torch's. WhisperForAudioClassification applies no SpecAugment.
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../tensor.js';
import { checkpoint, noGrad, record, tidy } from '../../autograd.js';
import { add, scale } from '../../ops/elementwise.js';
import { linear, matmul } from '../../ops/matmul.js';
import { conv1d } from '../../ops/conv.js';
import { layerNorm } from '../../ops/norm.js';
import { gelu, dropout } from '../../ops/activation.js';
import { attention } from '../../ops/attention.js';
import { transposeLast2 } from '../../ops/shape.js';
import { poolTime, weightedLayerSum } from '../../ops/reduce.js';
import { crossEntropy, softmax } from '../../ops/loss.js';
import { mulberry32 } from '../../data/random.js';
import type { TensorSource } from '../../io/source.js';
import type { LoadReport } from '../../io/statedict.js';
import type { WhisperConfig } from './config.js';
import { type WhisperHead, detectWhisperHead, initWhisperWeights, mapWhisperCheckpointKeys, whisperParameterShapes } from './params.js';

/** nn.LayerNorm's default: WhisperConfig has no layer_norm_eps */
const LAYER_NORM_EPS = 1e-5;

export type TensorHook = (name: string, t: Tensor) => Tensor;

export interface WhisperOptions {
  head?: WhisperHead;
  /** HF's freeze_encoder(): conv1, conv2, embed_positions, the layers and encoder.layer_norm get no gradient */
  freezeEncoder?: boolean;
  gradientCheckpointing?: boolean;
  /** seed of the layerdrop generator */
  seed?: number;
}

export interface WhisperBatch {
  /** f32 [B, num_mel_bins, F] */
  inputFeatures: Tensor;
  labels?: Tensor | Int32Array | readonly number[] | null;
}

export interface WhisperForwardOptions {
  hook?: TensorHook;
  /** keep extract_features and every hidden state in the output */
  outputHiddenStates?: boolean;
  encoderOnly?: boolean;
}

export interface WhisperOutput {
  /** gelu(conv2(gelu(conv1(x)))) as [B, T, D], before the positions are added */
  extract_features: Tensor | null;
  /** HF output_hidden_states: every layer's input, then the final (layer-normed) output: encoder_layers + 1 */
  hidden_states: Tensor[];
  last_hidden_state: Tensor;
  /** softmax(layer_weights) (weighted layer sum only) */
  layer_weights_softmax: Tensor | null;
  pooled: Tensor | null;
  logits: Tensor | null;
  loss: Tensor | null;
  frames: number;
}

/** Tensor.reshape is a view autograd does not see; this one passes the gradient back in the input's shape. */
function reshapeWithGrad(x: Tensor, shape: readonly number[]): Tensor {
  const y = x.reshape(shape);
  return record('reshape', y, [x], [], (g) => {
    const copy = scale(g, 1);
    const view = copy.reshape(x.shape);
    copy.dispose(); // the view keeps the buffer
    return [view];
  });
}

/** x [B, T, D] + table [T, D] for every item. The table's gradient is the sum over the batch: the broadcast is a
 * rank-1 product ones[B, 1] x table[1, T*D], so the GEMM's backward does that sum. */
function addToEveryItem(x: Tensor, table: Tensor): Tensor {
  const [B, T, D] = x.shape;
  return tidy(() => {
    const ones = Tensor.fromData(x.rt, new Float32Array(B).fill(1), [B, 1], 'f32', 'ones');
    const rows = matmul(ones, reshapeWithGrad(table, [1, T * D]));
    return add(x, reshapeWithGrad(rows, [B, T, D]));
  });
}

/** Output frames of conv2 (k3, s2, p1) for F input frames (conv1 keeps the length). */
export function whisperEncoderFrames(inputFrames: number): number {
  return Math.floor((inputFrames - 1) / 2) + 1;
}

export class WhisperForAudioClassification {
  readonly rt: Runtime;
  readonly config: WhisperConfig;
  readonly params: Map<string, Tensor>;
  readonly head: WhisperHead;
  training = false;
  gradientCheckpointing: boolean;
  private frozen: boolean;
  private random: () => number;

  /** `params` must hold every parameter whisperParameterShapes lists for the head; the model takes ownership. */
  constructor(rt: Runtime, config: WhisperConfig, params: Map<string, Tensor>, opts: WhisperOptions = {}) {
    this.rt = rt;
    this.config = config;
    this.head = opts.head ?? detectWhisperHead(params.keys()) ?? 'sequence-classification';
    const shapes = whisperParameterShapes(config, this.head);
    const problems: string[] = [];
    for (const [name, shape] of shapes) {
      const t = params.get(name);
      if (!t) problems.push(`missing ${name} [${shape}]`);
      else if (t.shape.join() !== shape.join()) problems.push(`${name} is [${t.shape}], expected [${shape}]`);
      else if (t.dtype !== 'f32') problems.push(`${name} is ${t.dtype}, expected f32`);
    }
    if (problems.length) throw new Error(`whisper (${this.head} head): ${problems.length} parameter problem(s): ${problems.slice(0, 12).join('; ')}${problems.length > 12 ? '; ...' : ''}`);
    this.params = new Map([...shapes.keys()].map((n) => [n, params.get(n)!]));
    for (const [name, t] of this.params) {
      t.label = name;
      t.requiresGrad = true;
    }
    this.gradientCheckpointing = opts.gradientCheckpointing ?? false;
    this.random = mulberry32(opts.seed ?? 0);
    this.frozen = opts.freezeEncoder ?? false;
    this.applyRequiresGrad();
  }

  static fromArrays(rt: Runtime, config: WhisperConfig, arrays: Map<string, { shape: readonly number[]; data: Float32Array }>, opts: WhisperOptions = {}): WhisperForAudioClassification {
    const head = opts.head ?? detectWhisperHead(arrays.keys()) ?? 'sequence-classification';
    const wanted = whisperParameterShapes(config, head);
    const params = new Map<string, Tensor>();
    try {
      for (const [name, a] of arrays) if (wanted.has(name)) params.set(name, Tensor.fromData(rt, a.data, a.shape, 'f32', name));
      return new WhisperForAudioClassification(rt, config, params, { ...opts, head });
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  /**
   * From a checkpoint: WhisperForAudioClassification (encoder.*, projector.*, classifier.*, layer_weights) or a
   * seq2seq Whisper (model.encoder.*; decoder and proj_out skipped with a notice). Head weights the checkpoint lacks
   * are initialised (initWhisperWeights); the report says which, in transformers' words.
   */
  static async fromSource(
    rt: Runtime,
    config: WhisperConfig,
    source: TensorSource,
    opts: WhisperOptions & { checkpoint?: string; initSeed?: number; ignoreMismatchedSizes?: boolean; onTensor?: (name: string, index: number, total: number) => void } = {},
  ): Promise<{ model: WhisperForAudioClassification; report: LoadReport }> {
    const head = opts.head ?? 'sequence-classification';
    const shapes = whisperParameterShapes(config, head);
    const keys = new Map<string, readonly number[]>();
    for (const [k, e] of source.entries) keys.set(k, e.shape);
    const checkpointName = opts.checkpoint ?? source.files.join(', ');
    const mapping = mapWhisperCheckpointKeys(keys, shapes, { checkpoint: checkpointName, ignoreMismatchedSizes: opts.ignoreMismatchedSizes, model: head === 'none' ? 'WhisperEncoder' : 'WhisperForAudioClassification' });
    if (mapping.errors.length) {
      const err = new Error(mapping.errors.join('\n')) as Error & { report?: unknown };
      err.report = mapping;
      throw err;
    }
    const params = new Map([...shapes].map(([name, shape]) => [name, Tensor.empty(rt, shape, 'f32', name)]));
    try {
      let i = 0;
      let values = 0;
      for (const [name, key] of mapping.mapping) {
        const data = await source.entries.get(key)!.read();
        params.get(name)!.write(data);
        values += data.length;
        opts.onTensor?.(name, ++i, mapping.mapping.size);
      }
      const fresh = new Set(mapping.newlyInitialized);
      if (fresh.size) for (const [name, t] of initWhisperWeights(config, { head, seed: opts.initSeed ?? 0, only: (n) => fresh.has(n) })) params.get(name)!.write(t.data);
      const model = new WhisperForAudioClassification(rt, config, params, { ...opts, head });
      return { model, report: { ...mapping, loadedTensors: i, loadedValues: values } };
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  static random(rt: Runtime, config: WhisperConfig, opts: WhisperOptions & { initSeed?: number } = {}): WhisperForAudioClassification {
    const head = opts.head ?? 'sequence-classification';
    return WhisperForAudioClassification.fromArrays(rt, config, initWhisperWeights(config, { head, seed: opts.initSeed ?? 0 }), { ...opts, head });
  }

  get freezeEncoder(): boolean {
    return this.frozen;
  }

  set freezeEncoder(on: boolean) {
    this.frozen = on;
    this.applyRequiresGrad();
  }

  private applyRequiresGrad(): void {
    for (const [name, t] of this.params) if (name.startsWith('encoder.')) t.requiresGrad = !this.frozen;
  }

  train(on = true): this {
    this.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  trainableParameters(): Tensor[] {
    return [...this.params.values()].filter((t) => t.requiresGrad);
  }

  namedParameters(): [string, Tensor][] {
    return [...this.params.entries()];
  }

  dispose(): void {
    for (const t of this.params.values()) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }

  private p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`whisper: no parameter ${name}`);
    return t;
  }

  /** input_features [B, mels, F] -> gelu(conv2(gelu(conv1(x)))) as [B, T, D] */
  convStem(inputFeatures: Tensor): Tensor {
    return tidy(() => {
      const a = gelu(conv1d(inputFeatures, this.p('encoder.conv1.weight'), this.p('encoder.conv1.bias'), { padding: 1 }));
      const b = gelu(conv1d(a, this.p('encoder.conv2.weight'), this.p('encoder.conv2.bias'), { stride: 2, padding: 1 }));
      return transposeLast2(b);
    });
  }

  /** One pre-LN encoder layer. Never disposes x. */
  encoderLayer(index: number, x: Tensor): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const L = `encoder.layers.${index}`;
      const ln = (t: Tensor, name: string) => layerNorm(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), LAYER_NORM_EPS);
      const a = ln(x, 'self_attn_layer_norm');
      const q = linear(a, this.p(`${L}.self_attn.q_proj.weight`), this.p(`${L}.self_attn.q_proj.bias`));
      const k = linear(a, this.p(`${L}.self_attn.k_proj.weight`), null);
      const v = linear(a, this.p(`${L}.self_attn.v_proj.weight`), this.p(`${L}.self_attn.v_proj.bias`));
      const ctx = attention(q, k, v, { heads: cfg.encoder_attention_heads, keyMask: null, dropout: this.training ? cfg.attention_dropout : 0 });
      const o = dropout(linear(ctx, this.p(`${L}.self_attn.out_proj.weight`), this.p(`${L}.self_attn.out_proj.bias`)), cfg.dropout, this.training);
      const h = add(x, o);
      let f = linear(ln(h, 'final_layer_norm'), this.p(`${L}.fc1.weight`), this.p(`${L}.fc1.bias`), 'gelu');
      f = dropout(f, cfg.activation_dropout, this.training);
      f = dropout(linear(f, this.p(`${L}.fc2.weight`), this.p(`${L}.fc2.bias`)), cfg.dropout, this.training);
      return add(h, f);
    });
  }

  private layerTrains(index: number): boolean {
    const prefix = `encoder.layers.${index}.`;
    for (const [name, t] of this.params) if (t.requiresGrad && name.startsWith(prefix)) return true;
    return false;
  }

  /** The encoder and (unless encoderOnly) the head. Returned tensors belong to the caller (disposeWhisperOutput). */
  forward(batch: WhisperBatch, opts: WhisperForwardOptions = {}): WhisperOutput {
    const cfg = this.config;
    const x = batch.inputFeatures;
    if (x.shape.length !== 3 || x.dtype !== 'f32' || x.shape[1] !== cfg.num_mel_bins) {
      throw new Error(`whisper: input_features must be f32 [B, ${cfg.num_mel_bins}, frames], got ${x.dtype} [${x.shape}]`);
    }
    const T = whisperEncoderFrames(x.shape[2]);
    if (T !== cfg.max_source_positions) {
      throw new Error(
        `whisper: ${x.shape[2]} input frames give ${T} encoder frames, but embed_positions has max_source_positions = ${cfg.max_source_positions} rows and ` +
          `Hugging Face adds all of them: give ${2 * cfg.max_source_positions} frames (the feature extractor pads every clip to 30 s)`,
      );
    }
    const keepAll = opts.outputHiddenStates ?? false;
    const weighted = this.head === 'sequence-classification' && cfg.use_weighted_layer_sum && !opts.encoderOnly;
    const needLayers = keepAll || weighted;
    const hook: TensorHook = opts.hook ?? ((_, t) => t);
    return tidy(() => {
      const extract = hook('extract_features', this.frozen ? noGrad(() => this.convStem(x)) : this.convStem(x));
      let h = addToEveryItem(extract, this.p('encoder.embed_positions.weight'));
      if (!keepAll) extract.dispose();
      const hd = dropout(h, cfg.dropout, this.training);
      if (hd !== h) h.dispose();
      h = hd;
      const hidden: Tensor[] = [];
      for (let l = 0; l < cfg.encoder_layers; l++) {
        h = hook(`hidden_states.${l}`, h);
        if (needLayers) hidden.push(h);
        if (this.training && cfg.encoder_layerdrop > 0 && this.random() < cfg.encoder_layerdrop) continue;
        const layer = (t: Tensor) => this.encoderLayer(l, t);
        const next = this.gradientCheckpointing && (h.requiresGrad || this.layerTrains(l)) ? checkpoint(layer, [h]) : layer(h);
        if (!needLayers) h.dispose();
        h = next;
      }
      const normed = layerNorm(h, this.p('encoder.layer_norm.weight'), this.p('encoder.layer_norm.bias'), LAYER_NORM_EPS);
      if (!needLayers) h.dispose();
      h = hook(`hidden_states.${cfg.encoder_layers}`, normed);
      if (needLayers) hidden.push(h);

      let pooled: Tensor | null = null;
      let logits: Tensor | null = null;
      let loss: Tensor | null = null;
      let layerWeightsSoftmax: Tensor | null = null;
      if (!opts.encoderOnly && this.head === 'sequence-classification') {
        const src = weighted ? weightedLayerSum(hidden, this.p('layer_weights')) : h;
        const projected = linear(src, this.p('projector.weight'), this.p('projector.bias'));
        pooled = hook('pooled', poolTime(projected, 'mean', null));
        logits = hook('logits', linear(pooled, this.p('classifier.weight'), this.p('classifier.bias')));
        if (batch.labels) {
          const labels = batch.labels instanceof Tensor ? batch.labels : Tensor.fromData(this.rt, Int32Array.from(batch.labels), [batch.labels.length], 'i32', 'labels');
          loss = crossEntropy(logits, labels);
        }
        if (weighted && keepAll) layerWeightsSoftmax = noGrad(() => softmax(this.p('layer_weights')));
      }
      if (!keepAll && needLayers) for (const t of hidden) if (t !== h) t.dispose();
      const out: WhisperOutput = {
        extract_features: keepAll ? extract : null,
        hidden_states: keepAll ? hidden : [],
        last_hidden_state: h,
        layer_weights_softmax: layerWeightsSoftmax,
        pooled,
        logits,
        loss,
        frames: T,
      };
      return out;
    });
  }
}

/** Free every tensor of a forward's output. */
export function disposeWhisperOutput(out: Partial<WhisperOutput>): void {
  const seen = new Set<Tensor>();
  for (const v of Object.values(out)) {
    const list = v instanceof Tensor ? [v] : Array.isArray(v) ? v : [];
    for (const t of list) {
      if (t instanceof Tensor && !seen.has(t)) {
        seen.add(t);
        t.dispose();
      }
    }
  }
}
