// Fine-tuning loop (core, no Node imports): the original notebook's recipe as defaults — AdamW lr 3e-4, 100 warm-up
// steps then linear decay, batch 4 x gradient accumulation 2, 2 epochs, gradient clipping at 1.0 (HF Trainer's
// default max_grad_norm), conv feature encoder frozen, best checkpoint by a validation metric (never the test set).
//
// Determinism and resume: the batch order is a function of (seed, epoch); dropout and SpecAugment are reseeded from
// (seed, optimizer step, micro-batch) before every micro-batch; GPU reductions are deterministic. So the state of a
// run is just (weights, optimizer state, position, best-so-far), which is what a checkpoint holds, and a run resumed
// from any checkpoint ends with the same weights as one never interrupted.
//
// Batches: a seeded random permutation per epoch (HF Trainer's default); `groupByLength` groups similar lengths.
// Evaluation never depends on batch composition: pooling is over each clip's real frames (for the notebook head that
// equals its plain mean on the clip alone, unpadded), and models whose real frames change with padding (GroupNorm over
// time in the first conv) are evaluated in batches of equal-length clips only. Training pools as the head does (the
// notebook's plain mean includes padded frames, kept for fidelity) unless `pooling: 'masked'`.
import { Tensor } from '../tensor.js';
import { autocast, backward, manualSeed, noGrad, tidy } from '../autograd.js';
import { AdamW, gradNorm as gradNormOf, type AdamWState, type GradClip } from '../ops/optim.js';
import { softmax } from '../ops/loss.js';
import { linear } from '../ops/matmul.js';
import { dropout } from '../ops/activation.js';
import { crossEntropy } from '../ops/loss.js';
import { disposeOutput, type SpeechClassifier } from '../model/classifier.js';
import { headLoss } from '../model/heads.js';
import type { AudioPreprocessor } from '../model/family.js';
import type { ModelConfigBase } from '../io/config.js';
import type { Wav2Vec2Config } from '../model/wav2vec2/config.js';
import { makeBatch, planBatches, splitUnequalLengths, type Batch } from '../data/batch.js';
import { deriveSeed } from '../data/random.js';
import type { AugmentOptions } from '../audio/augment.js';
import { computeMetrics, computeRegressionMetrics, type Metrics, type RegressionMetrics } from '../metrics.js';
import { linearWarmupDecay } from './schedule.js';

export interface TrainConfig {
  epochs: number;
  lr: number;
  batchSize: number;
  gradAccum: number;
  warmupSteps: number;
  weightDecay: number;
  seed: number;
  /** evaluate (and checkpoint) every N optimizer steps; 0: at the end of each epoch only */
  evalSteps: number;
  /** also write the resumable checkpoint every N optimizer steps (0: only where it evaluates) */
  saveSteps?: number;
  /** validation metric that picks the best checkpoint: ua / accuracy (classification), ccc (regression: mean over targets) */
  metric: 'ua' | 'accuracy' | 'ccc';
  /** global gradient-norm clip (HF Trainer default 1.0); 0 disables */
  maxGradNorm: number;
  /** random crops of longer clips in training (samples) */
  maxSamples?: number;
  /** evaluation clips longer than this are cut from the start (samples); default: no cut */
  evalMaxSamples?: number;
  /** whole encoder frozen: pooled features computed once, then only the head trains */
  headOnly: boolean;
  /** train only the top K encoder layers (+ final layer norm and head) */
  unfreezeTop?: number;
  trainFeatureEncoder: boolean;
  checkpointing: boolean;
  augment?: AugmentOptions | null;
  /** cap on B x T samples of an evaluation batch */
  evalBatchSize?: number;
  /** mixed precision (autocast: linear layers in f16) with dynamic loss scaling; needs shader-f16 */
  fp16?: boolean;
  /** dynamic loss scaling (PyTorch GradScaler's defaults: 2^16, x2 after 2000 clean steps, x0.5 on overflow) */
  lossScale?: { init: number; growthInterval: number };
  /** training batches of similar lengths (HF Trainer's group_by_length); default false: a random permutation per epoch */
  groupByLength?: boolean;
  /**
   * pooling over time in training: 'plain' averages every frame of the padded batch (the notebook head's
   * torch.mean), 'masked' only each clip's real frames; default: the head's own (plain for the notebook head, masked
   * for the sequence-classification head). Evaluation always pools over real frames.
   */
  pooling?: 'plain' | 'masked';
}

