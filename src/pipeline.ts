// One call from a model to predictions, in the shape of transformers.js's audio-classification pipeline:
//   const clf = await audioClassifier(modelFiles, { runtime });   // an opened model (openModelFiles, openModelDir)
//   await clf({ samples, samplingRate }, { topK: 3 })               // -> [{ label, score }, ...] sorted, descending
//   await clf([a, b, c])                                            // -> one result per input (batched)
//   await clf(long, { window: 4, hop: 1 })                          // -> [{ start, end, scores }, ...] (seconds)
// Regression models (config.problem_type "regression") give { label: value } objects instead of sorted scores.
//
// Core only (no Node imports): inputs are samples with their rate, a Blob / File (decoded and resampled by src/audio,
// the same path as the CLI), or an http(s)/blob/data URL (fetched). The Node entry's audioClassifier (src/node/
// pipeline.ts) adds folder paths, Hub ids and audio file paths.
//
// Results never depend on which inputs share a batch: pooling is over each clip's real frames (for the notebook head
// that equals its plain mean on the clip alone), and a model whose frames change with padding (GroupNorm over time in
// the first conv) only batches clips of equal length.
import type { Runtime } from './runtime/runtime.js';
import { createRuntime } from './runtime/runtime.js';
import { Tensor } from './tensor.js';
import { autocast, noGrad, tidy } from './autograd.js';
import { softmax } from './ops/loss.js';
import type { ModelConfigBase } from './io/config.js';
import type { TensorSource } from './io/source.js';
import { openModelFiles } from './io/modelfiles.js';
import type { AudioPreprocessor } from './model/family.js';
import { SpeechClassifier, disposeOutput } from './model/classifier.js';
import { prepareAudio } from './audio/prepare.js';
import { resample } from './audio/resample.js';
import { validateSamples } from './audio/validate.js';
import { AudioError } from './audio/errors.js';
import { planBatches, splitUnequalLengths } from './data/batch.js';
import { paddingChangesFrames } from './train/trainer.js';

/** An opened model: what openModelFiles (browser) and openModelDir (Node) return. */
export interface ModelSource {
  config: ModelConfigBase;
  preprocessor: AudioPreprocessor;
  weights: TensorSource;
  /** names the weights in messages */
  weightsFile?: string;
}

/** Mono samples and their sampling rate (resampled to the model's rate when they differ). */
export interface SampledAudio {
  samples: Float32Array;
  samplingRate: number;
}

/** One audio input: samples with their rate, a Blob / File, or a URL (Node also takes a file path). */
export type AudioInput = SampledAudio | Blob | string | URL;

export interface AudioClassifierOptions {
  /** the WebGPU runtime; default: one on navigator.gpu (browsers), destroyed by dispose() */
  runtime?: Runtime;
  /** 'f16' runs the linear layers in f16 (f32 accumulation) as mixed-precision training does; needs shader-f16 */
  dtype?: 'f32' | 'f16';
  /** clips (or windows) per forward pass (default 8) */
  batchSize?: number;
  /** inputs the core cannot read (the Node entry: file paths): their bytes and a name for messages, or null */
  openAudio?: (input: string | URL) => Promise<{ bytes: Uint8Array; name: string } | null>;
}

export interface ClassifyOptions {
  /** classification: how many labels to return, best first (default 5, as transformers.js) */
  topK?: number;
  /** seconds per window: classify each window of a long clip and return a timeline */
  window?: number;
  /** seconds between window starts (default: the window, no overlap); the last window ends at the clip's end */
  hop?: number;
}

export interface WindowOptions extends ClassifyOptions {
  window: number;
}

export interface LabelScore {
  label: string;
  score: number;
}

/** Classification: labels with probabilities, best first. Regression: each output by label. */
export type Prediction = LabelScore[] | Record<string, number>;

export interface TimelineEntry {
  /** seconds from the clip's start */
  start: number;
  end: number;
  scores: Prediction;
}

export interface AudioClassifier {
  (audio: readonly AudioInput[], opts: WindowOptions): Promise<TimelineEntry[][]>;
  (audio: AudioInput, opts: WindowOptions): Promise<TimelineEntry[]>;
  (audio: readonly AudioInput[], opts?: ClassifyOptions): Promise<Prediction[]>;
  (audio: AudioInput, opts?: ClassifyOptions): Promise<Prediction>;
  readonly labels: readonly string[];
  readonly task: 'classification' | 'regression';
  /** the rate inputs are resampled to */
  readonly samplingRate: number;
  readonly model: SpeechClassifier;
  /** frees the model's GPU memory (and the runtime, when the classifier created it) */
  dispose(): void;
}

function isModelSource(x: unknown): x is ModelSource {
  return typeof x === 'object' && x !== null && 'config' in x && 'weights' in x && 'preprocessor' in x;
}

