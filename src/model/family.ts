// What a model family is: the contract between a family folder (src/model/<family>/) and the rest of the engine.
// The classifier (classifier.ts), the heads (heads.ts), checkpoint loading (io/statedict.ts), the trainer and the
// CLI see a family only through this interface, found by config.json's model_type in registry.ts.
//
// A family owns: config parsing with Hugging Face's defaults (its *Config class), the encoder's parameter layout
// and checkpoint key rules (weight prefix, legacy spellings, keys to skip), HF-style initialisation, the forward
// pass on our ops, what "feature encoder" means for freezing, and input preprocessing (raw waveform or log-mel).
// Heads are not part of a family: they run on any encoder's [B, T, H] output and frame mask.
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../tensor.js';
import type { HeadConfig, ModelConfigBase } from '../io/config.js';
import type { KeyRules } from '../io/statedict.js';
import type { InitRule } from './init.js';

export type { HeadConfig, ModelConfigBase };

/** Called with each named intermediate as it is produced; what it returns is used in its place (check-reference
 * puts an identity there that records the gradient flowing through). */
export type TensorHook = (name: string, t: Tensor) => Tensor;

export interface EncoderInput {
  /** the family's model input: f32 [B, S] waveforms, or f32 [B, mel, frames] log-mel features (Whisper) */
  inputValues: Tensor;
  /** sample-level mask [B * S] (1 = real sample), as Wav2Vec2FeatureExtractor returns it */
  attentionMask?: Int32Array | readonly number[] | null;
  /** real samples per item (instead of attentionMask) */
  inputLengths?: readonly number[] | null;
  /** valid frames per item (instead of attentionMask / inputLengths) */
  frameLengths?: readonly number[] | null;
  /** explicit SpecAugment time mask i32 [B * T] (1 = replace by masked_spec_embed); applied in any mode, like HF */
  maskTimeIndices?: Int32Array | null;
}

export interface EncoderForwardOptions {
  hook?: TensorHook;
  /** keep every hidden state and the family's named intermediates (check-reference, feature extraction) */
  outputHiddenStates?: boolean;
  /** keep hidden_states (the weighted layer sum needs them) without the other intermediates */
  needHiddenStates?: boolean;
}

export interface EncoderOutput {
  last_hidden_state: Tensor;
  /** HF output_hidden_states: num_hidden_layers + 1 tensors (empty unless asked for) */
  hidden_states: Tensor[];
  /** the family's named intermediates (extract_features, pos_conv_embed_output, ...), only with outputHiddenStates */
  intermediates: Map<string, Tensor>;
  /** i32 [B, T] valid-frame mask, or null when the input carries no lengths (HF's attention_mask=None path) */
  frameMask: Tensor | null;
  /** valid frames per item (all T without a mask) */
  frameLengths: number[];
  frames: number;
}

/** An encoder built on a set of parameters (owned by the classifier). */
export interface SpeechEncoder {
  /** dropout, layerdrop and SpecAugment run only in training mode */
  training: boolean;
  gradientCheckpointing: boolean;
  /** run the feature encoder under noGrad (its parameters frozen) */
  featureEncoderFrozen: boolean;
  /** reseed the generator of layerdrop / SpecAugment */
  seed(seed: number): void;
  forward(input: EncoderInput, opts?: EncoderForwardOptions): EncoderOutput;
  /** Free what the encoder keeps between forwards (derived weights); the parameters belong to the classifier. */
  dispose(): void;
}

/** The model input a batch of clips becomes (host side), and the preprocessor settings saved with a model. */
export interface AudioPreprocessor {
  /** the sampling rate the model expects */
  readonly samplingRate: number;
  /** the fewest samples that give one frame */
  readonly minSamples: number;
  /**
   * Clips (mono, samplingRate, un-normalized) -> the model input: values row-major with `shape` ([B, S] padded
   * waveforms, or [B, mel, frames]), and the real length of each clip in samples.
   */
  prepare(clips: readonly Float32Array[]): { values: Float32Array; shape: number[]; lengths: number[]; mask: Int32Array | null };
  /** preprocessor_config.json content */
  json(): Record<string, unknown>;
}

export interface InitTensor {
  shape: number[];
  data: Float32Array;
}

export interface ModelFamily<C extends ModelConfigBase = ModelConfigBase> {
  /** short name used in messages and CLI options ('wav2vec2', 'hubert', ...) */
  readonly name: string;
  /** config.json model_type values this family reads */
  readonly modelTypes: readonly string[];
  /**
   * The head a model gets when neither the caller nor the checkpoint names one: wav2vec2 keeps the SER notebook's
   * head (the original's recipe); the other families default to transformers' *ForSequenceClassification, so a model
   * trained from their base checkpoints saves a config transformers can load.
   */
  readonly defaultHead?: 'speech-classification' | 'sequence-classification';
  /** HF class names: the base model and the sequence-classification model (messages, saved architectures) */
  readonly classNames: { base: string; sequenceClassification: string };
  /** parse config.json (an object) with the family's HF defaults; errors name `file` and the field */
  parseConfig(json: Record<string, unknown>, file: string): C;
  /** config.json fields the parser normalises (written back from the parsed values when saving) */
  readonly configFields: readonly string[];
  /** the encoder's parameters (canonical HF names, with the family prefix) and shapes, in state_dict order */
  encoderParameterShapes(config: C): Map<string, number[]>;
  /** checkpoint key rules: prefix, other spellings, keys skipped with a notice */
  keyRules(config: C): KeyRules;
  /** how HF's _init_weights initialises one of the encoder's parameters (values come from init.ts) */
  initRule(name: string, shape: readonly number[], config: C): InitRule;
  /** true for parameters of the convolutional front end (frozen by default, as freeze_feature_encoder()) */
  isFeatureEncoderParameter(name: string): boolean;
  /** the transformer layer a parameter belongs to, or null (for --unfreeze-top) */
  layerOf(name: string): number | null;
  /** parameters above the last layer that train with the top layers (a final layer norm) */
  isTopParameter(name: string, config: C): boolean;
  createEncoder(rt: Runtime, config: C, params: ReadonlyMap<string, Tensor>): SpeechEncoder;
  /** preprocessor_config.json (absent file: {}) -> the family's input preparation for this config */
  parsePreprocessor(json: Record<string, unknown>, file: string, config: C): AudioPreprocessor;
}
