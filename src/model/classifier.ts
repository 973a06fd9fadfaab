// A speech classifier: any registered family's encoder plus a head (heads.ts), parameters under Hugging Face names
// in one map. The family comes from config.model_type through the registry; this file knows no family.
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { tidy } from '../autograd.js';
import type { ModelConfigBase, PoolingMode } from '../io/config.js';
import { canonicalParameterName, loadIntoTensors, mapCheckpointKeys, sourceShapes, type LoadReport } from '../io/statedict.js';
import type { TensorSource } from '../io/source.js';
import type { EncoderInput, EncoderOutput, SpeechEncoder, TensorHook } from './family.js';
import { familyOf, type AnyFamily } from './registry.js';
import { detectHead, headInitRule, headParameterShapes, runHead, type HeadOutput, type ModelHead } from './heads.js';
import { initParameters } from './init.js';

export type { ModelHead, HeadOutput, TensorHook };
export { detectHead };

export interface ParameterSpec {
  name: string;
  shape: number[];
  /** part of the convolutional feature encoder (frozen by default) */
  featureEncoder: boolean;
}

/** Every parameter of a family's encoder with the head (HF names, state-dict order). */
export function parameterShapes(config: ModelConfigBase, head: ModelHead, family: AnyFamily = familyOf(config)): Map<string, number[]> {
  const { before, after } = headParameterShapes(config, head);
  const shapes = new Map([...before, ...family.encoderParameterShapes(config), ...after]);
  let total = 0;
  for (const s of shapes.values()) total += s.reduce((a, b) => a * b, 1);
  // each size field is bounded on its own; together they can still ask for an absurd model (a hostile config.json)
  if (total > MAX_PARAMETERS) {
    throw new Error(`config.json describes a ${config.model_type} model of ${(total / 1e9).toFixed(1)} billion parameters (hidden_size ${config.hidden_size}, num_hidden_layers ${config.num_hidden_layers}); the largest supported is ${MAX_PARAMETERS / 1e9} billion`);
  }
  return shapes;
}

/** Twice XLS-R 2B: a config describing more is refused before anything is allocated. */
export const MAX_PARAMETERS = 4e9;

export function parameterSpecs(config: ModelConfigBase, head: ModelHead): ParameterSpec[] {
  const family = familyOf(config);
  return [...parameterShapes(config, head, family)].map(([name, shape]) => ({ name, shape, featureEncoder: family.isFeatureEncoderParameter(name) }));
}

/** Fresh parameters for a config and head (HF's init rules, our seeded generator), in state-dict order. */
export function initWeights(config: ModelConfigBase, opts: { head: ModelHead; seed?: number; only?: (name: string) => boolean }) {
  const family = familyOf(config);
  const shapes = parameterShapes(config, opts.head, family);
  const { before, after } = headParameterShapes(config, opts.head);
  const isHead = (n: string) => before.has(n) || after.has(n);
  return initParameters(shapes, (name, shape) => (isHead(name) ? headInitRule(name, shape, config) : family.initRule(name, shape, config)), { seed: opts.seed, only: opts.only });
}