/**
 * Load a classifier from an opened model (or a model folder's files as [name, Blob] pairs). Refuses a checkpoint
 * without a trained head: its predictions would be random.
 */
export async function audioClassifier(model: ModelSource | Map<string, Blob> | Iterable<readonly [string, Blob]>, opts: AudioClassifierOptions = {}): Promise<AudioClassifier> {
  const source = isModelSource(model) ? model : await openModelFiles(model);
  const dtype = opts.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`audioClassifier: dtype must be 'f32' or 'f16' (got '${String(dtype)}')`);
  const batchSize = opts.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`audioClassifier: batchSize must be a positive integer (got ${batchSize})`);
  let rt = opts.runtime ?? null;
  const ownRuntime = !rt;
  if (!rt) {
    const gpu = typeof navigator !== 'undefined' && 'gpu' in navigator ? navigator.gpu : null;
    if (!gpu) throw new Error('audioClassifier: no WebGPU here (navigator.gpu is missing); pass { runtime } (in Node, import audioClassifier from the Node entry)');
    rt = await createRuntime(gpu);
  }
  const runtime = rt;
  try {
    if (dtype === 'f16' && !runtime.hasF16) throw new Error("audioClassifier: dtype 'f16' needs an adapter with shader-f16; this one has none (use 'f32')");
    const name = source.weightsFile ?? source.weights.files.join(', ');
    const { model: clf, report } = await SpeechClassifier.fromSource(runtime, source.config, source.weights, { checkpoint: name });
    const untrained = report.newlyInitialized.filter((n) => n !== 'masked_spec_embed' && !n.endsWith('.masked_spec_embed'));
    if (untrained.length) {
      clf.dispose();
      const shown = untrained.slice(0, 6).join(', ') + (untrained.length > 6 ? ', ...' : '');
      throw new Error(`${name}: ${untrained.length} parameter(s) are not in the checkpoint (${shown}); the model would predict at random. Fine-tune it first (ser train), or load a fine-tuned classifier`);
    }
    clf.eval();
    clf.poolExcludePadding = true;
    return makeClassifier(clf, source, runtime, ownRuntime, dtype, batchSize, opts.openAudio);
  } catch (e) {
    if (ownRuntime) runtime.destroy();
    throw e;
  }
}