/**
 * True when padding a clip changes its real frames, so only unpadded (equal-length) batches give batch-independent
 * results: wav2vec2-style feature encoders with feat_extract_norm "group" normalise the first conv over all time steps.
 */
export function paddingChangesFrames(config: ModelConfigBase): boolean {
  return (config as Partial<Wav2Vec2Config>).feat_extract_norm === 'group';
}

export const DEFAULT_LOSS_SCALE = { init: 65536, growthInterval: 2000 };

/** Dynamic loss scale state: the scale and how many optimizer steps in a row had finite gradients. */
export interface LossScaleState {
  scale: number;
  goodSteps: number;
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  epochs: 2,
  lr: 3e-4,
  batchSize: 4,
  gradAccum: 2,
  warmupSteps: 100,
  weightDecay: 0,
  seed: 42,
  evalSteps: 0,
  metric: 'ua',
  maxGradNorm: 1.0,
  headOnly: false,
  trainFeatureEncoder: false,
  checkpointing: false,
  augment: null,
};

/** A labelled set of clips the trainer can fetch (un-normalized mono 16 kHz). */
export interface ClipSet {
  ids: readonly string[];
  /** class ids (classification; empty for regression sets) */
  labels: readonly number[];
  /** regression: float targets [n, targets] row-major, in the model's label (target) order */
  targets?: Float32Array;
  /** samples per clip (for bucketing) */
  lengths: readonly number[];
  clip(index: number): Promise<Float32Array>;
}

export interface TrainPosition {
  /** optimizer steps taken */
  step: number;
  epoch: number;
  /** micro-batches of `epoch` already consumed */
  microBatch: number;
}

export interface TrainerCheckpoint {
  position: TrainPosition;
  optimizer: AdamWState;
  /** every model parameter, by name */
  weights: Map<string, Float32Array>;
  best: { metric: number; step: number } | null;
  /** fp16 runs: the dynamic loss scale */
  lossScale?: LossScaleState;
}

export interface EvalResult {
  metrics: Metrics;
  loss: number;
  /** softmax probabilities [n, L] in ClipSet order */
  probs: Float32Array;
}

export interface RegressionEvalResult {
  metrics: RegressionMetrics;
  /** mean MSE loss (over clips; each clip's loss is its mean over targets) */
  loss: number;
  /** the model's outputs [n, targets] in ClipSet order */
  outputs: Float32Array;
}

/** Metrics of either problem type (regression metrics carry per-target CCC). */
export type AnyMetrics = Metrics | RegressionMetrics;

export function isRegressionMetrics(m: AnyMetrics): m is RegressionMetrics {
  return 'ccc' in m;
}

export interface TrainerIO {
  log(line: Record<string, unknown>): void;
  progress?(info: { step: number; totalSteps: number; epoch: number; loss: number; lr: number; stepSeconds: number }): void;
  /** persist a resumable checkpoint (atomically) */
  saveCheckpoint(ck: TrainerCheckpoint): Promise<void>;
  /** called when the validation metric improves: save the model as the best so far */
  saveBest(step: number, metrics: AnyMetrics): Promise<void>;
}

export function totalOptimizerSteps(batchesPerEpoch: number, cfg: Pick<TrainConfig, 'epochs' | 'gradAccum'>): number {
  return cfg.epochs * Math.ceil(batchesPerEpoch / cfg.gradAccum);
}

