// Whisper encoder parameters: names, shapes and state-dict order as in transformers' WhisperForAudioClassification
// (its encoder is the attribute `encoder.`; the head's layer_weights, projector.*, classifier.* come from heads.ts),
// the checkpoint key rules, and HF's initialisation (WhisperPreTrainedModel._init_weights, v4.30).
// Checkpoints: WhisperForAudioClassification has encoder.*; WhisperForConditionalGeneration and WhisperModel saved
// from a seq2seq model have model.encoder.* (from_pretrained maps them onto encoder.*, as the alias does here) and a
// text decoder (model.decoder.* or decoder.*) and proj_out, which are skipped with a notice.
import { commonSkipReason, extraLayerSkip, type KeyRules } from '../../io/statedict.js';
import { defaultRule, type InitRule } from '../init.js';
import type { WhisperConfig } from './config.js';

export const WHISPER_PREFIX = 'encoder.';

/** The encoder's parameters in PyTorch state_dict order. */
export function whisperEncoderShapes(c: WhisperConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const D = c.d_model;
  const linear = (name: string, out: number, inp: number, bias = true) => {
    m.set(`${name}.weight`, [out, inp]);
    if (bias) m.set(`${name}.bias`, [out]);
  };
  const norm = (name: string) => {
    m.set(`${name}.weight`, [D]);
    m.set(`${name}.bias`, [D]);
  };
  const p = WHISPER_PREFIX;
  m.set(`${p}conv1.weight`, [D, c.num_mel_bins, 3]);
  m.set(`${p}conv1.bias`, [D]);
  m.set(`${p}conv2.weight`, [D, D, 3]);
  m.set(`${p}conv2.bias`, [D]);
  m.set(`${p}embed_positions.weight`, [c.max_source_positions, D]);
  for (let i = 0; i < c.encoder_layers; i++) {
    const L = `${p}layers.${i}`;
    linear(`${L}.self_attn.k_proj`, D, D, false); // WhisperAttention: k_proj has no bias
    linear(`${L}.self_attn.v_proj`, D, D);
    linear(`${L}.self_attn.q_proj`, D, D);
    linear(`${L}.self_attn.out_proj`, D, D);
    norm(`${L}.self_attn_layer_norm`);
    linear(`${L}.fc1`, c.encoder_ffn_dim, D);
    linear(`${L}.fc2`, D, c.encoder_ffn_dim);
    norm(`${L}.final_layer_norm`);
  }
  norm(`${p}layer_norm`);
  return m;
}

/** WhisperEncoder's top-level modules: a key starting with one of these is a WhisperEncoder saved alone */
const BASE_MODEL_PARTS = new Set(['conv1', 'conv2', 'embed_positions', 'layers', 'layer_norm']);

function seq2seqSkipReason(key: string): string | null {
  if (key.startsWith('model.decoder.') || key.startsWith('decoder.')) return 'the text decoder of a seq2seq (speech recognition) checkpoint';
  if (key === 'proj_out.weight') return 'the output projection (proj_out) of WhisperForConditionalGeneration';
  return null;
}

export function whisperKeyRules(c: WhisperConfig): KeyRules {
  const extra = extraLayerSkip(`${WHISPER_PREFIX}layers.`, c.encoder_layers);
  return {
    prefix: WHISPER_PREFIX,
    baseModelParts: BASE_MODEL_PARTS,
    aliases: [['model.encoder.', WHISPER_PREFIX]],
    skipReason: (key) => seq2seqSkipReason(key) ?? extra(key) ?? commonSkipReason(key),
  };
}

/**
 * WhisperPreTrainedModel._init_weights (v4.30): nn.Linear and nn.Conv1d weights N(0, init_std), biases 0; the
 * nn.Embedding embed_positions N(0, init_std) (real checkpoints hold sinusoids; transformers >= 4.37 initialises
 * them so); LayerNorm weight 1, bias 0 (PyTorch's default, _init_weights leaves it).
 */
export function whisperInitRule(name: string, _shape: readonly number[], c: WhisperConfig): InitRule {
  return defaultRule(name, c.init_std);
}

const LAYER_RE = /^encoder\.layers\.(\d+)\./;

export const whisperRoles = {
  /** the convolutional stem (conv1, conv2): what "feature encoder" means for freezing */
  isFeatureEncoderParameter: (name: string) => name.startsWith(`${WHISPER_PREFIX}conv1.`) || name.startsWith(`${WHISPER_PREFIX}conv2.`),
  layerOf: (name: string) => {
    const m = name.match(LAYER_RE);
    return m ? Number(m[1]) : null;
  },
  /** the final encoder.layer_norm (pre-LN layout) trains with the top layers */
  isTopParameter: (name: string) => name.startsWith(`${WHISPER_PREFIX}layer_norm.`),
};