function makeClassifier(clf: SpeechClassifier, source: ModelSource, rt: Runtime, ownRuntime: boolean, dtype: 'f32' | 'f16', batchSize: number, openAudio: AudioClassifierOptions['openAudio']): AudioClassifier {
  const config = source.config;
  const pp = source.preprocessor;
  const rate = pp.samplingRate;
  const labels = config.labels;
  const task = config.problem_type === 'regression' ? 'regression' : 'classification';
  let disposed = false;

  /** An input as mono samples at the model's rate, checked; errors name the input. */
  const toSamples = async (input: AudioInput, index: number): Promise<Float32Array> => {
    const check = { minSamples: pp.minSamples, sampleRate: rate };
    if (input instanceof Float32Array) throw new AudioError(`audio[${index}]`, 'a Float32Array needs its sampling rate: pass { samples, samplingRate }');
    if (typeof Blob !== 'undefined' && input instanceof Blob) {
      const fileName = typeof File !== 'undefined' && input instanceof File ? input.name : `audio[${index}] (Blob)`;
      return (await prepareAudio(new Uint8Array(await input.arrayBuffer()), fileName, { sampleRate: rate, minSamples: pp.minSamples })).samples;
    }
    if (typeof input === 'string' || input instanceof URL) {
      const opened = openAudio ? await openAudio(input) : null;
      if (opened) return (await prepareAudio(opened.bytes, opened.name, { sampleRate: rate, minSamples: pp.minSamples })).samples;
      const text = String(input);
      if (!/^(https?|blob|data):/i.test(text)) throw new AudioError(text, 'not a URL (file paths need the Node entry of ser-webgpu)');
      let res: Response;
      try {
        res = await fetch(text);
      } catch (e) {
        throw new AudioError(text, `cannot fetch (${(e as Error).message})`);
      }
      if (!res.ok) throw new AudioError(text, `HTTP ${res.status} ${res.statusText}`);
      return (await prepareAudio(new Uint8Array(await res.arrayBuffer()), text, { sampleRate: rate, minSamples: pp.minSamples })).samples;
    }
    if (typeof input === 'object' && input !== null && 'samples' in input && 'samplingRate' in input) {
      const { samples, samplingRate } = input;
      const what = `audio[${index}]`;
      if (!(samples instanceof Float32Array)) throw new AudioError(what, 'samples must be a Float32Array');
      if (!(Number.isFinite(samplingRate) && samplingRate > 0)) throw new AudioError(what, `samplingRate must be a positive number (got ${String(samplingRate)})`);
      validateSamples(samples, what);
      const x = samplingRate === rate ? samples : resample(samples, samplingRate, rate);
      validateSamples(x, what, check);
      return x;
    }
    throw new AudioError(`audio[${index}]`, 'expected { samples, samplingRate }, a Blob / File, a URL or (Node) a file path');
  };

  /** Model outputs [n, L] for clips of any lengths: probabilities (classification) or raw outputs (regression). */
  const run = async (clips: readonly Float32Array[]): Promise<Float32Array[]> => {
    const L = labels.length;
    const out: Float32Array[] = new Array(clips.length);
    const lengths = clips.map((c) => c.length);
    let plan = planBatches(lengths, { batchSize, shuffle: false, maxBatchSamples: batchSize * 10 * rate });
    if (paddingChangesFrames(config)) plan = splitUnequalLengths(plan, lengths);
    for (const idx of plan) {
      const x = pp.prepare(idx.map((i) => clips[i]));
      const resultT = noGrad(() => {
        const forward = () => tidy(() => {
          const input = Tensor.fromData(rt, x.values, x.shape, 'f32', 'input_values');
          const o = clf.forward({ inputValues: input, attentionMask: x.mask });
          const logits = o.logits!;
          const r = task === 'regression' ? logits : softmax(logits);
          if (r === logits) o.logits = null;
          disposeOutput(o);
          return r;
        });
        return dtype === 'f16' ? autocast(forward, 'f16') : forward();
      });
      const v = await resultT.readFloat();
      resultT.dispose();
      idx.forEach((i, r) => (out[i] = v.slice(r * L, (r + 1) * L)));
    }
    return out;
  };

  const present = (v: Float32Array, topK: number): Prediction => {
    if (task === 'regression') return Object.fromEntries(labels.map((l, k) => [l, v[k]]));
    return labels
      .map((label, k) => ({ label, score: v[k] }))
      .sort((a, b) => b.score - a.score)
      .slice(0, topK);
  };

  const call = async (audio: AudioInput | readonly AudioInput[], opts: ClassifyOptions = {}): Promise<Prediction | Prediction[] | TimelineEntry[] | TimelineEntry[][]> => {
    if (disposed) throw new Error('audioClassifier: used after dispose()');
    const topK = opts.topK ?? 5;
    if (!(Number.isInteger(topK) && topK >= 1)) throw new Error(`topK must be a positive integer (got ${String(topK)})`);
    const many = Array.isArray(audio);
    const inputs: readonly AudioInput[] = many ? audio : [audio as AudioInput];
    const clips: Float32Array[] = [];
    for (let i = 0; i < inputs.length; i++) clips.push(await toSamples(inputs[i], i));
    if (opts.window === undefined) {
      if (opts.hop !== undefined) throw new Error('hop needs window (both in seconds)');
      const outs = await run(clips);
      const results = outs.map((v) => present(v, topK));
      return many ? results : results[0];
    }
    const spans = clips.map((c) => windowSpans(c.length, rate, opts.window!, opts.hop ?? opts.window!, pp.minSamples));
    const pieces: Float32Array[] = [];
    spans.forEach((s, i) => s.forEach(([a, b]) => pieces.push(clips[i].subarray(a, b))));
    const outs = await run(pieces);
    let k = 0;
    const timelines = spans.map((s) => s.map(([a, b]) => ({ start: a / rate, end: b / rate, scores: present(outs[k++], topK) })));
    return many ? timelines : timelines[0];
  };

  const extras = {
    labels,
    task,
    samplingRate: rate,
    model: clf,
    dispose(): void {
      if (disposed) return;
      disposed = true;
      clf.dispose();
      if (ownRuntime) rt.destroy();
    },
  } as const;
  // one implementation behind the overloaded signature (the overloads only narrow the result by the arguments)
  return Object.assign(call, extras) as AudioClassifier;
}

/**
 * Windows [start, end) in samples over a clip of n samples: every `hop` seconds, `window` seconds long, the last one
 * aligned to the clip's end; a clip no longer than a window is one window.
 */
export function windowSpans(n: number, rate: number, window: number, hop: number, minSamples = 1): [number, number][] {
  if (!(Number.isFinite(window) && window > 0)) throw new Error(`window must be a positive number of seconds (got ${String(window)})`);
  if (!(Number.isFinite(hop) && hop > 0)) throw new Error(`hop must be a positive number of seconds (got ${String(hop)})`);
  const W = Math.round(window * rate);
  const H = Math.round(hop * rate);
  if (W < minSamples) throw new Error(`window ${window} s is ${W} samples at ${rate} Hz, shorter than the model's minimum of ${minSamples}`);
  if (H < 1) throw new Error(`hop ${hop} s is less than one sample at ${rate} Hz`);
  if (n <= W) return [[0, n]];
  const spans: [number, number][] = [];
  for (let s = 0; s + W < n; s += H) spans.push([s, s + W]);
  const last = spans[spans.length - 1];
  if (last[1] !== n) spans.push([n - W, n]);
  return spans;
}