/** Which parameters train: the feature encoder only on request, the whole encoder not in head-only mode, the top K layers with unfreezeTop. */
export function selectTrainable(model: SpeechClassifier, cfg: Pick<TrainConfig, 'headOnly' | 'unfreezeTop' | 'trainFeatureEncoder'>): void {
  model.freezeFeatureEncoder = !cfg.trainFeatureEncoder;
  const L = model.config.num_hidden_layers;
  const family = model.family;
  for (const [name, t] of model.namedParameters()) {
    if (model.isHeadParameter(name)) continue; // the head always trains
    if (cfg.headOnly) {
      t.requiresGrad = false;
      continue;
    }
    if (cfg.unfreezeTop !== undefined) {
      const layer = family.layerOf(name);
      const top = layer !== null ? layer >= L - cfg.unfreezeTop : family.isTopParameter(name, model.config);
      if (!top) t.requiresGrad = false;
    }
  }
}

export class Trainer {
  readonly model: SpeechClassifier;
  readonly cfg: TrainConfig;
  readonly train: ClipSet;
  readonly valid: ClipSet | null;
  /** the model's input preparation (default: Wav2Vec2FeatureExtractor's normalise-and-pad) */
  readonly preprocessor: AudioPreprocessor | null;
  readonly labels: readonly string[];
  readonly io: TrainerIO;
  readonly optimizer: AdamW;
  readonly params: Tensor[];
  position: TrainPosition = { step: 0, epoch: 0, microBatch: 0 };
  best: { metric: number; step: number } | null = null;
  /** fp16: the dynamic loss scale (null in f32 runs) */
  lossScale: LossScaleState | null = null;
  readonly batchesPerEpoch: number;
  readonly totalSteps: number;
  /** pooled features cached for head-only training, per ClipSet */
  private pooledCache = new Map<ClipSet, Float32Array>();
  /** the model's pooling over real frames only, in training */
  private readonly trainPoolExcludePadding: boolean;

  constructor(model: SpeechClassifier, sets: { train: ClipSet; valid: ClipSet | null; preprocessor?: AudioPreprocessor | null }, labels: readonly string[], cfg: TrainConfig, io: TrainerIO) {
    this.model = model;
    this.cfg = cfg;
    this.train = sets.train;
    this.valid = sets.valid;
    this.preprocessor = sets.preprocessor ?? null;
    this.labels = labels;
    this.io = io;
    if (cfg.headOnly && model.head !== 'speech-classification') throw new Error('--head-only needs the notebook head (classifier.dense / classifier.out_proj)');
    if (cfg.headOnly && model.pooling === 'max') throw new Error('--head-only caches pooled features; max pooling is supported, but not with dropout before pooling — use mean or sum');
    if (cfg.fp16 && !model.rt.hasF16) throw new Error('--fp16: this adapter has no shader-f16 feature, so it cannot compute in f16; train in f32 (without --fp16)');
    if (cfg.fp16) this.lossScale = { scale: (cfg.lossScale ?? DEFAULT_LOSS_SCALE).init, goodSteps: 0 };
    if (this.regression) {
      if (cfg.metric !== 'ccc') throw new Error(`a regression model (problem_type "regression") is selected by CCC; metric '${cfg.metric}' is a classification metric`);
      const K = model.config.num_labels;
      for (const [name, set] of [['train', sets.train], ['valid', sets.valid]] as const) {
        if (set && (!set.targets || set.targets.length !== set.ids.length * K)) throw new Error(`regression: the ${name} set needs ${set.ids.length} x ${K} float targets (got ${set.targets?.length ?? 'none'})`);
      }
    } else if (cfg.metric === 'ccc') throw new Error('metric ccc is for regression models (problem_type "regression"); use ua or accuracy');
    if (cfg.pooling !== undefined && cfg.pooling !== 'plain' && cfg.pooling !== 'masked') throw new Error(`pooling must be plain or masked (got '${String(cfg.pooling)}')`);
    if (cfg.pooling) model.poolExcludePadding = cfg.pooling === 'masked';
    this.trainPoolExcludePadding = model.poolExcludePadding;
    selectTrainable(model, cfg);
    model.gradientCheckpointing = cfg.checkpointing;
    this.params = model.trainableParameters();
    this.optimizer = new AdamW(this.params, { lr: cfg.lr, weightDecay: cfg.weightDecay, betas: [0.9, 0.999], eps: 1e-8 });
    this.batchesPerEpoch = this.plan(0).length;
    this.totalSteps = totalOptimizerSteps(this.batchesPerEpoch, cfg);
  }

