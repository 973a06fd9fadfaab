// The wav2vec2 encoder, forward and backward through our autograd, with Hugging Face semantics
// (transformers' modeling_wav2vec2.py, v4.30) and Hugging Face parameter names. HuBERT, WavLM and data2vec-audio
// reuse it by subclassing the step that differs (feature projection, positional embedding, attention).
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
//
// Padding, exactly as HF does it (see ../shared/fixtures/xlsr_tiny/manifest.json, hf_semantics_checks): the sample
// mask gives per-item lengths, the conv length formula gives valid frames; padded frames are zeroed once, at the
// encoder input, and masked as attention keys. Later hidden states at padded frames are NOT zero (pos-conv, FFN and
// LayerNorm act on them), so pooling matters (heads.ts).
//
// Attention-probability dropout (config.attention_dropout) is applied in training as HF does (on the softmax
// probabilities, kept ones scaled by 1/(1-p)), inside the flash attention kernels from a hashed mask.
// Deviations from HF, on purpose: SpecAugment is skipped for a batch shorter than the mask span (HF raises); dropout,
// layerdrop and SpecAugment draw from our seeded generator, not torch's.
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../tensor.js';
import { checkpoint, noGrad, tidy } from '../../autograd.js';
import { add } from '../../ops/elementwise.js';
import { linear } from '../../ops/matmul.js';
import { conv1d } from '../../ops/conv.js';
import { DerivedCache } from '../../runtime/derived.js';
import { layerNorm, residualLayerNorm, layerNormChannels, groupNormPerChannel, weightNorm } from '../../ops/norm.js';
import { gelu, dropout } from '../../ops/activation.js';
import { packedQkvAttention } from '../qkv.js';
import { transposeLast2, sliceLast, sliceAxis, concat, maskRows, replaceRows, maskColumns } from '../../ops/shape.js';
import { seededRandom, computeMaskIndices } from '../specaugment.js';
import type { EncoderForwardOptions, EncoderInput, EncoderOutput, SpeechEncoder, TensorHook } from '../family.js';
import type { Wav2Vec2Config } from './config.js';

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

/** Samples between consecutive output frames of the conv feature encoder (320 for the standard encoder). */
export function totalStride(config: Pick<Wav2Vec2Config, 'conv_stride'>): number {
  return config.conv_stride.reduce((a, b) => a * b, 1);
}

/**
 * Bytes of the largest activation of the conv feature encoder (f32) for `batch` items of `samples` samples: the
 * input, then every conv layer's output [batch, C_i, T_i] (norm, GELU and the final transpose have the same size).
 */
export function featureEncoderPeakBytes(config: Pick<Wav2Vec2Config, 'conv_kernel' | 'conv_stride' | 'conv_dim'>, batch: number, samples: number): number {
  let n = samples;
  let peak = batch * samples * 4;
  config.conv_kernel.forEach((k, i) => {
    n = Math.floor((n - k) / config.conv_stride[i]) + 1;
    peak = Math.max(peak, batch * config.conv_dim[i] * Math.max(n, 0) * 4);
  });
  return peak;
}

/** How the feature encoder splits a batch: items per chunk, and output frames per chunk (= all frames: no split). */
export interface FeatureEncoderPlan {
  batchChunk: number;
  frameChunk: number;
  frames: number;
}

/**
 * Chunking of the conv feature encoder so that no activation exceeds `budget` bytes: the whole batch when it fits,
 * else groups of whole items, else one item at a time in chunks of output frames. Frames [t0, t0 + F) of a stack of
 * unpadded strided convs depend exactly on samples [t0 * J, (t0 + F - 1) * J + RF) (J the total stride, RF the
 * receptive field), and each chunk's input starts at a multiple of every layer's cumulative stride, so running the
 * stack on that window gives exactly those frames; 'layer' norm is per frame. 'group' norm (wav2vec2-base conv0)
 * normalises over the whole clip and cannot be split in time: refused with the length that fits.
 */
