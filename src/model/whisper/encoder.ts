// Whisper's encoder on our ops, forward and backward through our autograd, with Hugging Face semantics
// (modeling_whisper.py v4.30, WhisperEncoder; see ../shared/fixtures/whisper_tiny_cls/manifest.json):
//
//   input_features [B, num_mel_bins, F] (log-mel from features.ts; F = 3000 for 30 s)
//   --conv1 (k3, p1) -> GELU -> conv2 (k3, s2, p1) -> GELU, as [B, T, D]--> extract_features, T = (F - 1)/2 + 1
//   + encoder.embed_positions.weight (ALL max_source_positions rows, no slicing: T must equal it, i.e. 3000 or
//     2999 input frames for 1500; a parameter with a gradient) -> dropout --> hidden_states.0
//   --pre-LN layers: x + dropout(out_proj(attn(LN(x)))) (k_proj without bias, softmax(q k^T / sqrt(head_dim)), NO
//     attention mask: the padded part of the 30 s is attended like speech), then
//     x + dropout(fc2(dropout(GELU(fc1(LN(x))))))  --> hidden_states.1 .. encoder_layers - 1
//   --encoder.layer_norm--> hidden_states.<encoder_layers> = last_hidden_state
//
// There is no frame mask (WhisperForAudioClassification takes none), so the heads pool over all T frames, as HF's
// projected.mean(dim=1). HF computes embed_scale but never applies it (scale_embedding has no effect); neither do we.
// Dropout, activation_dropout, attention_dropout and encoder_layerdrop act in training mode only and draw from our
// seeded generators, not torch's. WhisperForAudioClassification applies no SpecAugment.
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../tensor.js';
import { checkpoint, noGrad, record, tidy } from '../../autograd.js';
import { add, scale } from '../../ops/elementwise.js';
import { linear, matmul } from '../../ops/matmul.js';
import { conv1d } from '../../ops/conv.js';
import { DerivedCache } from '../../runtime/derived.js';
import { layerNorm, residualLayerNorm } from '../../ops/norm.js';
import { gelu, dropout } from '../../ops/activation.js';
import { packedQkvAttention } from '../qkv.js';
import { transposeLast2 } from '../../ops/shape.js';
import { seededRandom } from '../specaugment.js';
import type { EncoderForwardOptions, EncoderInput, EncoderOutput, SpeechEncoder, TensorHook } from '../family.js';
import type { WhisperConfig } from './config.js';
import { WHISPER_PREFIX } from './params.js';

/** nn.LayerNorm's default: WhisperConfig has no layer_norm_eps */
const LAYER_NORM_EPS = 1e-5;