export interface ClassifierOptions {
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
   * true for the sequence-classification head (HF's *ForSequenceClassification masks them when given a mask).
   */
  poolExcludePadding?: boolean;
  /** seed of the CPU generator for layerdrop and SpecAugment (default 0) */
  seed?: number;
}

export interface ClassifierBatch extends EncoderInput {
  /** class indices [B], or float targets [B * labels] for regression */
  labels?: Tensor | Int32Array | Float32Array | readonly number[] | null;
}

export interface ForwardOptions {
  hook?: TensorHook;
  /** keep every hidden state and the family's named intermediates */
  outputHiddenStates?: boolean;
  /** skip the head (no pooled / logits / loss) */
  encoderOnly?: boolean;
}

export interface ClassifierOutput extends EncoderOutput {
  /** pooled features [B, H] (HF head: [B, classifier_proj_size], after the projector) */
  pooled: Tensor | null;
  logits: Tensor | null;
  loss: Tensor | null;
}

export interface HeadCallOptions {
  hook?: TensorHook;
  pooling?: PoolingMode;
  poolExcludePadding?: boolean;
  labels?: Tensor | Int32Array | Float32Array | readonly number[] | null;
}

export interface FromSourceOptions extends ClassifierOptions {
  /** names the checkpoint in messages */
  checkpoint?: string;
  initSeed?: number;
  ignoreMismatchedSizes?: boolean;
  onTensor?: (name: string, index: number, total: number) => void;
}

/** A family's encoder with a classification (or regression) head; parameters live in `params` under HF names. */
export class SpeechClassifier {
  readonly rt: Runtime;
  readonly config: ModelConfigBase;
  readonly family: AnyFamily;
  readonly params: Map<string, Tensor>;
  readonly head: ModelHead;
  readonly encoder: SpeechEncoder;
  pooling: PoolingMode;
  poolExcludePadding: boolean;
  private readonly headNames: Set<string>;

  /**
   * `params` must hold every parameter parameterSpecs() lists for the head, with matching shapes (extra entries,
   * e.g. a CTC lm_head or a quantizer, are ignored). The model takes ownership: dispose() frees them.
   */
  constructor(rt: Runtime, config: ModelConfigBase, params: Map<string, Tensor>, opts: ClassifierOptions = {}) {
    this.rt = rt;
    this.config = config;
    this.family = familyOf(config);
    this.head = opts.head ?? detectHead(params.keys()) ?? defaultHead(this.family);
    const shapes = parameterShapes(config, this.head, this.family);
    const problems: string[] = [];
    for (const [name, shape] of shapes) {
      const t = params.get(name);
      if (!t) problems.push(`missing ${name} [${shape}]`);
      else if (t.shape.join() !== shape.join()) problems.push(`${name} is [${t.shape}], expected [${shape}]`);
      else if (t.dtype !== 'f32') problems.push(`${name} is ${t.dtype}, expected f32`);
    }
    if (problems.length) {
      const shown = problems.slice(0, 12).join('; ');
      throw new Error(`${config.model_type} (${this.head} head): ${problems.length} parameter problem(s): ${shown}${problems.length > 12 ? '; ...' : ''}`);
    }
    this.params = new Map([...shapes.keys()].map((name) => [name, params.get(name)!]));
    for (const [name, t] of this.params) t.label = name;
    const { before, after } = headParameterShapes(config, this.head);
    this.headNames = new Set([...before.keys(), ...after.keys()]);
    this.encoder = this.family.createEncoder(rt, config, this.params);
    this.encoder.gradientCheckpointing = opts.gradientCheckpointing ?? false;
    this.encoder.seed(opts.seed ?? 0);
    this.pooling = opts.pooling ?? config.pooling_mode ?? 'mean';
    this.poolExcludePadding = opts.poolExcludePadding ?? this.head === 'sequence-classification';
    for (const t of this.params.values()) t.requiresGrad = true;
    this.freezeFeatureEncoder = opts.freezeFeatureEncoder ?? true;
  }