  /** problem_type "regression": MSE on float targets, CCC / MSE / MAE metrics */
  get regression(): boolean {
    return this.model.config.problem_type === 'regression';
  }

  private plan(epoch: number): number[][] {
    return planBatches(this.train.lengths, { batchSize: this.cfg.batchSize, seed: this.cfg.seed, epoch, shuffle: true, groupByLength: this.cfg.groupByLength ?? false, maxSamples: this.cfg.maxSamples });
  }

  /** Evaluation batches: sorted by length; equal lengths only when padding would change a clip's frames. */
  private evalPlan(set: ClipSet): number[][] {
    const plan = planBatches(set.lengths, { batchSize: this.cfg.evalBatchSize ?? this.cfg.batchSize, shuffle: false, maxSamples: this.cfg.evalMaxSamples });
    return paddingChangesFrames(this.model.config) ? splitUnequalLengths(plan, set.lengths, this.cfg.evalMaxSamples) : plan;
  }

  /** Eval mode with pooling over real frames (batch-independent); returns the function that restores training. */
  private enterEval(): () => void {
    const wasTraining = this.model.training;
    this.model.eval();
    this.model.poolExcludePadding = true;
    return () => {
      this.model.train(wasTraining);
      this.model.poolExcludePadding = this.trainPoolExcludePadding;
    };
  }

  /** Restore a checkpoint taken by this trainer's io.saveCheckpoint. */
  restore(ck: TrainerCheckpoint): void {
    for (const [name, t] of this.model.namedParameters()) {
      const w = ck.weights.get(name);
      if (!w) throw new Error(`checkpoint has no weights for ${name}`);
      if (w.length !== t.size) throw new Error(`checkpoint weights for ${name} have ${w.length} values, the model ${t.size}`);
      t.write(w);
    }
    this.optimizer.importState(ck.optimizer);
    this.position = { ...ck.position };
    this.best = ck.best ? { ...ck.best } : null;
    if (this.lossScale && ck.lossScale) this.lossScale = { ...ck.lossScale };
  }

  async checkpoint(): Promise<TrainerCheckpoint> {
    const weights = new Map<string, Float32Array>();
    for (const [name, t] of this.model.namedParameters()) weights.set(name, (await t.readFloat()).slice());
    const ck: TrainerCheckpoint = { position: { ...this.position }, optimizer: await this.optimizer.exportState(), weights, best: this.best ? { ...this.best } : null };
    if (this.lossScale) ck.lossScale = { ...this.lossScale };
    return ck;
  }

  private async batchOf(set: ClipSet, indices: number[], train: boolean, epoch: number): Promise<Batch> {
    const regression = this.regression;
    const batch = await makeBatch(indices, (i) => set.clip(i), regression ? null : (i) => set.labels[i], {
      train,
      maxSamples: train ? this.cfg.maxSamples : this.cfg.evalMaxSamples,
      evalCrop: 'start',
      augment: train ? this.cfg.augment : null,
      seed: this.cfg.seed,
      epoch,
      prepare: this.preprocessor ? (clips) => this.preprocessor!.prepare(clips) : undefined,
    }, (i) => set.ids[i]);
    if (regression && set.targets) {
      const K = this.model.config.num_labels;
      const targets = new Float32Array(indices.length * K);
      indices.forEach((idx, r) => targets.set(set.targets!.subarray(idx * K, (idx + 1) * K), r * K));
      batch.targets = targets;
    }
    return batch;
  }

  /** What the loss compares the outputs with: class ids, or float targets (regression). */
  private lossTargets(batch: Batch): Int32Array | Float32Array | null {
    if (!this.regression) return batch.labels.length ? batch.labels : null;
    return batch.targets ?? null;
  }

  /** The model's forward, under autocast in fp16 runs. */
  private precision<T>(fn: () => T): T {
    return this.cfg.fp16 ? autocast(fn, 'f16') : fn();
  }