/** Output frames of conv2 (k3, s2, p1) for F input frames (conv1 keeps the length). */
export function whisperEncoderFrames(inputFrames: number): number {
  return Math.floor((inputFrames - 1) / 2) + 1;
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

/**
 * x [B, T, D] + table [T, D] for every item. The broadcast is the rank-1 product ones[B, 1] x table[1, T*D], so the
 * GEMM's backward gives the table's gradient as the sum over the batch, with no new kernel.
 */
export function addToEveryItem(x: Tensor, table: Tensor): Tensor {
  const [B, T, D] = x.shape;
  if (table.shape.length !== 2 || table.shape[0] !== T || table.shape[1] !== D) throw new Error(`addToEveryItem: table [${table.shape}] must be [${T}, ${D}]`);
  return tidy(() => {
    const ones = Tensor.fromData(x.rt, new Float32Array(B).fill(1), [B, 1], 'f32', 'ones');
    const rows = matmul(ones, reshapeWithGrad(table, [1, T * D]));
    return add(x, reshapeWithGrad(rows, [B, T, D]));
  });
}

export class WhisperEncoder implements SpeechEncoder {
  readonly rt: Runtime;
  readonly config: WhisperConfig;
  readonly params: ReadonlyMap<string, Tensor>;
  training = false;
  gradientCheckpointing = false;
  /** conv1 and conv2 run under noGrad (the classifier clears their requiresGrad) */
  featureEncoderFrozen = true;
  private random: () => number = seededRandom(0);
  /** conv weights relaid for the implicit GEMM, reused while unchanged (see Wav2Vec2Encoder.derived) */
  readonly derived = new DerivedCache();

  constructor(rt: Runtime, config: WhisperConfig, params: ReadonlyMap<string, Tensor>) {
    this.rt = rt;
    this.config = config;
    this.params = params;
  }

  seed(seed: number): void {
    this.random = seededRandom(seed);
  }

  dispose(): void {
    this.derived.dispose();
  }

  private p(name: string): Tensor {
    const t = this.params.get(WHISPER_PREFIX + name);
    if (!t) throw new Error(`whisper: no parameter ${WHISPER_PREFIX}${name}`);
    return t;
  }

  /** input_features [B, mels, F] -> gelu(conv2(gelu(conv1(x)))) as [B, T, D] */
  convStem(inputFeatures: Tensor): Tensor {
    const run = () =>
      tidy(() => {
        const a = gelu(conv1d(inputFeatures, this.p('conv1.weight'), this.p('conv1.bias'), { padding: 1, derived: this.derived }));
        const b = gelu(conv1d(a, this.p('conv2.weight'), this.p('conv2.bias'), { stride: 2, padding: 1, derived: this.derived }));
        return transposeLast2(b);
      });
    return this.featureEncoderFrozen ? noGrad(run) : run();
  }

  /** One pre-LN encoder layer. Never disposes x. */
  encoderLayer(index: number, x: Tensor): Tensor {
    return tidy(() => {
      const cfg = this.config;
      const L = `layers.${index}`;
      const ln = (t: Tensor, name: string) => layerNorm(t, this.p(`${L}.${name}.weight`), this.p(`${L}.${name}.bias`), LAYER_NORM_EPS);
      const a = ln(x, 'self_attn_layer_norm');
      const proj = (name: string, bias: boolean) => ({ weight: this.p(`${L}.self_attn.${name}.weight`), bias: bias ? this.p(`${L}.self_attn.${name}.bias`) : null });
      // Whisper's k_proj has no bias
      const ctx = packedQkvAttention(a, proj('q_proj', true), proj('k_proj', false), proj('v_proj', true), { heads: cfg.encoder_attention_heads, keyMask: null, dropout: this.training ? cfg.attention_dropout : 0 });
      const o = dropout(linear(ctx, this.p(`${L}.self_attn.out_proj.weight`), this.p(`${L}.self_attn.out_proj.bias`)), cfg.dropout, this.training);
      // h = x + o and the feed-forward's LN(h) in one kernel
      const { y: ffIn, sum: h } = residualLayerNorm(o, x, this.p(`${L}.final_layer_norm.weight`), this.p(`${L}.final_layer_norm.bias`), LAYER_NORM_EPS);
      let f = linear(ffIn, this.p(`${L}.fc1.weight`), this.p(`${L}.fc1.bias`), 'gelu');
      f = dropout(f, cfg.activation_dropout, this.training);
      f = dropout(linear(f, this.p(`${L}.fc2.weight`), this.p(`${L}.fc2.bias`)), cfg.dropout, this.training);
      return add(h, f);
    });
  }

  private layerTrains(index: number): boolean {
    const prefix = `${WHISPER_PREFIX}layers.${index}.`;
    for (const [name, t] of this.params) if (t.requiresGrad && name.startsWith(prefix)) return true;
    return false;
  }

  forward(input: EncoderInput, opts: EncoderForwardOptions = {}): EncoderOutput {
    const cfg = this.config;
    const x = input.inputValues;
    if (x.shape.length !== 3 || x.dtype !== 'f32' || x.shape[1] !== cfg.num_mel_bins) {
      throw new Error(`whisper: input must be f32 log-mel features [B, ${cfg.num_mel_bins}, frames], got ${x.dtype} [${x.shape}]`);
    }
    if (input.attentionMask || input.inputLengths || input.frameLengths || input.maskTimeIndices) {
      // WhisperForAudioClassification has no attention mask: every clip is 30 s of features, padding included
      throw new Error('whisper: the encoder takes no attention mask, lengths or SpecAugment mask (every clip is padded to 30 s and attended whole, as in Hugging Face)');
    }
    const T = whisperEncoderFrames(x.shape[2]);
    if (T !== cfg.max_source_positions) {
      throw new Error(
        `whisper: ${x.shape[2]} input frames give ${T} encoder frames, but embed_positions has max_source_positions = ${cfg.max_source_positions} ` +
          `rows and Hugging Face adds all of them: give ${2 * cfg.max_source_positions} frames (the feature extractor pads every clip to chunk_length seconds)`,
      );
    }
    const B = x.shape[0];
    const keepAll = opts.outputHiddenStates ?? false;
    const needLayers = keepAll || (opts.needHiddenStates ?? false);
    const hook: TensorHook = opts.hook ?? ((_, t) => t);
    return tidy(() => {
      const intermediates = new Map<string, Tensor>();
      const extract = hook('extract_features', this.rt.section('conv_stem', () => this.convStem(x)));
      if (keepAll) intermediates.set('extract_features', extract);
      let h = addToEveryItem(extract, this.p('embed_positions.weight'));
      if (!keepAll) extract.dispose();
      const hd = dropout(h, cfg.dropout, this.training);
      if (hd !== h) h.dispose();
      h = hd;
      const hidden: Tensor[] = [];
      for (let l = 0; l < cfg.encoder_layers; l++) {
        h = hook(`hidden_states.${l}`, h);
        if (needLayers) hidden.push(h);
        if (this.training && cfg.encoder_layerdrop > 0 && this.random() < cfg.encoder_layerdrop) continue;
        const layer = (t: Tensor) => this.rt.section(`encoder.layer.${l}`, () => this.encoderLayer(l, t));
        // checkpointing pays off only where backward will reach
        const next = this.gradientCheckpointing && (h.requiresGrad || this.layerTrains(l)) ? checkpoint(layer, [h]) : layer(h);
        if (!needLayers) h.dispose();
        h = next;
      }
      const normed = layerNorm(h, this.p('layer_norm.weight'), this.p('layer_norm.bias'), LAYER_NORM_EPS);
      if (keepAll) intermediates.set('encoder_last_layer_output', h);
      else if (!hidden.includes(h)) h.dispose(); // (a layerdropped last layer leaves h = a kept hidden state)
      h = hook(`hidden_states.${cfg.encoder_layers}`, normed);
      if (needLayers) hidden.push(h);
      const out: EncoderOutput = {
        last_hidden_state: h,
        hidden_states: needLayers ? hidden : [],
        intermediates,
        frameMask: null,
        frameLengths: new Array<number>(B).fill(T),
        frames: T,
      };
      return out;
    });
  }
}
