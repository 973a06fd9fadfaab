// `ser train`, `ser eval`, `ser predict`, `ser demo`: the Node edge of fine-tuning and evaluation (files, progress,
// checkpoints); the loop itself is src/train/trainer.ts.
import cliProgress from 'cli-progress';
import fs from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import type { Runtime } from '../runtime/runtime.js';
import { configObject, fineTunedConfigJson, type ModelConfigBase } from '../io/config.js';
import { familyOf, parseModelConfig } from '../model/registry.js';
import type { AudioPreprocessor } from '../model/family.js';
import { loadCheckpointFile, writeCheckpointFile } from './train-checkpoint.js';
import { SpeechClassifier } from '../model/classifier.js';
import { Trainer, DEFAULT_TRAIN_CONFIG, DEFAULT_LOSS_SCALE, evalLogFields, isRegressionMetrics, type AnyMetrics, type ClipSet, type TrainConfig, type TrainerIO } from '../train/trainer.js';
import { LabelSet, SHEMO_LABELS, selectLabels, labelCounts, normalizeLabel } from '../data/labels.js';
import type { DataItem } from '../data/manifest.js';
import { applySplits, describeSplits } from '../data/split.js';
import { computeMetrics, formatMetrics, formatRegressionMetrics, type Metrics } from '../metrics.js';
import { buildReport, type PredictionRecord, type SkippedRecord } from '../report/html.js';
import { trainerState } from '../report/trainer-state.js';
import { timelineHtml, type TimelinePoint } from '../report/timeline.js';
import { createNodeRuntime } from './dawn.js';
import { JsonlLog, WEIGHT_FILES, ensureDir, modelFolder, openModelDir, readTextFile, recoverModelDir, removeStaleTemporaries, saveModelDir, writeFileAtomic } from './modeldir.js';
import { resolveModel } from './hub.js';
import { ClipStore, loadDataset, loadOrMakeSplits, missingFiles } from './audio-file.js';
import { audioClassifier, type AudioClassifier } from './pipeline.js';
import type { Prediction, TimelineEntry } from '../pipeline.js';
import { synthesizeDemoCorpus } from './demo-corpus.js';
import { demoConfigFor } from './demo-configs.js';
import { aliasOption, integer, number, parseCommand, serCommand, valueOption } from './cli-options.js';

// ---------------------------------------------------------------------------------------------------------------
// model loading

export interface LoadedModel {
  model: SpeechClassifier;
  config: ModelConfigBase;
  preprocessor: AudioPreprocessor;
  /** what was loaded and what was initialised, in words */
  notes: string[];
}

/**
 * A Hugging Face directory (or a training run folder holding model/). Eval and predict need weights; for training
 * (`forTraining`), a directory with only config.json means a randomly initialised model (Hugging Face's init), and
 * `labels` (when given) replace the config's label set; a checkpoint head of another size is then re-initialised, as
 * from_pretrained(..., num_labels=n, ignore_mismatched_sizes=True) does. Outside training a label set other than the
 * model's is refused: the head would not mean what the labels say. `untrainedOk` (profiling, tuning: commands that
 * time the model and never report its predictions) accepts a config-only folder or a checkpoint without its head.
 */
export async function loadModel(rt: Runtime, idOrDir: string, opts: { labels?: readonly string[]; seed?: number; forTraining?: boolean; untrainedOk?: boolean; regression?: boolean } = {}): Promise<LoadedModel> {
  // a save killed between its two renames left the previous folder aside: put it back first (a run folder's model/ too)
  await recoverModelDir(idOrDir);
  // a Hub id (org/name[@rev]) becomes its snapshot folder in the Hub cache; a run folder its model/
  const resolved = await resolveModel(idOrDir);
  await recoverModelDir(path.join(resolved, 'model'));
  const dir = modelFolder(resolved);
  const configPath = path.join(dir, 'config.json');
  let config = parseModelConfig(await readTextFile(configPath), configPath);
  const family = familyOf(config);
  const hasWeights = fs.readdirSync(dir).some((f) => (WEIGHT_FILES as readonly string[]).includes(f));
  if (!hasWeights && !opts.forTraining && !opts.untrainedOk) {
    throw new Error(`${dir}: no weights (looked for ${WEIGHT_FILES.join(', ')}). A folder with only config.json is an untrained model, so its predictions would be random; train it first (ser train --model ${idOrDir} ...)`);
  }
  // training a regression head (float targets) on a classification model, or the reverse, replaces the head
  const retype = opts.regression !== undefined && opts.regression !== (config.problem_type === 'regression');
  if (retype && !opts.forTraining) throw new Error(`${configPath}: problem_type is ${JSON.stringify(config.problem_type)}, not what was asked`);
  const relabel = retype || (opts.labels && (opts.labels.length !== config.labels.length || opts.labels.some((l, i) => config.labels[i] !== l)));
  if (relabel && !opts.forTraining) throw new Error(`${configPath}: the model's labels [${config.labels.join(', ')}] are not [${opts.labels!.join(', ')}]`);
  const notes: string[] = [];
  if (relabel) {
    const labels = opts.labels ?? config.labels;
    if (retype) {
      notes.push(opts.regression
        ? `regression on targets [${labels.join(', ')}] replaces the model's classification head over [${config.labels.join(', ')}] (${configPath}): problem_type "regression", MSE loss; the head's output layer is re-initialised where its size differs (see the notices)`
        : `classification over [${labels.join(', ')}] replaces the model's regression head (${configPath}); the head's output layer is re-initialised where its size differs`);
    } else notes.push(`labels [${labels.join(', ')}] replace the model's [${config.labels.join(', ')}] (${configPath}): fine-tuning with the new label set`);
    const extra = retype ? { problem_type: opts.regression ? 'regression' : 'single_label_classification' } : undefined;
    config = family.parseConfig(fineTunedConfigJson(config, { labels: [...labels], extra }, family.configFields), configPath);
  }
  if (!hasWeights) {
    const ppPath = path.join(dir, 'preprocessor_config.json');
    const preprocessor = family.parsePreprocessor(configObject(fs.existsSync(ppPath) ? await readTextFile(ppPath) : {}, ppPath), ppPath, config);
    notes.push(`${dir} has no weights: training starts from config.json only, every parameter randomly initialised (Hugging Face's init, seed ${opts.seed ?? 0})`);
    const model = SpeechClassifier.random(rt, config, { initSeed: opts.seed ?? 0 });
    return { model, config, preprocessor, notes };
  }
  const md = await openModelDir(dir);
  try {
    const { model, report } = await SpeechClassifier.fromSource(rt, config, md.weights, {
      checkpoint: md.weightsFile,
      initSeed: opts.seed ?? 0,
      ignoreMismatchedSizes: Boolean(relabel),
    });
    for (const n of report.notices) notes.push(n);
    const untrained = report.newlyInitialized.filter((n) => !n.endsWith('masked_spec_embed'));
    if (untrained.length && !opts.forTraining && !opts.untrainedOk) {
      model.dispose();
      throw new Error(`${md.weightsFile}: ${untrained.length} parameter(s) are not in the checkpoint (${untrained.slice(0, 4).join(', ')}${untrained.length > 4 ? ', ...' : ''}): an untrained head would score at random; fine-tune the model first (ser train)`);
    }
    return { model, config, preprocessor: md.preprocessor, notes };
  } finally {
    await md.close();
  }
}