  /** Forward + backward of one micro-batch; returns the (unscaled) loss. */
  private async microStep(batch: Batch, seed: number): Promise<number> {
    manualSeed(seed);
    this.model.seed(seed);
    const rt = this.model.rt;
    const lossT = this.precision(() => tidy(() => {
      const input = Tensor.fromData(rt, batch.input, batch.shape, 'f32', 'input_values');
      if (this.cfg.headOnly) return this.headLoss(batch);
      const out = this.model.forward({ inputValues: input, attentionMask: batch.mask ?? null, labels: this.lossTargets(batch) });
      const loss = out.loss!;
      out.loss = null;
      disposeOutput(out);
      return loss;
    }));
    // gradient accumulation: each micro-batch contributes loss / gradAccum (as HF's Trainer); in fp16 runs the
    // gradient is also multiplied by the loss scale, so small values survive f16 (unscaled before the step)
    const seedGrad = Tensor.fromData(rt, [(this.lossScale?.scale ?? 1) / this.cfg.gradAccum], [1], 'f32', 'loss scale');
    const value = (await lossT.readFloat())[0];
    if (lossT.node) backward(lossT, seedGrad);
    seedGrad.dispose();
    lossT.dispose();
    return value;
  }

  /** Head-only training: dropout -> dense -> tanh -> dropout -> out_proj on cached pooled features. */
  private headLoss(batch: Batch): Tensor {
    const cache = this.pooledCache.get(this.train)!;
    const H = this.model.config.hidden_size;
    const pooled = new Float32Array(batch.B * H);
    batch.indices.forEach((idx, r) => pooled.set(cache.subarray(idx * H, (idx + 1) * H), r * H));
    const p = (n: string) => this.model.params.get(n)!;
    const x = Tensor.fromData(this.model.rt, pooled, [batch.B, H], 'f32', 'pooled');
    const pd = this.model.config.final_dropout;
    let z = dropout(x, pd, true);
    z = linear(z, p('classifier.dense.weight'), p('classifier.dense.bias'), 'tanh');
    z = dropout(z, pd, true);
    const logits = linear(z, p('classifier.out_proj.weight'), p('classifier.out_proj.bias'));
    if (this.regression) return headLoss(this.model.config, logits, batch.targets!);
    return crossEntropy(logits, Tensor.fromData(this.model.rt, batch.labels, [batch.B], 'i32', 'labels'));
  }

  /** Encoder pooled features for every clip of a set (head-only mode), computed once. */
  async pooledFeatures(set: ClipSet): Promise<Float32Array> {
    const hit = this.pooledCache.get(set);
    if (hit) return hit;
    const H = this.model.config.hidden_size;
    const out = new Float32Array(set.ids.length * H);
    const restore = this.enterEval();
    try {
      for (const idx of this.evalPlan(set)) {
        const batch = await this.batchOf(set, idx, false, 0);
        const pooled = noGrad(() => this.precision(() => tidy(() => {
          const input = Tensor.fromData(this.model.rt, batch.input, batch.shape, 'f32', 'input_values');
          const o = this.model.forward({ inputValues: input, attentionMask: batch.mask ?? null });
          const pl = o.pooled!;
          o.pooled = null;
          disposeOutput(o);
          return pl;
        })));
        const v = await pooled.readFloat();
        pooled.dispose();
        idx.forEach((i, r) => out.set(v.subarray(r * H, (r + 1) * H), i * H));
      }
    } finally {
      restore();
    }
    this.pooledCache.set(set, out);
    return out;
  }

  /** Evaluate on a labelled set: metrics, mean loss, probabilities. */
  async evaluate(set: ClipSet): Promise<EvalResult> {
    if (this.regression) throw new Error('evaluate: a regression model; use evaluateRegression');
    const { values: probs, loss } = await this.forwardSet(set, true);
    const L = this.labels.length;
    const pred = new Int32Array(set.ids.length);
    for (let i = 0; i < pred.length; i++) {
      let best = 0;
      for (let k = 1; k < L; k++) if (probs[i * L + k] > probs[i * L + best]) best = k;
      pred[i] = best;
    }
    return { metrics: computeMetrics(set.labels, pred, this.labels), loss, probs };
  }