export function planFeatureEncoder(config: Pick<Wav2Vec2Config, 'model_type' | 'conv_kernel' | 'conv_stride' | 'conv_dim' | 'feat_extract_norm'>, batch: number, samples: number, budget: number): FeatureEncoderPlan {
  const frames = convOutputLength(config, samples);
  const peak = (b: number, n: number) => featureEncoderPeakBytes(config, b, n);
  if (peak(batch, samples) <= budget) return { batchChunk: batch, frameChunk: frames, frames };
  const perItem = peak(1, samples);
  if (perItem <= budget) return { batchChunk: Math.max(1, Math.floor(budget / perItem)), frameChunk: frames, frames };
  const J = totalStride(config);
  const RF = receptiveField(config);
  const windowOf = (f: number) => (f - 1) * J + RF;
  if (config.feat_extract_norm === 'group') {
    // the longest single clip whose conv activations fit (peak grows with the length)
    let lo = 0;
    let hi = frames;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (peak(1, windowOf(mid)) <= budget) lo = mid;
      else hi = mid - 1;
    }
    const fit = lo > 0 ? windowOf(lo) : 0;
    throw new Error(
      `${config.model_type}: a clip of ${samples} samples (${(samples / 16000).toFixed(1)} s at 16 kHz) needs a ${perItem}-byte activation in the ` +
        `feature encoder, over this adapter's limit of ${budget} bytes, and this feature encoder (feat_extract_norm 'group', the ` +
        `wav2vec2-base layout) normalises its first conv over the whole clip, so it cannot be split in time. Use clips of at ` +
        `most ${fit} samples (${(fit / 16000).toFixed(1)} s): --max-seconds ${Math.floor((fit / 16000) * 10) / 10} in training, or cut long recordings before predict/eval.`,
    );
  }
  if (peak(1, RF) > budget) throw new Error(`${config.model_type}: even one frame of the feature encoder needs ${peak(1, RF)} bytes, over the limit of ${budget} bytes`);
  let lo = 1;
  let hi = frames;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (peak(1, windowOf(mid)) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return { batchChunk: 1, frameChunk: lo, frames };
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
    if (last < 0 || last >= frames) throw new Error(`encoder: item ${b} has ${lengths[b]} valid frames; the batch has ${frames}`);
    for (let t = 0; t <= last; t++) mask[b * frames + t] = 1;
    frameLengths.push(last + 1);
  }
  return { mask, frameLengths };
}

/** Per-item sample counts from whichever length information a batch carries (null: none given). */
export function sampleLengthsOf(input: EncoderInput): number[] | null {
  const [B, S] = input.inputValues.shape;
  if (input.inputLengths) {
    if (input.inputLengths.length !== B) throw new Error(`encoder: ${input.inputLengths.length} input lengths for a batch of ${B}`);
    return [...input.inputLengths];
  }
  const m = input.attentionMask;
  if (!m) return null;
  if (m.length !== B * S) throw new Error(`encoder: attention mask has ${m.length} entries; input is [${B}, ${S}]`);
  const sums: number[] = [];
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let i = 0; i < S; i++) s += m[b * S + i];
    sums.push(s);
  }
  return sums;
}

/** `next` replaces `old` in a chain: old's owner reference is dropped (autograd keeps what backward needs). */
export function swap(old: Tensor, next: Tensor): Tensor {
  if (next !== old) old.dispose();
  return next;
}

// ---------------------------------------------------------------------------------------------------------------
// the encoder

export interface Wav2Vec2EncoderOptions {
  /** false: no feature_projection.layer_norm (HuBERT's feat_proj_layer_norm false) */
  featureProjectionLayerNorm?: boolean;
}

/** State one forward pass shares between its layers (WavLM's position bias is computed once, used by all). */
export interface LayerContext {
  keyMask: Tensor | null;
  frames: number;
  hook: TensorHook;
  /** tensors the context owns, disposed after the last layer */
  owned: Tensor[];
  [key: string]: unknown;
}

export class Wav2Vec2Encoder implements SpeechEncoder {
  readonly rt: Runtime;
  readonly config: Wav2Vec2Config;
  readonly prefix: string;
  readonly params: ReadonlyMap<string, Tensor>;
  training = false;
  gradientCheckpointing = false;
  featureEncoderFrozen = true;
  protected random: () => number = seededRandom(0);
  protected readonly featureProjectionLayerNorm: boolean;
  /**
   * Largest activation (bytes) the conv feature encoder may allocate before it splits the batch or the time axis;
   * null: the adapter's maxStorageBufferBindingSize / maxBufferSize. Tests force small budgets to compare the chunked
   * computation with the whole one.
   */
  featureEncoderBudgetBytes: number | null = null;
  /**
   * Weights derived from parameters (the weight-normed positional conv weight, conv weights relaid for the implicit
   * GEMM), reused by forwards that need no gradient through them while the parameters are unchanged.
   */
  readonly derived = new DerivedCache();