export async function saveModel(model: SpeechClassifier, config: ModelConfigBase, preprocessor: AudioPreprocessor, dir: string): Promise<void> {
  const tensors = model.namedParameters().map(([name, t]) => ({ name, shape: [...t.shape], data: () => t.readFloat() }));
  await saveModelDir(dir, {
    config: fineTunedConfigJson(config, { pooling_mode: model.pooling, architectures: model.architectures() }, model.family.configFields),
    preprocessor: preprocessor.json(),
    tensors,
  });
}

/** Runs fn; an error whose message does not name `file` gets it in front (JSON parsers' messages do not). */
function withFileName<T>(file: string, fn: () => T): T {
  const rename = (e: unknown): never => {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(msg.includes(file) ? msg : `${file}: ${msg}`);
  };
  try {
    const r = fn();
    return (r instanceof Promise ? r.catch(rename) : r) as T;
  } catch (e) {
    return rename(e);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// data

/** A clip left out of a run or an evaluation, and why. */
export interface SkippedClip {
  file: string;
  reason: string;
}

/** Decode every clip once (bad audio is recorded and skipped, never fatal to the run). */
async function buildClipSet(items: readonly DataItem[], labels: { id(label: string): number } | { targets: number }, store: ClipStore, minSamples: number, log: (m: string) => void): Promise<{ set: ClipSet; items: DataItem[]; skipped: SkippedClip[] }> {
  const kept: DataItem[] = [];
  const lengths: number[] = [];
  const skipped: SkippedClip[] = [];
  for (const it of items) {
    try {
      const x = await store.get(it.path);
      if (x.length < minSamples) throw new Error(`${it.path}: ${x.length} samples is shorter than the model's receptive field (${minSamples} samples)`);
      kept.push(it);
      lengths.push(x.length);
    } catch (e) {
      skipped.push({ file: it.path, reason: (e as Error).message });
      log(`skipping ${it.id}: ${(e as Error).message}`);
    }
  }
  let set: ClipSet;
  if ('targets' in labels) {
    // regression: float targets [n, K] in the manifest's target-column order (= the model's label order)
    const K = labels.targets;
    const targets = new Float32Array(kept.length * K);
    kept.forEach((it, i) => {
      if (!it.targets || it.targets.length !== K) throw new Error(`${it.id}: ${it.targets?.length ?? 0} target values, the model has ${K} outputs`);
      targets.set(it.targets, i * K);
    });
    set = { ids: kept.map((it) => it.id), labels: [], targets, lengths, clip: (i) => store.get(kept[i].path) };
  } else {
    set = { ids: kept.map((it) => it.id), labels: kept.map((it) => labels.id(it.label)), lengths, clip: (i) => store.get(kept[i].path) };
  }
  return { set, items: kept, skipped };
}

export const DEFAULT_MAX_SKIPPED_FRACTION = 0.1;

/**
 * Refuses a validation or test split that lost more than `maxFraction` of its clips: a model picked (or scored) on
 * what is left would be judged on a different set than the one asked for.
 */
export function checkSkipped(record: SkippedRecord, maxFraction: number): void {
  const n = record.clips.length;
  if (record.total === 0 || n / record.total <= maxFraction) return;
  const examples = record.clips.slice(0, 3).map((c) => `${c.file}: ${c.reason}`).join('; ');
  throw new Error(
    `${record.split} split: ${n} of ${record.total} clips (${((100 * n) / record.total).toFixed(1)}%) could not be used, more than ` +
      `--max-skipped-fraction ${maxFraction} allows (e.g. ${examples}). Fix or remove those files, or pass --max-skipped-fraction 1 to run on what is left.`,
  );
}

function defaultLabels(kind: string, items: readonly DataItem[]): LabelSet {
  if (kind === 'shemo') return new LabelSet(SHEMO_LABELS);
  return new LabelSet(items.map((it) => it.label));
}

// ---------------------------------------------------------------------------------------------------------------
// progress

function progressPrinter(): (info: { step: number; totalSteps: number; epoch: number; loss: number; lr: number; stepSeconds: number }) => void {
  // cli-progress redraws one line on a terminal and, in a log file or CI, prints a line every 10 s instead
  const bar = new cliProgress.SingleBar({
    format: '[{bar}] step {value}/{total} epoch {epoch} loss {loss} lr {lr} {stepSeconds} s/step ETA {eta_formatted}',
    stream: process.stderr,
    barsize: 24,
    barCompleteChar: '#',
    barIncompleteChar: '.',
    hideCursor: false,
    noTTYOutput: true,
    notTTYSchedule: 10000,
    etaBuffer: 20,
    formatTime: (seconds: number) => formatDuration(seconds),
  });
  let started = false;
  return (p) => {
    const payload = { epoch: p.epoch.toFixed(2), loss: p.loss.toFixed(4), lr: p.lr.toExponential(2), stepSeconds: p.stepSeconds.toFixed(2) };
    if (!started) {
      bar.start(p.totalSteps, p.step, payload);
      started = true;
    } else bar.update(p.step, payload);
    if (p.step >= p.totalSteps) bar.stop();
  };
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

// ---------------------------------------------------------------------------------------------------------------
// train

export function trainOptions(): Command {
  const cmd = serCommand('train', 'fine-tune a wav2vec2-family speech-emotion classifier')
    .requiredOption('--model <dir>', 'Hugging Face model folder or Hub id org/name[@rev] (config.json + weights; config.json alone = random init)')
    .requiredOption('--data <path>', "modified_shemo.json-style file, CSV/TSV (path,label columns) or a folder of per-label folders")
    .option('--data-root <dir>', "folder the manifest's paths are relative to (default: the manifest's folder)")
    .option('--eval-data <path>', 'separate validation set (default: a stratified --val-fraction of --data)')
    .option('--labels <a,b,c>', "label set (default: ShEMO without 'fear'; otherwise every label in --data)")
    .requiredOption('--out <dir>', 'output: model/ (best, Hugging Face format), log.jsonl, splits, report.html, checkpoint')
    .option('--target-columns <a,b,c>', 'regression: numeric CSV columns (e.g. arousal,dominance,valence) become the model\'s outputs (problem_type "regression", MSE loss); splits are random (or --split speaker) and the best checkpoint is picked by mean CCC')
    .addOption(new Option('--split <how>', 'how the test part is held out (stratified, as the original; random; or by speaker). Regression: stratified means random').choices(['stratified', 'random', 'speaker']).default('stratified'))
    .addOption(valueOption('--test-fraction <f>', 'held-out test part of --data (0: none)', number({ atLeast: 0, below: 1 }), 0.2))
    .addOption(valueOption('--val-fraction <f>', 'validation part of the training data', number({ atLeast: 0, below: 1 }), 0.1))
    .addOption(valueOption('--epochs <n>', 'training epochs', integer(1), 2))
    .addOption(valueOption('--lr <x>', 'peak learning rate (AdamW)', number({ atLeast: 0 }), 3e-4))
    .addOption(valueOption('--batch-size <n>', 'clips per micro-batch', integer(1), 4))
    .addOption(valueOption('--grad-accum <n>', 'micro-batches per optimizer step (gradient accumulation)', integer(1), 2))
    .addOption(valueOption('--warmup-steps <n>', 'linear warm-up steps, then linear decay', integer(0), 100))
    .addOption(valueOption('--weight-decay <x>', 'AdamW weight decay', number({ atLeast: 0 }), 0))
    .addOption(valueOption('--seed <n>', 'seed of the split, batch order, dropout and crops', integer(0), 42))
    .addOption(valueOption('--eval-steps <n>', 'evaluate on validation every N optimizer steps (0: each epoch)', integer(0), 0))
    .addOption(valueOption('--save-steps <n>', 'write the resumable checkpoint every N optimizer steps (0: at each evaluation)', integer(0), 0))
    .addOption(new Option('--metric <name>', 'validation metric that picks the best checkpoint (default: ua; ccc, the mean over targets, for regression)').choices(['ua', 'accuracy', 'ccc']))
    .addOption(valueOption('--max-grad-norm <x>', 'gradient clipping by global norm', number({ atLeast: 0 }), 1.0))
    .addOption(valueOption('--max-seconds <s>', 'random crops of longer training clips', number({ above: 0 })))
    .option('--train-feature-encoder', 'also train the conv feature encoder (needed from scratch)')
    .option('--head-only', 'freeze the whole encoder; pooled features are computed once, then the head trains')
    .addOption(valueOption('--unfreeze-top <k>', 'train only the top K encoder layers (+ head)', integer(0)))
    .option('--checkpointing', 'gradient checkpointing (recompute each encoder layer in backward)')
    .option('--fp16', 'mixed precision: linear layers in f16 (f32 accumulate, f32 master weights), dynamic loss scaling; needs an adapter with shader-f16')
    .addOption(valueOption('--loss-scale <s>', 'fp16: initial loss scale (halved on overflow, doubled after 2000 clean steps)', number({ above: 0 }), DEFAULT_LOSS_SCALE.init))
    .option('--augment', 'gain / noise / speed augmentation in training (each with probability 0.5)')
    .option('--group-by-length', "batches of similar lengths (less padding; HF Trainer's group_by_length). Default: a random permutation per epoch, as HF Trainer")
    .addOption(new Option('--pooling <how>', "how the head pools over time in training: plain = the notebook head's torch.mean over every frame of the padded batch (default for that head), masked = each clip's real frames. Evaluation always pools over real frames").choices(['plain', 'masked']))
    .option('--resume', 'continue from <out>/checkpoint.safetensors (starts fresh, and says so, when there is none)')
    .addOption(valueOption('--max-skipped-fraction <f>', 'stop when the validation or test split loses more than this fraction of its clips to unreadable or too-short audio (1 allows any)', number({ atLeast: 0, atMost: 1 }), DEFAULT_MAX_SKIPPED_FRACTION))
    .addOption(valueOption('--init-seed <n>', 'seed of the random initialisation (default: --seed)', integer(0)))
    .option('--quiet', 'no progress bar');
  aliasOption(cmd, '--learning-rate', '--lr');
  aliasOption(cmd, '--num-train-epochs', '--epochs');
  aliasOption(cmd, '--per-device-train-batch-size', '--batch-size');
  aliasOption(cmd, '--gradient-accumulation-steps', '--grad-accum');
  aliasOption(cmd, '--output-dir', '--out');
  return cmd;
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { options: v } = parseCommand(trainOptions(), argv);
  const maxSeconds = v.number('maxSeconds');
  const pooling = v.string('pooling');
  const targetColumnsText = v.string('targetColumns');
  const targetColumns = targetColumnsText?.split(',').map((s) => s.trim()).filter(Boolean);
  if (targetColumns && (targetColumns.length === 0 || new Set(targetColumns).size !== targetColumns.length)) throw new Error(`--target-columns: a list of distinct column names, got '${targetColumnsText}'`);
  if (targetColumns && v.string('labels')) throw new Error('--target-columns and --labels: a regression run takes its output names from --target-columns');
  const metricGiven = v.string('metric');
  const metric: TrainConfig['metric'] = metricGiven === 'accuracy' ? 'accuracy' : metricGiven === 'ccc' ? 'ccc' : metricGiven === 'ua' ? 'ua' : targetColumns ? 'ccc' : 'ua';
  if (targetColumns ? metric !== 'ccc' : metric === 'ccc') throw new Error(`--metric must be ${targetColumns ? 'ccc for a regression run (--target-columns)' : 'ua or accuracy'}, got '${metricGiven}'`);
  const cfg: TrainConfig = {
    ...DEFAULT_TRAIN_CONFIG,
    epochs: v.number('epochs')!,
    lr: v.number('lr')!,
    batchSize: v.number('batchSize')!,
    gradAccum: v.number('gradAccum')!,
    warmupSteps: v.number('warmupSteps')!,
    weightDecay: v.number('weightDecay')!,
    seed: v.number('seed')!,
    evalSteps: v.number('evalSteps')!,
    saveSteps: v.number('saveSteps')!,
    metric,
    maxGradNorm: v.number('maxGradNorm')!,
    maxSamples: maxSeconds !== undefined ? Math.round(maxSeconds * 16000) : undefined,
    headOnly: v.flag('headOnly'),
    unfreezeTop: v.number('unfreezeTop'),
    trainFeatureEncoder: v.flag('trainFeatureEncoder'),
    checkpointing: v.flag('checkpointing'),
    fp16: v.flag('fp16'),
    lossScale: { ...DEFAULT_LOSS_SCALE, init: v.number('lossScale')! },
    groupByLength: v.flag('groupByLength'),
    pooling: pooling === 'plain' || pooling === 'masked' ? pooling : undefined,
    augment: v.flag('augment') ? { gainDb: [-6, 6], noiseSnrDb: [15, 30], speeds: [0.9, 1.0, 1.1], speedProb: 0.5, gainProb: 0.5, noiseProb: 0.5 } : null,
  };
  const splitGiven = v.string('split');
  const split = splitGiven === 'speaker' ? 'speaker' : splitGiven === 'random' || targetColumns ? 'random' : 'stratified';
  const out = v.string('out')!;
  return runTraining({
    modelDir: v.string('model')!,
    data: v.string('data')!,
    dataRoot: v.string('dataRoot'),
    evalData: v.string('evalData'),
    labels: v.string('labels')?.split(',').map((s) => s.trim()).filter(Boolean),
    out,
    split,
    testFraction: v.number('testFraction')!,
    valFraction: v.number('valFraction')!,
    cfg,
    resume: v.flag('resume'),
    initSeed: v.number('initSeed'),
    quiet: v.flag('quiet'),
    maxSkippedFraction: v.number('maxSkippedFraction')!,
    targetColumns,
    // the command that continues this run after an interruption
    resumeCommand: resumeCommandLine(argv),
  });
}

/** `ser train <the same arguments> --resume`, quoted for a POSIX shell. */
function resumeCommandLine(argv: readonly string[]): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return ['ser', 'train', ...argv.filter((a) => a !== '--resume'), '--resume'].map(quote).join(' ');
}

export interface TrainRun {
  modelDir: string;
  data: string;
  dataRoot?: string;
  evalData?: string;
  labels?: string[];
  out: string;
  split: 'stratified' | 'speaker' | 'random';
  /** regression: numeric CSV columns that become the model's outputs (problem_type "regression") */
  targetColumns?: string[];
  testFraction: number;
  valFraction: number;
  cfg: TrainConfig;
  resume: boolean;
  initSeed?: number;
  quiet?: boolean;
  title?: string;
  /** the shell command that continues this run (printed when it is interrupted) */
  resumeCommand?: string;
  /** validation/test splits losing more than this fraction of their clips stop the run (default 0.1) */
  maxSkippedFraction?: number;
}

/** Thrown by train() after Ctrl-C: a resumable checkpoint has been written and the way to resume printed. */
export class TrainingInterrupted extends Error {
  constructor(readonly checkpoint: string) {
    super(`training interrupted; checkpoint ${checkpoint}`);
  }
}

/** Exit status after an interruption by SIGINT (128 + 2, as shells report it). */
export const INTERRUPTED_EXIT_CODE = 130;

export interface TrainResult {
  test: AnyMetrics | null;
  valid: AnyMetrics | null;
  report: string;
  modelDir: string;
}

export async function runTraining(run: TrainRun): Promise<number> {
  try {
    await train(run);
    return 0;
  } catch (e) {
    if (e instanceof TrainingInterrupted) return INTERRUPTED_EXIT_CODE;
    throw e;
  }
}

/**
 * Runs the trainer with Ctrl-C handled: the first SIGINT asks it to stop at the next micro-batch boundary (it writes
 * the resumable checkpoint there), a second one exits at once.
 */
async function runInterruptible(trainer: Trainer, say: (m: string) => void): Promise<'done' | 'interrupted'> {
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) {
      say('\ninterrupted again: exiting without a checkpoint');
      process.exit(INTERRUPTED_EXIT_CODE);
    }
    say('\ninterrupted: writing a resumable checkpoint at the next micro-batch (Ctrl-C again to quit at once)');
    trainer.requestStop();
  };
  process.on('SIGINT', onSigint);
  try {
    return await trainer.run();
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

export async function train(run: TrainRun): Promise<TrainResult> {
  const say = (m: string) => console.error(m);
  const out = run.out;
  ensureDir(out);
  // debris of a run killed while writing (temporary files, half-written model folders) goes before anything else
  for (const m of await removeStaleTemporaries(out)) say(m);
  const regression = Boolean(run.targetColumns?.length);
  if (regression && run.split === 'stratified') throw new Error('a regression run (target columns) has no classes to stratify by: use a random or speaker split');
  const csvOpts = regression ? { csv: { targetColumns: run.targetColumns } } : {};
  const ds = loadDataset({ source: run.data, dataRoot: run.dataRoot, ...csvOpts });
  if (regression && ds.kind !== 'csv') throw new Error(`${run.data}: target columns need a CSV/TSV manifest (this is a ${ds.kind} dataset)`);
  // regression: the target names are the model's labels (id2label), and every row is kept (no class to select)
  const labelSet = regression ? new LabelSet(run.targetColumns!) : run.labels ? new LabelSet(run.labels) : defaultLabels(ds.kind, ds.items);
  const { items, dropped } = regression ? { items: ds.items, dropped: {} } : selectLabels(ds.items, labelSet);
  if (Object.keys(dropped).length) say(`labels not in the set, dropped: ${JSON.stringify(dropped)}`);
  const missing = missingFiles(items);
  if (missing.length) say(`${missing.length} audio file(s) listed but missing (skipped), e.g. ${missing.slice(0, 3).map((m) => m.path).join(', ')}`);
  const present = items.filter((it) => !missing.includes(it));
  const listedMissing: SkippedRecord = { split: 'listed', total: items.length, clips: missing.map((it) => ({ file: it.path, reason: 'file not found' })) };
  say(regression ? `data: ${present.length} clips, regression targets [${labelSet.labels.join(', ')}]` : `data: ${present.length} clips, labels [${labelSet.labels.join(', ')}]: ${JSON.stringify(labelCounts(present, labelSet))}`);

  // splits: written once and reused, so a rerun (or --resume) sees the same sets
  const { splits, created } = loadOrMakeSplits(path.join(out, 'splits.json'), present, {
    testFraction: run.testFraction,
    validFraction: run.evalData ? 0 : run.valFraction,
    seed: run.cfg.seed,
    method: run.split,
  });
  say(`${created ? 'wrote' : 'reusing'} ${path.join(out, 'splits.json')}: ${JSON.stringify(Object.fromEntries(Object.entries(describeSplits(present, splits)).map(([k, d]) => [k, d.n])))}`);
  const parts = applySplits(present, splits);
  let validItems = parts.valid;
  let validLabelSource = present;
  if (run.evalData) {
    const ev = loadDataset({ source: run.evalData, ...csvOpts });
    validItems = regression ? ev.items : selectLabels(ev.items, labelSet).items;
    validLabelSource = validItems;
  }
  void validLabelSource;

  const rt = await createNodeRuntime();
  const { model, config, preprocessor, notes } = await loadModel(rt, run.modelDir, { labels: labelSet.labels, seed: run.initSeed ?? run.cfg.seed, forTraining: true, regression });
  for (const n of notes) say(n);
  const minSamples = preprocessor.minSamples;
  const store = new ClipStore({ sampleRate: preprocessor.samplingRate, minSamples });
  const clipLabels = regression ? { targets: labelSet.size } : labelSet;
  const train = await buildClipSet(parts.train, clipLabels, store, minSamples, say);
  const validBuilt = validItems.length ? await buildClipSet(validItems, clipLabels, store, minSamples, say) : null;
  const testBuilt = parts.test.length ? await buildClipSet(parts.test, clipLabels, store, minSamples, say) : null;
  // a split with no usable clip left (only with --max-skipped-fraction 1) is treated as absent, as recorded below
  const valid = validBuilt && validBuilt.set.ids.length ? validBuilt : null;
  const test = testBuilt && testBuilt.set.ids.length ? testBuilt : null;
  const skippedRecords: SkippedRecord[] = [
    listedMissing,
    { split: 'train', total: parts.train.length, clips: train.skipped },
    ...(validBuilt ? [{ split: 'validation', total: validItems.length, clips: validBuilt.skipped }] : []),
    ...(testBuilt ? [{ split: 'test', total: parts.test.length, clips: testBuilt.skipped }] : []),
  ];
  const maxSkipped = run.maxSkippedFraction ?? DEFAULT_MAX_SKIPPED_FRACTION;
  for (const r of skippedRecords) if (r.split === 'validation' || r.split === 'test') checkSkipped(r, maxSkipped);
  if (train.set.ids.length === 0) throw new Error(`no training clips left (${train.skipped.length} of ${parts.train.length} skipped)`);

  const logPath = path.join(out, 'log.jsonl');
  const ckPath = path.join(out, 'checkpoint.safetensors');
  const bestDir = path.join(out, 'model');
  const resuming = run.resume && fs.existsSync(ckPath);
  if (run.resume && !resuming) say(`--resume: no checkpoint at ${ckPath}; starting fresh`);
  if (!resuming && fs.existsSync(logPath)) fs.rmSync(logPath);
  const runLog = new JsonlLog(logPath);
  const log = (line: Record<string, unknown>) => runLog.append(line);
  const io: TrainerIO = {
    log,
    progress: run.quiet ? undefined : progressPrinter(),
    saveCheckpoint: (ck) => writeCheckpointFile(ckPath, ck),
    saveBest: async (step, m) => {
      if (isRegressionMetrics(m)) say(`\nstep ${step}: new best validation CCC = ${m.ccc.toFixed(4)} (MSE ${m.mse.toFixed(4)}, MAE ${m.mae.toFixed(4)}); saving ${bestDir}`);
      else say(`\nstep ${step}: new best validation ${run.cfg.metric} = ${(run.cfg.metric === 'ua' ? m.ua : m.wa).toFixed(4)} (WA ${m.wa.toFixed(4)}, UA ${m.ua.toFixed(4)}); saving ${bestDir}`);
      await saveModel(model, config, preprocessor, bestDir);
    },
  };
  const trainer = new Trainer(model, { train: train.set, valid: valid?.set ?? null, preprocessor }, labelSet.labels, run.cfg, io);
  if (resuming) {
    trainer.restore(await withFileName(ckPath, () => loadCheckpointFile(ckPath)));
    // lines written after the checkpoint are written again by the resumed run
    const dropped = await runLog.truncateToStep(trainer.position.step);
    if (dropped) say(`log.jsonl: dropped ${dropped} line(s) written after the checkpoint`);
    say(`resumed from ${ckPath} at optimizer step ${trainer.position.step} (epoch ${trainer.position.epoch}, micro-batch ${trainer.position.microBatch})`);
  } else {
    log({ event: 'start', config: run.cfg, labels: labelSet.labels, model: run.modelDir, data: run.data, train: train.set.ids.length, valid: valid?.set.ids.length ?? 0, test: test?.set.ids.length ?? 0, adapter: rt.adapter });
    // 'part', not 'split': a line with 'split' reads as an evaluation line (report/log.ts)
    for (const r of skippedRecords) if (r.clips.length) log({ event: 'skipped', part: r.split, total: r.total, count: r.clips.length, clips: r.clips });
  }
  await writeFileAtomic(path.join(out, 'run.json'), `${JSON.stringify({ ...run, cfg: run.cfg, adapter: rt.adapter, totalSteps: trainer.totalSteps }, null, 2)}\n`);
  say(`training: ${trainer.params.length} parameter tensors, ${trainer.totalSteps} optimizer steps (${trainer.batchesPerEpoch} micro-batches per epoch) on ${rt.adapter.description || rt.adapter.vendor}`);
  const t0 = performance.now();
  const outcome = await runInterruptible(trainer, say);
  if (outcome === 'interrupted') {
    model.dispose();
    say(`checkpoint written: ${ckPath} (optimizer step ${trainer.position.step} of ${trainer.totalSteps})`);
    if (run.resumeCommand) say(`resume with:\n  ${run.resumeCommand}`);
    throw new TrainingInterrupted(ckPath);
  }
  const seconds = (performance.now() - t0) / 1000;
  say(`training done in ${formatDuration(seconds)}`);
  if (!valid) await saveModel(model, config, preprocessor, bestDir); // no validation set: the last model is the result

  // reload the best model (selected on validation, never on test) and evaluate it
  model.dispose();
  const best = await loadModel(rt, bestDir);
  const evalTrainer = new Trainer(best.model, { train: train.set, valid: null, preprocessor: best.preprocessor }, labelSet.labels, run.cfg, { log: () => {}, saveCheckpoint: async () => {}, saveBest: async () => {} });
  const results: { name: string; metrics: AnyMetrics }[] = [];
  let validMetrics: AnyMetrics | null = null;
  if (valid) {
    validMetrics = regression ? (await evalTrainer.evaluateRegression(valid.set)).metrics : (await evalTrainer.evaluate(valid.set)).metrics;
    results.push({ name: 'validation (model selection)', metrics: validMetrics });
  }
  let testMetrics: AnyMetrics | null = null;
  let predictions: PredictionRecord[] = [];
  if (test && regression) {
    const r = await evalTrainer.evaluateRegression(test.set);
    testMetrics = r.metrics;
    results.push({ name: `test (${run.split === 'speaker' ? 'held-out speakers' : 'random held-out clips'})`, metrics: r.metrics });
    log({ type: 'eval', split: 'test', step: trainer.position.step, loss: r.loss, ...evalLogFields(r.metrics) });
    say(`\ntest: ${formatRegressionMetrics(r.metrics)}`);
  } else if (test) {
    const r = await evalTrainer.evaluate(test.set);
    testMetrics = r.metrics;
    results.push({ name: `test (${run.split === 'speaker' ? 'held-out speakers' : 'stratified held-out clips'})`, metrics: r.metrics });
    const L = labelSet.size;
    predictions = await Promise.all(test.items.map(async (it, i) => ({ id: it.id, label: test.set.labels[i], probs: r.probs.subarray(i * L, (i + 1) * L), audio: { samples: await test.set.clip(i), sampleRate: 16000 }, speaker: it.speaker, transcript: it.transcript })));
    log({ type: 'eval', split: 'test', step: trainer.position.step, wa: r.metrics.wa, ua: r.metrics.ua, loss: r.loss });
    say(`\ntest: ${formatMetrics(r.metrics)}`);
  }
  best.model.dispose();
  const skippedJson = Object.fromEntries(skippedRecords.map((r) => [r.split, { total: r.total, count: r.clips.length, clips: r.clips }]));
  await writeFileAtomic(path.join(out, 'metrics.json'), `${JSON.stringify({ valid: validMetrics, test: testMetrics, seconds, steps: trainer.totalSteps, skipped: skippedJson }, null, 2)}\n`);
  // Hugging Face Trainer's run record, for tools that read HF runs
  const state = trainerState(fs.readFileSync(logPath, 'utf8'), { maxSteps: trainer.totalSteps, numTrainEpochs: run.cfg.epochs, metric: run.cfg.metric, bestModelCheckpoint: valid ? bestDir : null, trainBatchSize: run.cfg.batchSize, evalSteps: run.cfg.evalSteps });
  await writeFileAtomic(path.join(out, 'trainer_state.json'), `${JSON.stringify(state, null, 2)}\n`);
  const report = path.join(out, 'report.html');
  await writeFileAtomic(report, buildReport({
    title: run.title ?? 'Speech emotion recognition: fine-tuning report',
    labels: labelSet.labels,
    log: fs.readFileSync(logPath, 'utf8'),
    evaluations: results,
    predictions,
    skipped: skippedRecords,
    datasets: datasetStats({ train, valid, test }, preprocessor.samplingRate),
    keptStep: valid ? trainer.best?.step ?? null : null,
    info: {
      command: `ser ${process.argv.slice(2).join(' ')}`,
      model: run.modelDir,
      data: run.data,
      split: run.split,
      adapter: `${rt.adapter.vendor} ${rt.adapter.description}`,
      'training time': formatDuration(seconds),
      'throughput (training clips per second)': ((trainer.totalSteps * run.cfg.batchSize * run.cfg.gradAccum) / Math.max(seconds, 1e-9)).toFixed(2),
      'peak GPU memory (buffer pool)': `${(rt.pool.peakBytes / 2 ** 30).toFixed(2)} GiB`,
      ...readableConfig(run.cfg),
    },
    notes: regression ? ['Regression: MSE loss on float targets; CCC = Lin\'s concordance correlation coefficient (the checkpoint is picked by mean CCC over the targets on a validation split only).'] : ['WA = weighted accuracy (plain accuracy); UA = unweighted average recall (macro recall). The original notebook reported 0.8401 as "accuracy", which is UA on a test set that was also used to pick its checkpoint; here the checkpoint is picked on a validation split only.'],
  }));
  say(`report: ${report}\nmodel: ${bestDir}`);
  return { test: testMetrics, valid: validMetrics, report, modelDir: bestDir };
}

/** Per split for the report: clips per class, seconds of audio, speakers. */
function datasetStats(sets: Record<string, { set: ClipSet; items: DataItem[] } | null>, sampleRate: number): Record<string, { n: number; labels: Record<string, number>; seconds: number; speakers: string[] }> {
  const out: Record<string, { n: number; labels: Record<string, number>; seconds: number; speakers: string[] }> = {};
  for (const [name, s] of Object.entries(sets)) {
    if (!s) continue;
    const labels: Record<string, number> = {};
    for (const it of s.items) labels[it.label] = (labels[it.label] ?? 0) + 1;
    const samples = s.set.lengths.reduce((a, b) => a + b, 0);
    out[name] = { n: s.items.length, labels, seconds: samples / sampleRate, speakers: [...new Set(s.items.map((it) => it.speaker ?? '').filter(Boolean))] };
  }
  return out;
}

/** Trainer settings under the names people know them by (HF TrainingArguments' where there is one). */
function readableConfig(cfg: TrainConfig): Record<string, unknown> {
  const names: Record<string, string> = {
    epochs: 'num_train_epochs', lr: 'learning_rate', batchSize: 'per_device_train_batch_size', gradAccum: 'gradient_accumulation_steps',
    warmupSteps: 'warmup_steps', weightDecay: 'weight_decay', seed: 'seed', evalSteps: 'eval_steps', metric: 'metric_for_best_model',
    maxGradNorm: 'max_grad_norm', maxSamples: 'max crop (samples)', evalMaxSamples: 'max eval length (samples)', headOnly: 'head only',
    unfreezeTop: 'unfreeze top layers', trainFeatureEncoder: 'train feature encoder', checkpointing: 'gradient_checkpointing',
    augment: 'augmentation', evalBatchSize: 'per_device_eval_batch_size', fp16: 'fp16', lossScale: 'loss scale',
  };
  return Object.fromEntries(Object.entries(cfg).map(([k, v]) => [names[k] ?? k, v]));
}

// ---------------------------------------------------------------------------------------------------------------
// eval / predict

export function evalOptions(): Command {
  const cmd = serCommand('eval', 'WA, UA, per-class metrics and confusion matrix on labelled audio')
    .requiredOption('--model <dir>', 'model folder, training run folder (its model/) or Hub id org/name[@rev]')
    .requiredOption('--data <path>', 'modified_shemo.json-style file, CSV/TSV (path,label columns) or a folder of per-label folders')
    .option('--data-root <dir>', "folder the manifest's paths are relative to (default: the manifest's folder)")
    .option('--labels <a,b,c>', "must be the model's own label set when given (the model's labels are used)")
    .option('--splits <file>', 'a splits.json written by train: evaluate one part of it (--part)')
    .addOption(new Option('--part <name>', 'the part of --splits to evaluate').choices(['train', 'valid', 'test']).default('test'))
    .option('--target-columns <a,b,c>', "regression models: the CSV's numeric columns, in the model's output order (default: the model's label names)")
    .addOption(valueOption('--batch-size <n>', 'clips per evaluation batch (results do not depend on it)', integer(1), 4))
    .option('--json', 'one JSON object: wa, ua, per_class, confusion, labels, n, dropped, skipped')
    .addHelpText('after', `
Evaluates a model on labelled audio: WA (accuracy), UA (macro recall), per-class precision/recall/F1/support and the
confusion matrix. Rows whose label the model lacks are dropped and counted; unreadable clips are skipped and counted.
Regression models (problem_type "regression"): a CSV with one numeric column per output; prints per-target MSE, MAE,
CCC (Pearson too).`);
  aliasOption(cmd, '--per-device-eval-batch-size', '--batch-size');
  return cmd;
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { options } = parseCommand(evalOptions(), argv);
  const v = { model: options.string('model')!, data: options.string('data')!, 'data-root': options.string('dataRoot'), labels: options.string('labels'), splits: options.string('splits'), part: options.string('part')!, json: options.flag('json'), 'target-columns': options.string('targetColumns') };
  const batchSize = options.number('batchSize')!;
  await recoverModelDir(v.model); // a save killed between its two renames left the previous folder aside
  await recoverModelDir(path.join(v.model, 'model'));
  const dir = modelFolder(v.model);
  const configPath = path.join(dir, 'config.json');
  const probe = parseModelConfig(await readTextFile(configPath), configPath);
  if (probe.problem_type === 'regression') return evalRegression(v, dir, probe.labels, batchSize);
  if (v['target-columns']) throw new Error(`--target-columns: ${configPath} is a classification model (problem_type is not "regression")`);
  // the model's labels in its own order (ids are output positions); matched to the data case-insensitively
  const modelLabels = probe.labels;
  const byName = new Map(modelLabels.map((l, i) => [normalizeLabel(l), i]));
  if (byName.size !== modelLabels.length) throw new Error(`${configPath}: id2label has labels that differ only in case or spaces: [${modelLabels.join(', ')}]`);
  if (v.labels) {
    const given = [...new Set(v.labels.split(',').map(normalizeLabel).filter(Boolean))];
    const missing = given.filter((l) => !byName.has(l));
    const extra = [...byName.keys()].filter((l) => !given.includes(l));
    if (missing.length || extra.length) {
      throw new Error(`--labels [${given.join(', ')}] does not match the model's head [${modelLabels.join(', ')}] (${configPath} id2label)${missing.length ? `; not in the model: ${missing.join(', ')}` : ''}${extra.length ? `; in the model but not in --labels: ${extra.join(', ')}` : ''}. eval scores the head as trained: drop --labels, or evaluate a model trained on these labels`);
    }
  }
  const ds = loadDataset({ source: v.data, dataRoot: v['data-root'] });
  let items: DataItem[] = [];
  const dropped: Record<string, number> = {};
  for (const it of ds.items) {
    if (byName.has(normalizeLabel(it.label))) items.push({ ...it, label: normalizeLabel(it.label) });
    else dropped[it.label] = (dropped[it.label] ?? 0) + 1;
  }
  const droppedCount = Object.values(dropped).reduce((a, b) => a + b, 0);
  if (v.splits) {
    // eval reads a split file (written by train); it never makes one up
    if (!fs.existsSync(v.splits)) throw new Error(`--splits ${v.splits}: no such file (give the splits.json a training run wrote)`);
    const { splits } = withFileName(v.splits, () => loadOrMakeSplits(v.splits!, items, {}));
    const p = applySplits(items, splits) as Record<string, DataItem[]>;
    if (!p[v.part!]) throw new Error(`--part must be train, valid or test (got '${v.part}')`);
    items = p[v.part!];
  }
  const log = (m: string) => { if (!v.json) console.error(m); };
  if (droppedCount) console.error(`${droppedCount} row(s) of ${v.data} dropped: their label is not one of the model's [${modelLabels.join(', ')}]: ${JSON.stringify(dropped)}`);
  const missingAudio = missingFiles(items);
  if (missingAudio.length) console.error(`${missingAudio.length} audio file(s) listed but missing (skipped), e.g. ${missingAudio.slice(0, 3).map((m) => m.path).join(', ')}`);
  items = items.filter((it) => !missingAudio.includes(it));
  if (items.length === 0 && missingAudio.length === 0) throw new Error(`${v.data}: no clips left to evaluate (${droppedCount} dropped for labels the model lacks)`);
  const rt = await createNodeRuntime();
  const { model, config, preprocessor } = await loadModel(rt, dir);
  try {
    const store = new ClipStore({ sampleRate: preprocessor.samplingRate });
    const set = await buildClipSet(items, { id: (l) => byName.get(normalizeLabel(l))! }, store, preprocessor.minSamples, log);
    // missing files and unreadable audio, each with its reason: part of the result, never silently dropped
    const skipped: SkippedClip[] = [...missingAudio.map((it) => ({ file: it.path, reason: 'listed but missing' })), ...set.skipped];
    if (set.set.ids.length === 0) {
      const why = skipped.slice(0, 3).map((c) => `${c.file}: ${c.reason}`).join('; ');
      throw new Error(`eval: none of the ${items.length + missingAudio.length} clip(s) could be used${why ? ` (${why}${skipped.length > 3 ? '; ...' : ''})` : ''}; nothing was evaluated`);
    }
    const trainer = new Trainer(model, { train: set.set, valid: null, preprocessor }, config.labels, { ...DEFAULT_TRAIN_CONFIG, batchSize }, { log: () => {}, saveCheckpoint: async () => {}, saveBest: async () => {} });
    const r = await trainer.evaluate(set.set);
    const m = r.metrics;
    if (v.json) {
      console.log(JSON.stringify({ wa: m.wa, ua: m.ua, per_class: m.per_class, confusion: m.confusion, labels: m.labels, n: set.set.ids.length, clips: items.length + missingAudio.length, evaluated: set.set.ids.length, dropped: { count: droppedCount, labels: dropped }, skipped }));
    } else {
      console.log(formatMetrics(m));
      console.log(`clips evaluated: ${set.set.ids.length}; dropped (label not in the model): ${droppedCount}${droppedCount ? ` ${JSON.stringify(dropped)}` : ''}; skipped (missing or unreadable audio): ${skipped.length}`);
      if (skipped.length) console.log(skipped.map((c) => `  ${c.file}: ${c.reason}`).join('\n'));
    }
  } finally {
    model.dispose();
  }
  return 0;
}

/**
 * eval of a regression model: a CSV with one numeric column per model output (the model's label names, or
 * --target-columns in the model's order) -> per-target MSE, MAE, CCC.
 */
async function evalRegression(v: { model?: string; data?: string; 'data-root'?: string; labels?: string; splits?: string; part?: string; json?: boolean; 'target-columns'?: string }, dir: string, targets: readonly string[], batchSize: number): Promise<number> {
  const configPath = path.join(dir, 'config.json');
  if (v.labels) throw new Error(`--labels: ${configPath} is a regression model; its outputs are [${targets.join(', ')}] (name the CSV columns with --target-columns)`);
  const columns = v['target-columns'] ? v['target-columns'].split(',').map((s) => s.trim()).filter(Boolean) : [...targets];
  if (columns.length !== targets.length) throw new Error(`--target-columns: ${columns.length} column(s) [${columns.join(', ')}] for the model's ${targets.length} outputs [${targets.join(', ')}] (${configPath} id2label)`);
  const ds = loadDataset({ source: v.data!, dataRoot: v['data-root'], csv: { targetColumns: columns } });
  if (ds.kind !== 'csv') throw new Error(`${v.data}: evaluating a regression model needs a CSV/TSV manifest with the target columns [${columns.join(', ')}]`);
  let items = ds.items;
  if (v.splits) {
    if (!fs.existsSync(v.splits)) throw new Error(`--splits ${v.splits}: no such file (give the splits.json a training run wrote)`);
    const { splits } = withFileName(v.splits, () => loadOrMakeSplits(v.splits!, items, {}));
    const p = applySplits(items, splits) as Record<string, DataItem[]>;
    if (!p[v.part!]) throw new Error(`--part must be train, valid or test (got '${v.part}')`);
    items = p[v.part!];
  }
  const log = (m: string) => { if (!v.json) console.error(m); };
  const missingAudio = missingFiles(items);
  if (missingAudio.length) console.error(`${missingAudio.length} audio file(s) listed but missing (skipped), e.g. ${missingAudio.slice(0, 3).map((m) => m.path).join(', ')}`);
  items = items.filter((it) => !missingAudio.includes(it));
  if (items.length === 0) throw new Error(`${v.data}: no clips left to evaluate (${missingAudio.length} missing)`);
  const rt = await createNodeRuntime();
  const { model, config, preprocessor } = await loadModel(rt, dir);
  try {
    const store = new ClipStore({ sampleRate: preprocessor.samplingRate });
    const set = await buildClipSet(items, { targets: targets.length }, store, preprocessor.minSamples, log);
    if (set.set.ids.length === 0) throw new Error(`${v.data}: no readable clips (${set.skipped.length} skipped)`);
    const trainer = new Trainer(model, { train: set.set, valid: null, preprocessor }, config.labels, { ...DEFAULT_TRAIN_CONFIG, batchSize, metric: 'ccc' }, { log: () => {}, saveCheckpoint: async () => {}, saveBest: async () => {} });
    const r = await trainer.evaluateRegression(set.set);
    const m = r.metrics;
    const skipped = set.skipped.length + missingAudio.length;
    if (v.json) {
      console.log(JSON.stringify({ mse: m.mse, mae: m.mae, ccc: m.ccc, per_target: m.per_target, targets: m.targets, columns, loss: r.loss, n: set.set.ids.length, skipped: { count: skipped, missing: missingAudio.length, unreadable: set.skipped } }));
    } else {
      console.log(formatRegressionMetrics(m));
      if (columns.some((c, i) => c !== targets[i])) console.log(`columns [${columns.join(', ')}] scored as outputs [${targets.join(', ')}]`);
      console.log(`clips evaluated: ${set.set.ids.length}; skipped (missing or unreadable audio): ${skipped}`);
    }
  } finally {
    model.dispose();
  }
  return 0;
}

export function predictOptions(): Command {
  return serCommand('predict', 'label and class probabilities for audio files')
    .argument('<model>', 'model folder (config.json + weights), training run folder (its model/) or Hub id org/name[@rev]')
    .argument('<audio...>', "audio files (WAV, FLAC, MP3, OGG/Vorbis; any rate, mixed to mono, resampled to the model's rate)")
    .addOption(valueOption('--top-k <k>', 'labels shown per line (default: all)', integer(1)))
    .addOption(valueOption('--window <s>', 'classify windows of S seconds (a timeline: emotion over time); the last window ends at the end', number({ above: 0 })))
    .addOption(valueOption('--hop <s>', 'seconds between window starts (default: the window)', number({ above: 0 })))
    .addOption(valueOption('--batch-size <n>', 'clips per batch', integer(1)))
    .option('--fp16', 'mixed precision (linear layers in f16)')
    .option('--json', 'one JSON array: {file, label, probs} per file, or {file, timeline: [{start, end, label, probs}]}')
    .addOption(valueOption('--html <file>', 'with --window: also write the timelines as an HTML page (a plot per file)'))
    .addHelpText('after', '\nRegression models (problem_type "regression") print their outputs by label.');
}

export async function predictCommand(argv: string[]): Promise<number> {
  const { options, args } = parseCommand(predictOptions(), argv);
  const [dir, ...files] = args;
  const v = { json: options.flag('json'), fp16: options.flag('fp16') };
  const window = options.number('window');
  const hop = options.number('hop');
  if (hop !== undefined && window === undefined) throw new Error('--hop needs --window');
  const htmlFile = options.string('html');
  if (htmlFile !== undefined && window === undefined) throw new Error('--html needs --window (it plots the timeline)');
  const plotted: { file: string; points: TimelinePoint[]; probabilities: boolean }[] = [];
  const batchSize = options.number('batchSize');
  const clf: AudioClassifier = await audioClassifier(dir, { batchSize, dtype: v.fp16 ? 'f16' : 'f32' });
  const labels = clf.labels;
  const topK = options.number('topK') ?? labels.length;
  // a prediction as (top label, values by label): probabilities (classification) or outputs (regression)
  const flat = (p: Prediction): { label: string | null; values: Record<string, number> } =>
    Array.isArray(p) ? { label: p[0]?.label ?? null, values: Object.fromEntries(p.map((s) => [s.label, s.score])) } : { label: null, values: p };
  const valueText = (values: Record<string, number>) => Object.entries(values).map(([l, x]) => `${l}=${x.toFixed(3)}`).join(' ');
  const results: Record<string, unknown>[] = [];
  let failures = 0;
  try {
    for (const file of files) {
      try {
        if (window !== undefined) {
          const timeline: TimelineEntry[] = await clf(file, { topK, window, hop });
          const rows = timeline.map((e) => {
            const f = flat(e.scores);
            return { start: e.start, end: e.end, ...(f.label !== null ? { label: f.label, probs: f.values } : { values: f.values }) };
          });
          results.push({ file, timeline: rows });
          plotted.push({ file, points: timeline.map((e) => ({ start: e.start, end: e.end, values: flat(e.scores).values })), probabilities: Array.isArray(timeline[0]?.scores) });
          if (!v.json) {
            for (const e of timeline) {
              const f = flat(e.scores);
              console.log(`${file}\t${e.start.toFixed(2)}-${e.end.toFixed(2)} s\t${f.label !== null ? `${f.label}\t` : ''}${valueText(f.values)}`);
            }
          }
        } else {
          const f = flat(await clf(file, { topK }));
          results.push(f.label !== null ? { file, label: f.label, probs: f.values } : { file, values: f.values });
          if (!v.json) console.log(`${file}\t${f.label !== null ? `${f.label}\t` : ''}${valueText(f.values)}`);
        }
      } catch (e) {
        failures++;
        console.error(`${file}: ${(e as Error).message}`);
      }
    }
  } finally {
    clf.dispose();
  }
  if (v.json) console.log(JSON.stringify(results));
  if (htmlFile !== undefined) {
    await writeFileAtomic(htmlFile, timelineHtml(plotted, `Emotion over time (${window} s windows, ${dir})`));
    if (!v.json) console.error(`timeline plot: ${htmlFile}`);
  }
  return failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// demo

export { DEMO_CONFIG } from './demo-configs.js';

export function demoOptions(): Command {
  const cmd = serCommand('demo', 'synthesize a Persian emotional-speech corpus and train a small model on it')
    .option('--out <dir>', 'output folder', 'demo-out')
    .option('--family <name>', 'model family of the small model (wav2vec2, hubert, data2vec, ...)', 'wav2vec2')
    .addOption(valueOption('--epochs <n>', 'training epochs', integer(1), 24))
    .addOption(valueOption('--lr <x>', 'peak learning rate', number({ above: 0 }), 1e-3))
    .addOption(valueOption('--speakers <n>', 'synthetic speakers', integer(1, 1000), 20))
    .addOption(valueOption('--per-emotion <n>', 'sentences per speaker and emotion', integer(1, 1000), 6))
    .addOption(valueOption('--seed <n>', 'seed of the corpus, split and training', integer(0), 1))
    .addHelpText('after', `
Synthesizes a small Persian emotional-speech corpus (espeak-ng -v fa, emotion-dependent prosody, several speakers,
noise), trains a small model of the chosen family from scratch on it with the same code path as real fine-tuning,
evaluates on held-out speakers and writes an HTML report.`);
  aliasOption(cmd, '--learning-rate', '--lr');
  aliasOption(cmd, '--num-train-epochs', '--epochs');
  aliasOption(cmd, '--output-dir', '--out');
  return cmd;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { options } = parseCommand(demoOptions(), argv);
  const v = { out: options.string('out')!, family: options.string('family')!, seed: options.number('seed')!, speakers: options.number('speakers')!, 'per-emotion': options.number('perEmotion')!, epochs: options.number('epochs')!, lr: options.number('lr')! };
  const familyConfig = demoConfigFor(v.family!);
  const out = path.resolve(v.out!);
  const t0 = performance.now();
  console.error(`[demo] synthesizing the corpus in ${path.join(out, 'corpus')} (espeak-ng -v fa + sox)`);
  const corpus = await synthesizeDemoCorpus(path.join(out, 'corpus'), {
    seed: Number(v.seed),
    speakers: Number(v.speakers),
    sentencesPerEmotion: Number(v['per-emotion']),
    onProgress: (d, n) => { if (d % 50 === 0 || d === n) console.error(`[demo]   ${d}/${n} clips`); },
  });
  console.error(`[demo] corpus: ${corpus.items.length} clips, ${corpus.audioSeconds.toFixed(0)} s of audio${corpus.reused ? ' (reused)' : ` in ${corpus.seconds.toFixed(0)} s`}`);
  const modelDir = path.join(out, 'init');
  fs.mkdirSync(modelDir, { recursive: true });
  fs.writeFileSync(path.join(modelDir, 'config.json'), `${JSON.stringify({ ...familyConfig.config, id2label: Object.fromEntries(SHEMO_LABELS.map((l, i) => [String(i), l])), label2id: Object.fromEntries(SHEMO_LABELS.map((l, i) => [l, i])) }, null, 2)}\n`);
  if (familyConfig.preprocessor) fs.writeFileSync(path.join(modelDir, 'preprocessor_config.json'), `${JSON.stringify(familyConfig.preprocessor, null, 2)}\n`);
  let result: TrainResult;
  try {
    result = await train({
      modelDir,
      data: corpus.manifest,
      out: path.join(out, 'run'),
      split: 'speaker',
      testFraction: 0.2,
      valFraction: 0.15,
      cfg: { ...DEFAULT_TRAIN_CONFIG, epochs: Number(v.epochs), lr: Number(v.lr), batchSize: 8, gradAccum: 1, warmupSteps: 20, weightDecay: 0.01, seed: Number(v.seed), trainFeatureEncoder: true, evalBatchSize: 16 },
      resume: false,
      title: `Demo: a small ${v.family} model trained from scratch on synthetic Persian emotional speech`,
    });
  } catch (e) {
    if (e instanceof TrainingInterrupted) return INTERRUPTED_EXIT_CODE; // a demo starts over (its corpus is reused)
    throw e;
  }
  const total = (performance.now() - t0) / 1000;
  const testMetrics = result.test && !isRegressionMetrics(result.test) ? result.test : null;
  const ua = testMetrics?.ua ?? NaN;
  console.log(`\n[demo] done in ${formatDuration(total)}. Test (held-out speakers): UA ${ua.toFixed(3)}, WA ${(testMetrics?.wa ?? NaN).toFixed(3)} (chance: 0.200)`);
  console.log(`[demo] report: ${result.report}\n[demo] model:  ${result.modelDir}  (try: npx ser predict ${path.relative(process.cwd(), result.modelDir)} <file.wav>)`);
  return 0;
}