  /** Upload f32 arrays (e.g. from a checkpoint) and build the model. */
  static fromArrays(rt: Runtime, config: ModelConfigBase, arrays: Map<string, { shape: readonly number[]; data: Float32Array }>, opts: ClassifierOptions = {}): SpeechClassifier {
    const head = opts.head ?? detectHead(arrays.keys()) ?? defaultHead(familyOf(config));
    const wanted = parameterShapes(config, head);
    const params = new Map<string, Tensor>();
    try {
      for (const [name, a] of arrays) if (wanted.has(name)) params.set(name, Tensor.fromData(rt, a.data, a.shape, 'f32', name));
      return new SpeechClassifier(rt, config, params, { ...opts, head });
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  /**
   * Build the model from a checkpoint (safetensors / PyTorch / sharded source), streaming one tensor at a time.
   * Parameters the checkpoint lacks (a new head, masked_spec_embed) are initialised as HF does; the returned report
   * says which, in transformers' words. The head defaults to the checkpoint's, else the notebook's.
   */
  static async fromSource(rt: Runtime, config: ModelConfigBase, source: TensorSource, opts: FromSourceOptions = {}): Promise<{ model: SpeechClassifier; report: LoadReport }> {
    const family = familyOf(config);
    const head = opts.head ?? detectHead([...source.entries.keys()].map(canonicalParameterName)) ?? defaultHead(family);
    const shapes = parameterShapes(config, head, family);
    const mapOptions = { checkpoint: opts.checkpoint ?? source.files.join(', '), ignoreMismatchedSizes: opts.ignoreMismatchedSizes, rules: family.keyRules(config), model: modelClassName(family, head) };
    // the mapping first: a checkpoint that cannot fill the model is refused before any GPU memory is taken
    const mapping = mapCheckpointKeys(sourceShapes(source), shapes, mapOptions);
    if (mapping.errors.length) throw Object.assign(new Error(mapping.errors.join('\n')), { report: mapping });
    const params = new Map([...shapes].map(([name, shape]) => [name, Tensor.empty(rt, shape, 'f32', name)]));
    try {
      const report = await loadIntoTensors(source, params, { ...mapOptions, onTensor: opts.onTensor });
      const fresh = new Set(report.newlyInitialized);
      if (fresh.size) {
        const init = initWeights(config, { head, seed: opts.initSeed ?? 0, only: (n) => fresh.has(n) });
        for (const [name, t] of init) params.get(name)!.write(t.data);
      }
      return { model: new SpeechClassifier(rt, config, params, { ...opts, head }), report };
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
  }

  /** A freshly initialised model (HF's init rules, our seeded generator). */
  static random(rt: Runtime, config: ModelConfigBase, opts: ClassifierOptions & { initSeed?: number } = {}): SpeechClassifier {
    const head = opts.head ?? defaultHead(familyOf(config));
    return SpeechClassifier.fromArrays(rt, config, initWeights(config, { head, seed: opts.initSeed ?? 0 }), { ...opts, head });
  }

  get training(): boolean {
    return this.encoder.training;
  }

  set training(on: boolean) {
    this.encoder.training = on;
  }

  get gradientCheckpointing(): boolean {
    return this.encoder.gradientCheckpointing;
  }

  set gradientCheckpointing(on: boolean) {
    this.encoder.gradientCheckpointing = on;
  }

  get freezeFeatureEncoder(): boolean {
    return this.encoder.featureEncoderFrozen;
  }

  /** Freezing touches only the feature encoder's parameters (callers may freeze others themselves). */
  set freezeFeatureEncoder(on: boolean) {
    this.encoder.featureEncoderFrozen = on;
    for (const [name, t] of this.params) if (this.family.isFeatureEncoderParameter(name)) t.requiresGrad = !on;
  }

  /** Head parameters (always trained; everything else is the encoder's). */
  isHeadParameter(name: string): boolean {
    return this.headNames.has(name);
  }

  /** The HF class a saved config should name: the notebook's for its head, the family's otherwise. */
  architectures(): string[] {
    return [modelClassName(this.family, this.head)];
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
    this.encoder.seed(seed);
  }

  /** The parameters an optimizer should update (all but frozen ones), in state-dict order. */
  trainableParameters(): Tensor[] {
    return [...this.params.values()].filter((t) => t.requiresGrad);
  }

  /** Parameter names in state-dict order, paired with their tensors. */
  namedParameters(): [string, Tensor][] {
    return [...this.params.entries()];
  }

  dispose(): void {
    this.encoder.dispose();
    for (const t of this.params.values()) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }

  /**
   * The whole model on a padded batch. In training mode dropout, layerdrop and SpecAugment are active. Every
   * returned tensor belongs to the caller (disposeOutput frees them); everything else is freed before returning,
   * except what autograd saved for backward.
   */
  forward(batch: ClassifierBatch, opts: ForwardOptions = {}): ClassifierOutput {
    const weighted = this.head === 'sequence-classification' && this.config.use_weighted_layer_sum && !opts.encoderOnly;
    return tidy(() => {
      const enc = this.encoder.forward(batch, { hook: opts.hook, outputHiddenStates: opts.outputHiddenStates, needHiddenStates: weighted });
      let headOut: HeadOutput | null = null;
      if (!opts.encoderOnly && this.head !== 'none') {
        headOut = this.rt.section('head', () => this.classify(enc.last_hidden_state, enc.hidden_states, enc.frameMask, { labels: batch.labels ?? null, hook: opts.hook }));
      }
      if (weighted && !opts.outputHiddenStates) {
        // the weighted layer sum needed them; the caller did not ask for them
        for (const t of enc.hidden_states) if (t !== enc.last_hidden_state) t.dispose();
        enc.hidden_states = [];
      }
      const out: ClassifierOutput = { ...enc, pooled: headOut?.pooled ?? null, logits: headOut?.logits ?? null, loss: headOut?.loss ?? null };
      return out;
    });
  }

  /**
   * The head on encoder output `last` [B, T, H] (and, for HF's weighted layer sum, all hidden states). Pooling
   * defaults to the model's setting; poolExcludePadding needs the frame mask.
   */
  classify(last: Tensor, hiddenStates: readonly Tensor[], frameMask: Tensor | null, opts: HeadCallOptions = {}): HeadOutput {
    const p = (name: string) => {
      const t = this.params.get(name);
      if (!t) throw new Error(`${this.config.model_type}: no parameter ${name}`);
      return t;
    };
    return runHead(this.head, this.config, p, { lastHiddenState: last, hiddenStates, frameMask }, {
      hook: opts.hook,
      pooling: opts.pooling ?? this.pooling,
      poolExcludePadding: opts.poolExcludePadding ?? this.poolExcludePadding,
      labels: opts.labels ?? null,
      training: this.training,
    });
  }
}

/** The head of a model when nothing names one (the family's choice; see ModelFamily.defaultHead). */
export function defaultHead(family: AnyFamily): ModelHead {
  return family.defaultHead ?? 'sequence-classification';
}

/** The notebook's class for its head; the family's *ForSequenceClassification or base model otherwise. */
function modelClassName(family: AnyFamily, head: ModelHead): string {
  if (head === 'speech-classification') return 'Wav2Vec2ForSpeechClassification';
  return head === 'sequence-classification' ? family.classNames.sequenceClassification : family.classNames.base;
}

/** The one output `key` of a forward (the caller owns it); every other tensor of the output is freed. */
export function takeOutput(out: ClassifierOutput, key: 'logits' | 'loss'): Tensor {
  const t = out[key];
  if (!t) throw new Error(`the forward returned no ${key}${key === 'loss' ? ' (no labels given?)' : ''}`);
  out[key] = null;
  disposeOutput(out);
  return t;
}

/** Free every tensor of a forward's output. */
export function disposeOutput(out: Partial<ClassifierOutput> | HeadOutput): void {
  const seen = new Set<Tensor>();
  const drop = (t: unknown) => {
    if (t instanceof Tensor && !seen.has(t)) {
      seen.add(t);
      t.dispose();
    }
  };
  for (const v of Object.values(out)) {
    if (v instanceof Map) for (const t of v.values()) drop(t);
    else if (Array.isArray(v)) for (const t of v) drop(t);
    else drop(v);
  }
}

/** The notebook's model name, kept for code written against the wav2vec2-only engine. */
export const Wav2Vec2ForSpeechClassification = SpeechClassifier;
export type Wav2Vec2ForSpeechClassification = SpeechClassifier;