  /** Evaluate a regression model on a set with float targets: per-target MSE, MAE, CCC, mean loss, outputs. */
  async evaluateRegression(set: ClipSet): Promise<RegressionEvalResult> {
    if (!this.regression) throw new Error('evaluateRegression: not a regression model (problem_type is not "regression")');
    if (!set.targets || set.targets.length !== set.ids.length * this.labels.length) throw new Error(`evaluateRegression: the set needs ${set.ids.length} x ${this.labels.length} float targets`);
    const { values: outputs, loss } = await this.forwardSet(set, false);
    return { metrics: computeRegressionMetrics(set.targets, outputs, this.labels), loss, outputs };
  }

  /** Eval-mode forward over a set: softmax probabilities (classification) or raw outputs [n, L], and the mean loss. */
  private async forwardSet(set: ClipSet, softmaxOutputs: boolean): Promise<{ values: Float32Array; loss: number }> {
    const L = this.labels.length;
    const probs = new Float32Array(set.ids.length * L);
    let lossSum = 0;
    const restore = this.enterEval();
    try {
      for (const idx of this.evalPlan(set)) {
        const batch = await this.batchOf(set, idx, false, 0);
        const [p, loss] = noGrad(() => this.precision(() => tidy(() => {
          const input = Tensor.fromData(this.model.rt, batch.input, batch.shape, 'f32', 'input_values');
          const o = this.model.forward({ inputValues: input, attentionMask: batch.mask ?? null, labels: this.lossTargets(batch) });
          const pr = softmaxOutputs ? softmax(o.logits!) : o.logits!;
          if (!softmaxOutputs) o.logits = null;
          const l = o.loss!;
          o.loss = null;
          disposeOutput(o);
          return [pr, l];
        })));
        const pv = await p.readFloat();
        lossSum += (await loss.readFloat())[0] * batch.B;
        p.dispose();
        loss.dispose();
        idx.forEach((i, r) => probs.set(pv.subarray(r * L, (r + 1) * L), i * L));
      }
    } finally {
      restore();
    }
    return { values: probs, loss: lossSum / Math.max(1, set.ids.length) };
  }

  private metricOf(m: AnyMetrics): number {
    if (isRegressionMetrics(m)) return m.ccc;
    return this.cfg.metric === 'accuracy' ? m.wa : m.ua;
  }

  private async evalAndSave(): Promise<void> {
    const { step, epoch } = this.position;
    if (this.valid) {
      const r = this.regression ? await this.evaluateRegression(this.valid) : await this.evaluate(this.valid);
      const value = this.metricOf(r.metrics);
      this.io.log({ type: 'eval', split: 'valid', step, epoch, loss: r.loss, ...evalLogFields(r.metrics) });
      if (!this.best || value > this.best.metric) {
        this.best = { metric: value, step };
        await this.io.saveBest(step, r.metrics);
      }
    }
    await this.io.saveCheckpoint(await this.checkpoint());
  }

  private stopRequested = false;

  /**
   * Ask run() to stop at the next micro-batch boundary: it writes a resumable checkpoint there and returns
   * 'interrupted'. Weights and optimizer state change only at optimizer steps, so a checkpoint between the
   * micro-batches of one accumulation holds the last step's position and a resumed run recomputes those micro-batches.
   */
  requestStop(): void {
    this.stopRequested = true;
  }

  private async stopHere(): Promise<'interrupted'> {
    await this.io.saveCheckpoint(await this.checkpoint());
    return 'interrupted';
  }

