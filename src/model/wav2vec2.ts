// Wav2Vec2 for speech classification, forward and backward through our autograd, with Hugging Face semantics
// (transformers' modeling_wav2vec2.py, v4.30) and Hugging Face parameter names:
//
//   input_values [B, S] --feature encoder (7 strided convs, frozen by default)--> extract_features [B, T, C]
//     'layer' norm: conv -> LayerNorm over channels -> GELU in every conv layer (XLSR / large-lv60)
//     'group' norm: conv0 -> GroupNorm(C groups) -> GELU, then conv -> GELU (wav2vec2-base)
//   --feature projection: LayerNorm -> Linear -> dropout--> feature_projection_output [B, T, H]
//   --SpecAugment (training only): time spans replaced by masked_spec_embed, channel spans zeroed
//   --encoder: padded frames zeroed, + positional conv embedding (weight-normed grouped conv, even kernel drops the
//     last frame, GELU), then
//       stable layout (do_stable_layer_norm, XLSR): pre-LN layers, final encoder.layer_norm after the last layer
//       base layout: encoder.layer_norm before the first layer, post-LN layers
//   --> last_hidden_state [B, T, H]
//   heads: 'speech-classification' (the SER notebook's Wav2Vec2ClassificationHead: pool -> dropout -> dense -> tanh ->
//          dropout -> out_proj) or 'sequence-classification' (transformers' Wav2Vec2ForSequenceClassification:
//          [weighted layer sum] -> projector per frame -> pool -> classifier); loss = cross entropy, batch mean.
//
// Padding, exactly as HF does it (see ../shared/fixtures/xlsr_tiny/manifest.json, hf_semantics_checks): the sample
// mask gives per-item lengths, the conv length formula gives valid frames; padded frames are zeroed once, at the
// encoder input, and masked as attention keys. Later hidden states at padded frames are NOT zero (pos-conv, FFN and
// LayerNorm act on them), so pooling matters:
//   - plain mean (the notebook's torch.mean(hidden, dim=1), our default for the notebook head) averages all T frames
//     including padding, so an item's logits depend on how much padding its batch had;
//   - masked mean (poolExcludePadding, HF's Wav2Vec2ForSequenceClassification when given an attention mask) averages
//     only the valid frames, so batched logits equal the item's unpadded logits.
//
// Attention-probability dropout (config.attention_dropout) is applied in training as HF does (on the softmax
// probabilities, kept ones scaled by 1/(1-p)), inside the flash attention kernels from a hashed mask.
// Deviations from HF, on purpose: SpecAugment is skipped for a batch shorter than the mask span (HF raises); dropout,
// layerdrop and SpecAugment draw from our seeded generator, not torch's.
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { checkpoint, noGrad, tidy } from '../autograd.js';
import { add } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { conv1d } from '../ops/conv.js';
import { layerNorm, layerNormChannels, groupNormPerChannel, weightNorm } from '../ops/norm.js';
import { gelu, dropout } from '../ops/activation.js';
import { attention } from '../ops/attention.js';
import { transposeLast2, sliceLast, maskRows, replaceRows, maskColumns } from '../ops/shape.js';
import { poolTime, weightedLayerSum } from '../ops/reduce.js';
import { crossEntropy } from '../ops/loss.js';
import { seededRandom, computeMaskIndices } from './specaugment.js';
import type { Wav2Vec2Config, PoolingMode } from '../io/config.js';
import { expectedParameterShapes, canonicalParameterName, loadIntoTensors, type HeadKind, type LoadReport } from '../io/statedict.js';
import type { TensorSource } from '../io/source.js';
import { initWav2Vec2Weights } from './init.js';

export type { Wav2Vec2Config, PoolingMode };

// ---------------------------------------------------------------------------------------------------------------
// parameters

/** The classification heads this model runs: the notebook's Wav2Vec2ForSpeechClassification, transformers'
 * Wav2Vec2ForSequenceClassification, or none (encoder only). */
export type ModelHead = Exclude<HeadKind, 'ctc'>;

export interface ParameterSpec {
  name: string;
  shape: number[];
  /** part of the convolutional feature encoder (frozen by default) */
  featureEncoder: boolean;
}

const FE = 'wav2vec2.feature_extractor.conv_layers';
const ENC = 'wav2vec2.encoder';