  constructor(rt: Runtime, config: Wav2Vec2Config, params: ReadonlyMap<string, Tensor>, prefix = 'wav2vec2.', opts: Wav2Vec2EncoderOptions = {}) {
    this.rt = rt;
    this.config = config;
    this.params = params;
    this.prefix = prefix;
    this.featureProjectionLayerNorm = opts.featureProjectionLayerNorm ?? true;
  }

  seed(seed: number): void {
    this.random = seededRandom(seed);
  }

  dispose(): void {
    this.derived.dispose();
  }

  protected p(name: string): Tensor {
    const t = this.params.get(this.prefix + name);
    if (!t) throw new Error(`${this.config.model_type}: no parameter ${this.prefix}${name}`);
    return t;
  }

  protected optP(name: string): Tensor | null {
    return this.params.get(this.prefix + name) ?? null;
  }

  /** Valid frames of each item for a batch padded to `frames` frames (null: the input has no lengths). */
  frameInfo(input: EncoderInput, frames: number): { mask: Int32Array; frameLengths: number[] } | null {
    const B = input.inputValues.shape[0];
    if (input.frameLengths) {
      if (input.frameLengths.length !== B) throw new Error(`encoder: ${input.frameLengths.length} frame lengths for a batch of ${B}`);
      return frameMaskFromFrameLengths(input.frameLengths, frames);
    }
    const lengths = sampleLengthsOf(input);
    return lengths ? frameMaskFromSampleLengths(this.config, lengths, frames) : null;
  }

  // -------------------------------------------------------------------------------------------------------------
  // pieces

  /** The adapter's largest single buffer binding, in bytes. */
  protected bindingLimit(): number {
    return Math.min(Number(this.rt.limits.maxStorageBufferBindingSize), Number(this.rt.limits.maxBufferSize));
  }

  /**
   * input [B, S] -> extract_features [B, T, C] (run under noGrad when frozen: nothing is saved for backward). Split
   * into chunks (planFeatureEncoder) when an activation would exceed the binding limit; the chunks' outputs are
   * concatenated (with backward), equal to the unchunked computation.
   */
  featureEncoder(inputValues: Tensor): Tensor {
    const [B, S] = inputValues.shape;
    const plan = planFeatureEncoder(this.config, B, S, this.featureEncoderBudgetBytes ?? this.bindingLimit());
    const run = () =>
      tidy(() => {
        if (plan.batchChunk >= B && plan.frameChunk >= plan.frames) return this.convStack(inputValues);
        const J = totalStride(this.config);
        const RF = receptiveField(this.config);
        const batchParts: Tensor[] = [];
        for (let b0 = 0; b0 < B; b0 += plan.batchChunk) {
          const nb = Math.min(plan.batchChunk, B - b0);
          const rows = nb === B ? inputValues : sliceAxis(inputValues, 0, b0, nb);
          const timeParts: Tensor[] = [];
          for (let t0 = 0; t0 < plan.frames; t0 += plan.frameChunk) {
            const nf = Math.min(plan.frameChunk, plan.frames - t0);
            const window = (nf - 1) * J + RF;
            // one chunk of all frames takes every sample: 'group' norm's statistics cover conv0 frames past the last
            // output frame's receptive field too
            const piece = nf === plan.frames ? rows : sliceLast(rows, t0 * J, window);
            const y = this.convStack(piece);
            if (piece !== rows) piece.dispose();
            if (y.shape[1] !== nf) throw new Error(`${this.config.model_type}: feature encoder chunk at frame ${t0} gave ${y.shape[1]} frames, expected ${nf}`);
            timeParts.push(y);
          }
          if (rows !== inputValues) rows.dispose();
          const item = timeParts.length === 1 ? timeParts[0] : concat(timeParts, 1);
          if (item !== timeParts[0]) for (const t of timeParts) t.dispose();
          batchParts.push(item);
        }
        const out = batchParts.length === 1 ? batchParts[0] : concat(batchParts, 0);
        if (out !== batchParts[0]) for (const t of batchParts) t.dispose();
        return out;
      });
    return this.featureEncoderFrozen ? noGrad(run) : run();
  }