  /** Train from the current position to the end ('done'), or until requestStop() ('interrupted', checkpoint saved). */
  async run(): Promise<'done' | 'interrupted'> {
    const cfg = this.cfg;
    const saveSteps = cfg.saveSteps ?? 0;
    if (cfg.headOnly) {
      await this.pooledFeatures(this.train);
    }
    this.model.train(true);
    while (this.position.epoch < cfg.epochs) {
      const epoch = this.position.epoch;
      const batches = this.plan(epoch);
      let accumulated = 0;
      let lossSum = 0;
      let t0 = performance.now();
      for (let mb = this.position.microBatch; mb < batches.length; mb++) {
        // this.position is still the last optimizer step's (microBatch = where this accumulation began)
        if (this.stopRequested) return this.stopHere();
        const batch = await this.batchOf(this.train, batches[mb], true, epoch);
        const seed = deriveSeed(cfg.seed, 'step', this.position.step, accumulated);
        lossSum += await this.microStep(batch, seed);
        accumulated++;
        const last = mb === batches.length - 1;
        if (accumulated === cfg.gradAccum || last) {
          const lr = linearWarmupDecay(this.position.step, cfg.lr, cfg.warmupSteps, this.totalSteps);
          let gradNorm: number | undefined;
          let skipped = false;
          const withGrads = this.params.filter((p) => p.grad);
          // clipping and unscaling happen inside the AdamW update (clip_grad_norm_'s factor, no extra pass over the
          // gradients); the norm is read back for the log
          let clip: GradClip | undefined;
          if (this.lossScale && withGrads.length > 0) {
            // a non-finite norm means an f16 overflow somewhere: skip this step and halve the scale (GradScaler's
            // rule); after growthInterval clean steps in a row, double it
            const gradScale = this.lossScale.scale;
            clip = { norm: gradNormOf(withGrads, { gradScale }), maxNorm: cfg.maxGradNorm, gradScale };
            gradNorm = (await clip.norm.readFloat())[0];
            skipped = !Number.isFinite(gradNorm);
          } else if (cfg.maxGradNorm > 0 && withGrads.length > 0) {
            clip = { norm: gradNormOf(withGrads), maxNorm: cfg.maxGradNorm };
            gradNorm = (await clip.norm.readFloat())[0];
          }
          if (!skipped) this.optimizer.step(lr, { clip });
          clip?.norm.dispose();
          this.optimizer.zeroGrad();
          const scaleUsed = this.lossScale?.scale;
          if (this.lossScale) {
            const ls = this.lossScale;
            if (skipped) this.lossScale = { scale: ls.scale * 0.5, goodSteps: 0 };
            else if (ls.goodSteps + 1 >= (cfg.lossScale ?? DEFAULT_LOSS_SCALE).growthInterval) this.lossScale = { scale: ls.scale * 2, goodSteps: 0 };
            else this.lossScale = { scale: ls.scale, goodSteps: ls.goodSteps + 1 };
          }
          const loss = lossSum / accumulated;
          this.position = { step: this.position.step + 1, epoch, microBatch: mb + 1 };
          const stepSeconds = (performance.now() - t0) / 1000;
          t0 = performance.now();
          const ep = epoch + (mb + 1) / batches.length;
          this.io.log({ type: 'train', step: this.position.step, epoch: ep, loss, lr, grad_norm: gradNorm, step_seconds: stepSeconds, ...(scaleUsed !== undefined ? { loss_scale: scaleUsed, skipped } : {}) });
          this.io.progress?.({ step: this.position.step, totalSteps: this.totalSteps, epoch: ep, loss, lr, stepSeconds });
          accumulated = 0;
          lossSum = 0;
          const evaluates = !last && cfg.evalSteps > 0 && this.position.step % cfg.evalSteps === 0;
          if (evaluates) await this.evalAndSave();
          else if (!last && saveSteps > 0 && this.position.step % saveSteps === 0) await this.io.saveCheckpoint(await this.checkpoint());
        }
      }
      this.position = { step: this.position.step, epoch: epoch + 1, microBatch: 0 };
      await this.evalAndSave();
    }
    return 'done';
  }
}

/** The metric fields of an evaluation log line: WA / UA, or mean MSE / MAE / CCC and each target's CCC. */
export function evalLogFields(m: AnyMetrics): Record<string, number | Record<string, number>> {
  // classification: WA, UA and every class's recall (the report plots recall per class over time)
  if (!isRegressionMetrics(m)) return { wa: m.wa, ua: m.ua, recall: Object.fromEntries(Object.entries(m.per_class).map(([label, c]) => [label, c.recall])) };
  const out: Record<string, number> = { mse: m.mse, mae: m.mae, ccc: m.ccc };
  for (const t of m.targets) out[`ccc_${t}`] = m.per_target[t].ccc;
  return out;
}