/** Every parameter the model uses (HF names, state-dict order) with its shape. */
export function parameterSpecs(config: Wav2Vec2Config, head: ModelHead): ParameterSpec[] {
  return [...expectedParameterShapes(config, head)].map(([name, shape]) => ({ name, shape, featureEncoder: name.startsWith('wav2vec2.feature_extractor.') }));
}

/** Which head a set of parameter names carries (canonical names); null when neither classification head is there
 * (a bare or CTC checkpoint: the caller picks the head to initialise). */
export function detectHead(names: Iterable<string>): ModelHead | null {
  const set = new Set(names);
  if (set.has('classifier.dense.weight') || set.has('classifier.out_proj.weight')) return 'speech-classification';
  if (set.has('projector.weight') || set.has('classifier.weight')) return 'sequence-classification';
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// lengths and masks (CPU side)

/** Output length of the conv feature encoder for `samples` input samples (HF _get_feat_extract_output_lengths). */
export function convOutputLength(config: Pick<Wav2Vec2Config, 'conv_kernel' | 'conv_stride'>, samples: number): number {
  let n = samples;
  config.conv_kernel.forEach((k, i) => {
    n = Math.floor((n - k) / config.conv_stride[i]) + 1;
  });
  return n;
}

/** The fewest samples that give one frame (400 for the standard 7-layer encoder: 25 ms at 16 kHz). */
export function receptiveField(config: Pick<Wav2Vec2Config, 'conv_kernel' | 'conv_stride'>): number {
  let field = 1;
  for (let i = config.conv_kernel.length - 1; i >= 0; i--) field = (field - 1) * config.conv_stride[i] + config.conv_kernel[i];
  return field;
}

/**
 * HF _get_feature_vector_attention_mask for a batch padded to `frames` frames: item b's frames t <= L_b - 1 are
 * valid, L_b = convOutputLength(real samples). Reproduces HF's indexing exactly, including its edge case: an item
 * shorter than the receptive field has L_b <= 0, and HF's mask[b, L_b - 1] = 1 then indexes from the END (Python
 * negative index), so e.g. L_b = 0 marks every frame valid. Returns i32 [B * frames] and the valid count per item.
 */
export function frameMaskFromSampleLengths(config: Pick<Wav2Vec2Config, 'conv_kernel' | 'conv_stride'>, sampleLengths: readonly number[], frames: number): { mask: Int32Array; frameLengths: number[] } {
  return frameMaskFromFrameLengths(sampleLengths.map((n) => convOutputLength(config, n)), frames);
}

export function frameMaskFromFrameLengths(lengths: readonly number[], frames: number): { mask: Int32Array; frameLengths: number[] } {
  const B = lengths.length;
  const mask = new Int32Array(B * frames);
  const frameLengths: number[] = [];
  for (let b = 0; b < B; b++) {
    let last = lengths[b] - 1;
    if (last < 0) last += frames; // Python negative indexing, as HF's mask[(arange, lengths - 1)] = 1 does
    if (last < 0 || last >= frames) throw new Error(`wav2vec2: item ${b} has ${lengths[b]} valid frames; the batch has ${frames}`);
    for (let t = 0; t <= last; t++) mask[b * frames + t] = 1;
    frameLengths.push(last + 1);
  }
  return { mask, frameLengths };
}

// ---------------------------------------------------------------------------------------------------------------
// the model

export interface Wav2Vec2Options {
  /** classification head; default: detected from the parameter names, else the notebook's */
  head?: ModelHead;
  /** run the conv feature encoder under noGrad with its parameters frozen (default true, as the notebook does) */
  freezeFeatureEncoder?: boolean;
  /** recompute each encoder layer in backward instead of storing its activations (default false) */
  gradientCheckpointing?: boolean;
  /** pooling over time (default config.pooling_mode) */
  pooling?: PoolingMode;
  /**
   * pool over valid frames only. Default false for the notebook head (its torch.mean includes padded frames) and
   * true for the sequence-classification head (Wav2Vec2ForSequenceClassification masks them when given an attention mask).
   */
  poolExcludePadding?: boolean;
  /** seed of the CPU generator for layerdrop and SpecAugment (default 0) */
  seed?: number;
}

export interface Wav2Vec2Batch {
  /** f32 [B, S], zero-padded on the right */
  inputValues: Tensor;
  /** sample-level mask [B * S] (1 = real sample), as Wav2Vec2FeatureExtractor returns it */
  attentionMask?: Int32Array | readonly number[] | null;
  /** real samples per item (instead of attentionMask) */
  inputLengths?: readonly number[] | null;
  /** valid frames per item (instead of attentionMask / inputLengths) */
  frameLengths?: readonly number[] | null;
  /** class indices [B] */
  labels?: Tensor | Int32Array | readonly number[] | null;
  /** explicit SpecAugment time mask i32 [B * T] (1 = replace by masked_spec_embed); applied in any mode, like HF */
  maskTimeIndices?: Int32Array | null;
}

/**
 * Called with each named intermediate as it is produced; what it returns is used in its place (an identity that
 * records the gradient flowing through, in check-reference). Names: extract_features, feature_projection_output,
 * pos_conv_weight (the effective weight-normed kernel), hidden_states.<i>, pooled, logits.
 */
export type TensorHook = (name: string, t: Tensor) => Tensor;

export interface ForwardOptions {
  hook?: TensorHook;
  /** keep extract_features, feature_projection_output, pos_conv_embed_output, every hidden state, ... */
  outputHiddenStates?: boolean;
  /** skip the head (no pooled / logits / loss) */
  encoderOnly?: boolean;
}

export interface Wav2Vec2Output {
  /** conv feature encoder output [B, T, C] (before the feature projection's LayerNorm) */
  extract_features: Tensor | null;
  /** feature_projection.layer_norm(extract_features): what HF returns as Wav2Vec2BaseModelOutput.extract_features */
  extract_features_normed: Tensor | null;
  /** feature projection output [B, T, H], before SpecAugment and before the encoder zeroes padded frames */
  feature_projection_output: Tensor | null;
  /** encoder.pos_conv_embed output [B, T, H] */
  pos_conv_embed_output: Tensor | null;
  /** HF output_hidden_states: the input of every layer, then the final output (num_hidden_layers + 1) */
  hidden_states: Tensor[];
  /** output of the last layer before the stable layout's final encoder.layer_norm (not an HF hidden state) */
  encoder_last_layer_output: Tensor | null;
  last_hidden_state: Tensor;
  /** pooled features [B, H] (HF head: [B, classifier_proj_size], after the projector) */
  pooled: Tensor | null;
  logits: Tensor | null;
  loss: Tensor | null;
  /** i32 [B, T] valid-frame mask, or null when no lengths were given (HF's attention_mask=None path) */
  frameMask: Tensor | null;
  /** valid frames per item (all T without a mask) */
  frameLengths: number[];
  frames: number;
}

export interface HeadOptions {
  hook?: TensorHook;
  pooling?: PoolingMode;
  poolExcludePadding?: boolean;
  labels?: Tensor | Int32Array | readonly number[] | null;
}

export interface HeadOutput {
  pooled: Tensor;
  logits: Tensor;
  loss: Tensor | null;
}

/** Wav2Vec2 encoder with a speech-classification head; parameters live in `params` under HF names. */
export class Wav2Vec2ForSpeechClassification {
  readonly rt: Runtime;
  readonly config: Wav2Vec2Config;
  readonly params: Map<string, Tensor>;
  readonly head: ModelHead;
  /** dropout, layerdrop and SpecAugment are active only in training mode */
  training = false;
  gradientCheckpointing: boolean;
  pooling: PoolingMode;
  poolExcludePadding: boolean;
  private frozen: boolean;
  private random: () => number;

  /**
   * `params` must hold every parameter parameterSpecs() lists for the head, with matching shapes (extra entries,
   * e.g. a CTC lm_head or a quantizer, are ignored). The model takes ownership: dispose() frees them.
   */
  constructor(rt: Runtime, config: Wav2Vec2Config, params: Map<string, Tensor>, opts: Wav2Vec2Options = {}) {
    this.rt = rt;
    this.config = config;
    this.head = opts.head ?? detectHead(params.keys()) ?? 'speech-classification';
    const specs = parameterSpecs(config, this.head);
    const problems: string[] = [];
    for (const s of specs) {
      const t = params.get(s.name);
      if (!t) problems.push(`missing ${s.name} [${s.shape}]`);
      else if (t.shape.join() !== s.shape.join()) problems.push(`${s.name} is [${t.shape}], expected [${s.shape}]`);
      else if (t.dtype !== 'f32') problems.push(`${s.name} is ${t.dtype}, expected f32`);
    }
    if (problems.length) {
      const shown = problems.slice(0, 12).join('; ');
      throw new Error(`wav2vec2 (${this.head} head): ${problems.length} parameter problem(s): ${shown}${problems.length > 12 ? '; ...' : ''}`);
    }
    this.params = new Map(specs.map((s) => [s.name, params.get(s.name)!]));
    for (const [name, t] of this.params) t.label = name;
    this.gradientCheckpointing = opts.gradientCheckpointing ?? false;
    this.pooling = opts.pooling ?? config.pooling_mode ?? 'mean';
    this.poolExcludePadding = opts.poolExcludePadding ?? this.head === 'sequence-classification';
    this.random = seededRandom(opts.seed ?? 0);
    this.frozen = opts.freezeFeatureEncoder ?? true;
    for (const t of this.params.values()) t.requiresGrad = true;
    this.applyRequiresGrad();
  }

  /** Upload f32 arrays (e.g. from a checkpoint) and build the model. */
  static fromArrays(rt: Runtime, config: Wav2Vec2Config, arrays: Map<string, { shape: readonly number[]; data: Float32Array }>, opts: Wav2Vec2Options = {}): Wav2Vec2ForSpeechClassification {
    const head = opts.head ?? detectHead(arrays.keys()) ?? 'speech-classification';
    const wanted = new Set(parameterSpecs(config, head).map((s) => s.name));
    const params = new Map<string, Tensor>();
    try {
      for (const [name, a] of arrays) if (wanted.has(name)) params.set(name, Tensor.fromData(rt, a.data, a.shape, 'f32', name));
      return new Wav2Vec2ForSpeechClassification(rt, config, params, { ...opts, head });
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  /**
   * Build the model from a checkpoint (safetensors / PyTorch / sharded source), streaming one tensor at a time.
   * Parameters the checkpoint lacks (a new head, masked_spec_embed) are initialised as HF does (init.ts); the
   * returned report says which, in transformers' words. The head defaults to the checkpoint's, else the notebook's.
   */
  static async fromSource(
    rt: Runtime,
    config: Wav2Vec2Config,
    source: TensorSource,
    opts: Wav2Vec2Options & { checkpoint?: string; initSeed?: number; ignoreMismatchedSizes?: boolean; onTensor?: (name: string, index: number, total: number) => void } = {},
  ): Promise<{ model: Wav2Vec2ForSpeechClassification; report: LoadReport }> {
    const head = opts.head ?? detectHead([...source.entries.keys()].map(canonicalParameterName)) ?? 'speech-classification';
    const specs = parameterSpecs(config, head);
    const params = new Map(specs.map((s) => [s.name, Tensor.empty(rt, s.shape, 'f32', s.name)]));
    try {
      const report = await loadIntoTensors(source, params, {
        checkpoint: opts.checkpoint,
        ignoreMismatchedSizes: opts.ignoreMismatchedSizes,
        onTensor: opts.onTensor,
        model: head === 'sequence-classification' ? 'Wav2Vec2ForSequenceClassification' : head === 'none' ? 'Wav2Vec2Model' : 'Wav2Vec2ForSpeechClassification',
      });
      const fresh = new Set(report.newlyInitialized);
      if (fresh.size) {
        const init = initWav2Vec2Weights(config, { head, seed: opts.initSeed ?? 0, only: (n) => fresh.has(n) });
        for (const [name, t] of init) params.get(name)!.write(t.data);
      }
      return { model: new Wav2Vec2ForSpeechClassification(rt, config, params, { ...opts, head }), report };
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  /** A freshly initialised model (HF's init rules, our seeded generator). */
  static random(rt: Runtime, config: Wav2Vec2Config, opts: Wav2Vec2Options & { initSeed?: number } = {}): Wav2Vec2ForSpeechClassification {
    const head = opts.head ?? 'speech-classification';
    return Wav2Vec2ForSpeechClassification.fromArrays(rt, config, initWav2Vec2Weights(config, { head, seed: opts.initSeed ?? 0 }), { ...opts, head });
  }

  get freezeFeatureEncoder(): boolean {
    return this.frozen;
  }

  set freezeFeatureEncoder(on: boolean) {
    this.frozen = on;
    this.applyRequiresGrad();
  }

  /** Freezing touches only the feature encoder's parameters (callers may freeze others themselves). */
  private applyRequiresGrad(): void {
    for (const s of parameterSpecs(this.config, this.head)) if (s.featureEncoder) this.params.get(s.name)!.requiresGrad = !this.frozen;
  }

  train(on = true): this {
    this.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Reseed the layerdrop / SpecAugment generator. */
  seed(seed: number): void {
    this.random = seededRandom(seed);
  }

  /** The parameters an optimizer should update (all but the frozen feature encoder), in state-dict order. */
  trainableParameters(): Tensor[] {
    return [...this.params.values()].filter((t) => t.requiresGrad);
  }

  /** Parameter names in state-dict order, paired with their tensors. */
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
    if (!t) throw new Error(`wav2vec2: no parameter ${name}`);
    return t;
  }

  private optP(name: string): Tensor | null {
    return this.params.get(name) ?? null;
  }

  // -------------------------------------------------------------------------------------------------------------
  // pieces

  /** input [B, S] -> extract_features [B, T, C] (run under noGrad when frozen: nothing is saved for backward). */
  featureEncoder(inputValues: Tensor): Tensor {
    const run = () =>
      tidy(() => {
        const [B, S] = inputValues.shape;
        let x = inputValues.reshape([B, 1, S]);
        const cfg = this.config;
        cfg.conv_dim.forEach((_, i) => {
          const L = `${FE}.${i}`;
          let y = conv1d(x, this.p(`${L}.conv.weight`), this.optP(`${L}.conv.bias`), { stride: cfg.conv_stride[i] });
          x.dispose();
          // nn.LayerNorm / nn.GroupNorm defaults: eps 1e-5 (config.layer_norm_eps is not used here, as in HF)
          if (cfg.feat_extract_norm === 'layer') y = swap(y, layerNormChannels(y, this.p(`${L}.layer_norm.weight`), this.p(`${L}.layer_norm.bias`), 1e-5));
          else if (i === 0) y = swap(y, groupNormPerChannel(y, this.p(`${L}.layer_norm.weight`), this.p(`${L}.layer_norm.bias`), 1e-5));
          x = swap(y, gelu(y));
        });
        return swap(x, transposeLast2(x));
      });
    return this.frozen ? noGrad(run) : run();
  }

  /** Positional conv embedding: x [B, T, H] -> GELU(weight-normed grouped conv, same length) [B, T, H]. */
  positionalEmbedding(x: Tensor, hook: TensorHook = (_, t) => t): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const K = cfg.num_conv_pos_embeddings;
      const T = x.shape[1];
      const w = hook('pos_conv_weight', weightNorm(this.p(`${ENC}.pos_conv_embed.conv.weight_g`), this.p(`${ENC}.pos_conv_embed.conv.weight_v`), 2));
      let y = transposeLast2(x);
      y = swap(y, conv1d(y, w, this.p(`${ENC}.pos_conv_embed.conv.bias`), { padding: Math.floor(K / 2), groups: cfg.num_conv_pos_embedding_groups }));
      // an even kernel with padding K/2 yields T + 1 frames: Wav2Vec2SamePadLayer drops the last
      if (y.shape[2] !== T) y = swap(y, sliceLast(y, 0, T));
      y = swap(y, gelu(y));
      return swap(y, transposeLast2(y));
    });
  }

  /** One encoder layer (either layout). Never disposes x. */
  encoderLayer(index: number, x: Tensor, keyMask: Tensor | null): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const L = `${ENC}.layers.${index}`;
      const eps = cfg.layer_norm_eps;
      const ln = (t: Tensor, name: string) => layerNorm(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), eps);
      const stable = cfg.do_stable_layer_norm;
      const attnIn = stable ? ln(x, 'layer_norm') : x;
      const lin = (t: Tensor, name: string, act: 'none' | 'gelu' = 'none') => linear(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), act);
      const q = lin(attnIn, 'attention.q_proj');
      const k = lin(attnIn, 'attention.k_proj');
      const v = lin(attnIn, 'attention.v_proj');
      const ctx = attention(q, k, v, { heads: cfg.num_attention_heads, keyMask, dropout: this.training ? cfg.attention_dropout : 0 });
      let a = lin(ctx, 'attention.out_proj');
      a = dropout(a, cfg.hidden_dropout, this.training);
      let h = add(x, a);
      if (!stable) h = ln(h, 'layer_norm');
      const ffIn = stable ? ln(h, 'final_layer_norm') : h;
      let f = lin(ffIn, 'feed_forward.intermediate_dense', 'gelu');
      f = dropout(f, cfg.activation_dropout, this.training);
      f = lin(f, 'feed_forward.output_dense');
      f = dropout(f, cfg.hidden_dropout, this.training);
      h = add(h, f);
      if (!stable) h = ln(h, 'final_layer_norm');
      return h;
    });
  }

  private layerTrains(index: number): boolean {
    const prefix = `${ENC}.layers.${index}.`;
    for (const [name, t] of this.params) if (t.requiresGrad && name.startsWith(prefix)) return true;
    return false;
  }

  /** Per-item valid frames from whichever length information the batch carries (null: no mask, HF without one). */
  frameInfo(batch: Wav2Vec2Batch, frames: number): { mask: Int32Array; frameLengths: number[] } | null {
    const B = batch.inputValues.shape[0];
    const S = batch.inputValues.shape[1];
    if (batch.frameLengths) {
      if (batch.frameLengths.length !== B) throw new Error(`wav2vec2: ${batch.frameLengths.length} frame lengths for a batch of ${B}`);
      return frameMaskFromFrameLengths(batch.frameLengths, frames);
    }
    let lengths = batch.inputLengths ?? null;
    if (!lengths && batch.attentionMask) {
      const m = batch.attentionMask;
      if (m.length !== B * S) throw new Error(`wav2vec2: attention mask has ${m.length} entries; input is [${B}, ${S}]`);
      const sums: number[] = [];
      for (let b = 0; b < B; b++) {
        let s = 0;
        for (let i = 0; i < S; i++) s += m[b * S + i];
        sums.push(s);
      }
      lengths = sums;
    }
    if (!lengths) return null;
    if (lengths.length !== B) throw new Error(`wav2vec2: ${lengths.length} input lengths for a batch of ${B}`);
    return frameMaskFromSampleLengths(this.config, lengths, frames);
  }

  // -------------------------------------------------------------------------------------------------------------
  // forward

  /**
   * The whole model on a padded batch. In training mode dropout, layerdrop and SpecAugment are active. Every
   * returned tensor belongs to the caller (disposeOutput frees them); everything else is freed before returning,
   * except what autograd saved for backward.
   */
  forward(batch: Wav2Vec2Batch, opts: ForwardOptions = {}): Wav2Vec2Output {
    const cfg = this.config;
    const x = batch.inputValues;
    if (x.shape.length !== 2 || x.dtype !== 'f32') throw new Error(`wav2vec2: input_values must be f32 [B, S], got ${x.dtype} [${x.shape}]`);
    const [B, S] = x.shape;
    const T = convOutputLength(cfg, S);
    if (T < 1) {
      throw new Error(`wav2vec2: input of ${S} samples is shorter than the feature encoder's receptive field (${receptiveField(cfg)} samples); pad clips to at least that`);
    }
    const info = this.frameInfo(batch, T);
    const keepAll = opts.outputHiddenStates ?? false;
    const needLayers = keepAll || (this.head === 'sequence-classification' && cfg.use_weighted_layer_sum && !opts.encoderOnly);
    const rt = this.rt;

    return tidy(() => {
      const frameMask = info ? Tensor.fromData(rt, info.mask, [B, T], 'i32', 'frame_mask') : null;
      const hook: TensorHook = opts.hook ?? ((_, t) => t);
      const extract = hook('extract_features', this.featureEncoder(x));
      const fpLn = layerNorm(extract, this.p('wav2vec2.feature_projection.layer_norm.weight'), this.p('wav2vec2.feature_projection.layer_norm.bias'), cfg.layer_norm_eps);
      if (!keepAll) extract.dispose();
      const fpLinear = linear(fpLn, this.p('wav2vec2.feature_projection.projection.weight'), this.p('wav2vec2.feature_projection.projection.bias'));
      if (!keepAll) fpLn.dispose();
      const fpDropped = dropout(fpLinear, cfg.feat_proj_dropout, this.training);
      if (fpDropped !== fpLinear) fpLinear.dispose();
      const fpOut = hook('feature_projection_output', fpDropped);

      let h = this.specAugment(fpOut, info?.frameLengths ?? null, batch.maskTimeIndices ?? null);
      if (h !== fpOut && !keepAll) fpOut.dispose();

      // encoder input: padded frames zeroed (HF: hidden_states[~mask] = 0), then + positional embedding
      if (frameMask) h = this.own(h, maskRows(h, frameMask), keepAll ? fpOut : null);
      const pos = this.positionalEmbedding(h, hook);
      h = this.own(h, add(h, pos), keepAll ? fpOut : null);
      if (!keepAll) pos.dispose();
      if (!cfg.do_stable_layer_norm) h = swap(h, layerNorm(h, this.p(`${ENC}.layer_norm.weight`), this.p(`${ENC}.layer_norm.bias`), cfg.layer_norm_eps));
      const hd = dropout(h, cfg.hidden_dropout, this.training);
      if (hd !== h) h.dispose();
      h = hd;

      const hidden: Tensor[] = [];
      const keyMask = frameMask;
      for (let l = 0; l < cfg.num_hidden_layers; l++) {
        h = hook(`hidden_states.${l}`, h);
        if (needLayers) hidden.push(h);
        if (this.training && cfg.layerdrop > 0 && this.random() < cfg.layerdrop) continue;
        const layer = (t: Tensor) => this.encoderLayer(l, t, keyMask);
        // checkpointing pays off only where backward will reach: a layer with nothing to train and no gradient to
        // pass down (frozen lower layers) records nothing anyway
        const next = this.gradientCheckpointing && (h.requiresGrad || this.layerTrains(l)) ? checkpoint(layer, [h]) : layer(h);
        if (!needLayers) h.dispose();
        h = next;
      }
      let encoderLast: Tensor | null = null;
      if (cfg.do_stable_layer_norm) {
        const normed = layerNorm(h, this.p(`${ENC}.layer_norm.weight`), this.p(`${ENC}.layer_norm.bias`), cfg.layer_norm_eps);
        if (keepAll) encoderLast = h;
        else h.dispose();
        h = normed;
      } else if (keepAll) encoderLast = h;
      h = hook(`hidden_states.${cfg.num_hidden_layers}`, h);
      if (needLayers) hidden.push(h);

      let headOut: HeadOutput | null = null;
      if (!opts.encoderOnly && this.head !== 'none') {
        headOut = this.classify(h, hidden, frameMask, { labels: batch.labels ?? null, hook: opts.hook });
      }
      if (!keepAll && needLayers) {
        // the weighted layer sum needed them; the caller did not ask for them
        for (const t of hidden) if (t !== h) t.dispose();
      }
      const out: Wav2Vec2Output = {
        extract_features: keepAll ? extract : null,
        extract_features_normed: keepAll ? fpLn : null,
        feature_projection_output: keepAll ? fpOut : null,
        pos_conv_embed_output: keepAll ? pos : null,
        hidden_states: keepAll ? hidden : [],
        encoder_last_layer_output: encoderLast,
        last_hidden_state: h,
        pooled: headOut?.pooled ?? null,
        logits: headOut?.logits ?? null,
        loss: headOut?.loss ?? null,
        frameMask,
        frameLengths: info ? info.frameLengths : new Array<number>(B).fill(T),
        frames: T,
      };
      return out;
    });
  }

  /**
   * The classification head on encoder output `last` [B, T, H] (and, for HF's weighted layer sum, all hidden
   * states). Pooling defaults to the model's setting; poolExcludePadding needs the frame mask.
   */
  classify(last: Tensor, hiddenStates: Tensor[], frameMask: Tensor | null, opts: HeadOptions = {}): HeadOutput {
    const cfg = this.config;
    const mode = opts.pooling ?? this.pooling;
    const exclude = opts.poolExcludePadding ?? this.poolExcludePadding;
    const mask = exclude ? frameMask : null;
    const hook: TensorHook = opts.hook ?? ((_, t) => t);
    return tidy(() => {
      let pooled: Tensor;
      let logits: Tensor;
      if (this.head === 'speech-classification') {
        pooled = hook('pooled', poolTime(last, mode, mask));
        let z = dropout(pooled, cfg.final_dropout, this.training);
        z = linear(z, this.p('classifier.dense.weight'), this.p('classifier.dense.bias'), 'tanh');
        z = dropout(z, cfg.final_dropout, this.training);
        logits = hook('logits', linear(z, this.p('classifier.out_proj.weight'), this.p('classifier.out_proj.bias')));
      } else if (this.head === 'sequence-classification') {
        let src = last;
        if (cfg.use_weighted_layer_sum) {
          if (hiddenStates.length !== cfg.num_hidden_layers + 1) throw new Error(`wav2vec2: the weighted layer sum needs ${cfg.num_hidden_layers + 1} hidden states, got ${hiddenStates.length}`);
          src = weightedLayerSum(hiddenStates, this.p('layer_weights'));
        }
        const projected = linear(src, this.p('projector.weight'), this.p('projector.bias'));
        pooled = hook('pooled', poolTime(projected, mode, mask));
        logits = hook('logits', linear(pooled, this.p('classifier.weight'), this.p('classifier.bias')));
      } else {
        throw new Error('wav2vec2: this model has no classification head');
      }
      let loss: Tensor | null = null;
      if (opts.labels) {
        const labels = opts.labels instanceof Tensor ? opts.labels : Tensor.fromData(this.rt, Int32Array.from(opts.labels), [opts.labels.length], 'i32', 'labels');
        loss = crossEntropy(logits, labels);
      }
      return { pooled, logits, loss };
    });
  }

  /** SpecAugment on the feature projection output (training only, as HF; an explicit time mask applies always). */
  private specAugment(h: Tensor, frameLengths: number[] | null, explicitTime: Int32Array | null): Tensor {
    const cfg = this.config;
    if (!cfg.apply_spec_augment) return h;
    const [B, T, H] = h.shape;
    let timeMask = explicitTime;
    if (!timeMask && this.training && cfg.mask_time_prob > 0 && T >= cfg.mask_time_length) {
      timeMask = computeMaskIndices(B, T, { maskProb: cfg.mask_time_prob, maskLength: cfg.mask_time_length, minMasks: cfg.mask_time_min_masks, lengths: frameLengths, random: this.random });
    }
    let featureMask: Int32Array | null = null;
    if (this.training && cfg.mask_feature_prob > 0 && H >= cfg.mask_feature_length) {
      featureMask = computeMaskIndices(B, H, { maskProb: cfg.mask_feature_prob, maskLength: cfg.mask_feature_length, minMasks: cfg.mask_feature_min_masks, random: this.random });
    }
    if (!timeMask && !featureMask) return h;
    return tidy(() => {
      let y = h;
      if (timeMask && timeMask.some((v) => v !== 0)) {
        if (timeMask.length !== B * T) throw new Error(`wav2vec2: time mask has ${timeMask.length} entries, expected ${B} x ${T}`);
        const m = Tensor.fromData(this.rt, timeMask, [B, T], 'i32', 'mask_time_indices');
        y = replaceRows(y, m, this.p('wav2vec2.masked_spec_embed'));
      }
      if (featureMask && featureMask.some((v) => v !== 0)) {
        const m = Tensor.fromData(this.rt, featureMask, [B, H], 'i32', 'mask_feature_indices');
        const z = maskColumns(y, m);
        if (y !== h) y.dispose();
        y = z;
      }
      return y;
    });
  }

  /** Replace `old` by `next`, disposing `old` unless it is the caller's (`keep`). */
  private own(old: Tensor, next: Tensor, keep: Tensor | null): Tensor {
    if (old !== next && old !== keep) old.dispose();
    return next;
  }
}

/** `next` replaces `old` in a chain: old's owner reference is dropped (autograd keeps what backward needs). */
function swap(old: Tensor, next: Tensor): Tensor {
  if (next !== old) old.dispose();
  return next;
}

/** Free every tensor of a forward's output. */
export function disposeOutput(out: Partial<Wav2Vec2Output> | HeadOutput): void {
  const seen = new Set<Tensor>();
  const drop = (t: Tensor | null | undefined) => {
    if (t && !seen.has(t)) {
      seen.add(t);
      t.dispose();
    }
  };
  for (const v of Object.values(out)) {
    if (v instanceof Tensor) drop(v);
    else if (Array.isArray(v)) for (const t of v) if (t instanceof Tensor) drop(t);
  }
}