  /** The conv stack on input [b, S'] -> [b, T', C] (the caller keeps its input). */
  protected convStack(inputValues: Tensor): Tensor {
    return tidy(() => {
      const [B, S] = inputValues.shape;
      let x = inputValues.reshape([B, 1, S]);
      const cfg = this.config;
      cfg.conv_dim.forEach((_, i) => {
        const L = `feature_extractor.conv_layers.${i}`;
        let y = conv1d(x, this.p(`${L}.conv.weight`), this.optP(`${L}.conv.bias`), { stride: cfg.conv_stride[i], derived: this.derived });
        x.dispose();
        // nn.LayerNorm / nn.GroupNorm defaults: eps 1e-5 (config.layer_norm_eps is not used here, as in HF)
        if (cfg.feat_extract_norm === 'layer') {
          // LayerNorm and GELU in one pass
          x = swap(y, layerNormChannels(y, this.p(`${L}.layer_norm.weight`), this.p(`${L}.layer_norm.bias`), 1e-5, { activation: 'gelu' }));
          return;
        }
        if (i === 0) y = swap(y, groupNormPerChannel(y, this.p(`${L}.layer_norm.weight`), this.p(`${L}.layer_norm.bias`), 1e-5));
        x = swap(y, gelu(y));
      });
      return swap(x, transposeLast2(x));
    });
  }

  /**
   * Checks that the transformer's activations of a batch fit the adapter's binding limit before anything runs, so a
   * batch that is too long fails with the option to change rather than a kernel's binding: hidden states, q/k/v and
   * the positional conv [B, T, H], the FFN intermediate [B, T, I], the feature encoder output [B, T, C].
   */
  checkSequenceLimits(batch: number, samples: number, frames: number): void {
    const cfg = this.config;
    const limit = this.bindingLimit();
    const widths: { what: string; width: number; bytes: number }[] = [
      { what: 'hidden states / attention q, k, v / positional conv', width: cfg.hidden_size, bytes: 4 },
      // f32 even under autocast: the f16 GEMM's result is cast back to f32
      { what: 'FFN intermediate', width: cfg.intermediate_size, bytes: 4 },
      { what: 'feature encoder output', width: cfg.conv_dim[cfg.conv_dim.length - 1], bytes: 4 },
    ];
    const perFrame = Math.max(...widths.map((w) => w.width * w.bytes));
    if (batch * frames * perFrame <= limit) return;
    const worst = widths.reduce((a, b) => (b.width * b.bytes > a.width * a.bytes ? b : a));
    const J = totalStride(cfg);
    const RF = receptiveField(cfg);
    const secondsFor = (b: number) => {
      const f = Math.floor(limit / (b * perFrame));
      return f < 1 ? 0 : ((f - 1) * J + RF) / 16000;
    };
    const hint = batch > 1 ? `at most ${secondsFor(batch).toFixed(1)} s per clip fit with batch ${batch}, ${secondsFor(1).toFixed(1)} s with batch 1` : `at most ${secondsFor(1).toFixed(1)} s fit`;
    throw new Error(
      `${cfg.model_type}: a batch of ${batch} clip(s) of ${samples} samples (${(samples / 16000).toFixed(1)} s at 16 kHz, ${frames} frames) needs ` +
        `the ${worst.what} [${batch}, ${frames}, ${worst.width}] of ${batch * frames * worst.width * worst.bytes} bytes, over this adapter's ` +
        `maxStorageBufferBindingSize (${limit} bytes). Lower the batch size (--batch-size) or the clip length (--max-seconds in ` +
        `training; cut long recordings before predict/eval): ${hint}.`,
    );
  }

  /** extract_features [B, T, C] -> (layer-normed features or null, projection output before dropout) */
  featureProjection(extract: Tensor): { normed: Tensor | null; projected: Tensor } {
    const normed = this.featureProjectionLayerNorm ? layerNorm(extract, this.p('feature_projection.layer_norm.weight'), this.p('feature_projection.layer_norm.bias'), this.config.layer_norm_eps) : null;
    const projected = linear(normed ?? extract, this.p('feature_projection.projection.weight'), this.p('feature_projection.projection.bias'));
    return { normed, projected };
  }

  /** Positional conv embedding: x [B, T, H] -> GELU(weight-normed grouped conv, same length) [B, T, H]. */
  positionalEmbedding(x: Tensor, hook: TensorHook = (_, t) => t): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const K = cfg.num_conv_pos_embeddings;
      const T = x.shape[1];
      const g = this.p('encoder.pos_conv_embed.conv.weight_g');
      const v = this.p('encoder.pos_conv_embed.conv.weight_v');
      const w = hook('pos_conv_weight', this.derived.get('pos_conv_weight', [g, v], () => weightNorm(g, v, 2)));
      let y = transposeLast2(x);
      y = swap(y, conv1d(y, w, this.p('encoder.pos_conv_embed.conv.bias'), { padding: Math.floor(K / 2), groups: cfg.num_conv_pos_embedding_groups, derived: this.derived }));
      // an even kernel with padding K/2 yields T + 1 frames: Wav2Vec2SamePadLayer drops the last
      if (y.shape[2] !== T) y = swap(y, sliceLast(y, 0, T));
      y = swap(y, gelu(y));
      return swap(y, transposeLast2(y));
    });
  }

  /** Self-attention of layer `index` on its (normed) input: q, k, v projections, attention, out_proj. */
  selfAttention(index: number, x: Tensor, ctx: LayerContext): Tensor {
    const cfg = this.config;
    const L = `encoder.layers.${index}.attention`;
    const proj = (name: string) => ({ weight: this.p(`${L}.${name}.weight`), bias: this.p(`${L}.${name}.bias`) });
    const out = packedQkvAttention(x, proj('q_proj'), proj('k_proj'), proj('v_proj'), { heads: cfg.num_attention_heads, keyMask: ctx.keyMask, dropout: this.training ? cfg.attention_dropout : 0 });
    return linear(out, this.p(`${L}.out_proj.weight`), this.p(`${L}.out_proj.bias`));
  }

  /** One encoder layer (either layout). Never disposes x. */
  encoderLayer(index: number, x: Tensor, ctx: LayerContext): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const L = `encoder.layers.${index}`;
      const eps = cfg.layer_norm_eps;
      const ln = (t: Tensor, name: string) => layerNorm(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), eps);
      // residual add + LayerNorm in one kernel (one pass over both inputs instead of an add and a LayerNorm)
      const addLn = (t: Tensor, residual: Tensor, name: string) => residualLayerNorm(t, residual, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), eps);
      const stable = cfg.do_stable_layer_norm;
      const attnIn = stable ? ln(x, 'layer_norm') : x;
      let a = this.selfAttention(index, attnIn, ctx);
      a = dropout(a, cfg.hidden_dropout, this.training);
      // stable (pre-LN): h = x + a, the feed-forward reads LN(h); post-LN: h = LN(x + a)
      const first = addLn(a, x, stable ? 'final_layer_norm' : 'layer_norm');
      let h = stable ? first.sum : first.y;
      const ffIn = first.y;
      const lin = (t: Tensor, name: string, act: 'none' | 'gelu' = 'none') => linear(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), act);
      let f = lin(ffIn, 'feed_forward.intermediate_dense', 'gelu');
      f = dropout(f, cfg.activation_dropout, this.training);
      f = lin(f, 'feed_forward.output_dense');
      f = dropout(f, cfg.hidden_dropout, this.training);
      h = stable ? add(h, f) : addLn(f, h, 'final_layer_norm').y;
      return h;
    });
  }

  /** Per-forward state shared by the layers (subclasses add to it; the base has nothing beyond the mask). */
  protected layerContext(ctx: LayerContext): LayerContext {
    return ctx;
  }

  private layerTrains(index: number): boolean {
    const prefix = `${this.prefix}encoder.layers.${index}.`;
    for (const [name, t] of this.params) if (t.requiresGrad && name.startsWith(prefix)) return true;
    return false;
  }

  // -------------------------------------------------------------------------------------------------------------
  // forward

  /**
   * The encoder on a padded batch. In training mode dropout, layerdrop and SpecAugment are active. Every returned
   * tensor belongs to the caller; everything else is freed before returning, except what autograd saved.
   */
  forward(input: EncoderInput, opts: EncoderForwardOptions = {}): EncoderOutput {
    const cfg = this.config;
    const x = input.inputValues;
    if (x.shape.length !== 2 || x.dtype !== 'f32') throw new Error(`${cfg.model_type}: input_values must be f32 [B, S], got ${x.dtype} [${x.shape}]`);
    const [B, S] = x.shape;
    const T = convOutputLength(cfg, S);
    if (T < 1) {
      throw new Error(`${cfg.model_type}: input of ${S} samples is shorter than the feature encoder's receptive field (${receptiveField(cfg)} samples); pad clips to at least that`);
    }
    this.checkSequenceLimits(B, S, T);
    const info = this.frameInfo(input, T);
    const keepAll = opts.outputHiddenStates ?? false;
    const needLayers = keepAll || (opts.needHiddenStates ?? false);
    const rt = this.rt;

    return tidy(() => {
      const frameMask = info ? Tensor.fromData(rt, info.mask, [B, T], 'i32', 'frame_mask') : null;
      const hook: TensorHook = opts.hook ?? ((_, t) => t);
      const intermediates = new Map<string, Tensor>();
      // rt.section names the parts in a profile (rt.profile); a plain call otherwise
      const extract = hook('extract_features', rt.section('feature_encoder', () => this.featureEncoder(x)));
      const { normed, projected } = rt.section('feature_projection', () => this.featureProjection(extract));
      if (keepAll) {
        intermediates.set('extract_features', extract);
        if (normed) intermediates.set('extract_features_normed', normed);
      } else {
        extract.dispose();
        normed?.dispose();
      }
      const fpDropped = dropout(projected, cfg.feat_proj_dropout, this.training);
      if (fpDropped !== projected) projected.dispose();
      const fpOut = hook('feature_projection_output', fpDropped);
      if (keepAll) intermediates.set('feature_projection_output', fpOut);

      let h = this.specAugment(fpOut, info?.frameLengths ?? null, input.maskTimeIndices ?? null);
      if (h !== fpOut && !keepAll) fpOut.dispose();

      // encoder input: padded frames zeroed (HF: hidden_states[~mask] = 0), then + positional embedding
      if (frameMask) h = own(h, maskRows(h, frameMask), keepAll ? fpOut : null);
      const pos = rt.section('pos_conv_embed', () => this.positionalEmbedding(h, hook));
      if (keepAll) intermediates.set('pos_conv_embed_output', pos);
      h = own(h, add(h, pos), keepAll ? fpOut : null);
      if (!keepAll) pos.dispose();
      if (!cfg.do_stable_layer_norm) h = swap(h, layerNorm(h, this.p('encoder.layer_norm.weight'), this.p('encoder.layer_norm.bias'), cfg.layer_norm_eps));
      const hd = dropout(h, cfg.hidden_dropout, this.training);
      if (hd !== h) h.dispose();
      h = hd;

      const hidden: Tensor[] = [];
      const ctx = this.layerContext({ keyMask: frameMask, frames: T, hook, owned: [] });
      for (let l = 0; l < cfg.num_hidden_layers; l++) {
        h = hook(`hidden_states.${l}`, h);
        if (needLayers) hidden.push(h);
        if (this.training && cfg.layerdrop > 0 && this.random() < cfg.layerdrop) continue;
        const layer = (t: Tensor) => rt.section(`encoder.layer.${l}`, () => this.encoderLayer(l, t, ctx));
        // checkpointing pays off only where backward will reach: a layer with nothing to train and no gradient to
        // pass down (frozen lower layers) records nothing anyway
        const next = this.gradientCheckpointing && (h.requiresGrad || this.layerTrains(l)) ? checkpoint(layer, [h]) : layer(h);
        if (!needLayers) h.dispose();
        h = next;
      }
      for (const t of ctx.owned) {
        if (keepAll && [...intermediates.values()].includes(t)) continue;
        t.dispose();
      }
      if (cfg.do_stable_layer_norm) {
        const normedOut = layerNorm(h, this.p('encoder.layer_norm.weight'), this.p('encoder.layer_norm.bias'), cfg.layer_norm_eps);
        if (keepAll) intermediates.set('encoder_last_layer_output', h);
        else h.dispose();
        h = normedOut;
      } else if (keepAll) intermediates.set('encoder_last_layer_output', h);
      h = hook(`hidden_states.${cfg.num_hidden_layers}`, h);
      if (needLayers) hidden.push(h);
      const out: EncoderOutput = {
        last_hidden_state: h,
        hidden_states: needLayers ? hidden : [],
        intermediates,
        frameMask,
        frameLengths: info ? info.frameLengths : new Array<number>(B).fill(T),
        frames: T,
      };
      return out;
    });
  }

  /** SpecAugment on the feature projection output (training only, as HF; an explicit time mask applies always). */
  protected specAugment(h: Tensor, frameLengths: number[] | null, explicitTime: Int32Array | null): Tensor {
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
        if (timeMask.length !== B * T) throw new Error(`${cfg.model_type}: time mask has ${timeMask.length} entries, expected ${B} x ${T}`);
        const m = Tensor.fromData(this.rt, timeMask, [B, T], 'i32', 'mask_time_indices');
        y = replaceRows(y, m, this.p('masked_spec_embed'));
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
}

/** Replace `old` by `next`, disposing `old` unless it is the caller's (`keep`). */
function own(old: Tensor, next: Tensor, keep: Tensor | null): Tensor {
  if (old !== next && old !== keep) old.dispose();
  return next;
}
