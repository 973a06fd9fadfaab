// `ser check-reference <dir>`: runs our model (any registered family) in f32 on a reference fixture (inputs, activations, logits, losses
// and gradients computed by the real Hugging Face code in float64; format of ../shared/fixtures/xlsr_tiny) and
// compares tensor by tensor. Fails (exit 1) when a forward tensor's relative L2 error exceeds 1e-4 or a gradient's
// exceeds 1e-3; a gradient whose reference is analytically zero (e.g. d loss / d attention.k_proj.bias, which softmax
// shift invariance makes exactly 0) is judged by its max abs error instead (<= 1e-6).
//
// Fixture directory: config.json, model.safetensors and/or pytorch_model.bin, reference.safetensors (F64 tensors plus
// input_values, attention_mask (optional), labels), manifest.json (tensor list; weights.keys; weights.frozen_parameters).
// Gradients are of loss_masked_mean (the masked-mean head's cross entropy; loss_plain_mean if the reference has
// grad.pooled_plain_mean instead), in train mode with dropout 0. Fixtures of HF's own heads
// (*ForSequenceClassification) name their outputs projected_states, pooled_output, logits, loss instead. A fixture
// without input_values (Whisper) has raw_waveform.<i>: our own feature extractor turns them into the model input,
// which is compared with the reference's input_features, and the model runs on what we computed.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { autocast, backward, keep, noGrad, record } from '../autograd.js';
import { scale } from '../ops/elementwise.js';
import { parseModelConfig, familyOf } from '../model/registry.js';
import type { TensorEntry, TensorSource } from '../io/source.js';
import { weightNorm } from '../ops/norm.js';
import { linear } from '../ops/matmul.js';
import { SpeechClassifier, disposeOutput, type HeadOutput } from '../model/classifier.js';
import { createNodeRuntime } from './dawn.js';
import { FileByteReader, type OpenedSource } from './modeldir.js';
import { readSafetensors } from '../io/safetensors.js';
import { readPytorch } from '../io/pytorch.js';
import { Option, type Command } from 'commander';
import { UsageExit, parseCommand, serCommand } from './cli-options.js';

export const FORWARD_TOLERANCE = 1e-4;
export const GRAD_TOLERANCE = 1e-3;
/** --fp16 (autocast: linear layers in f16): f16 keeps 11 significant bits, so errors of a few 1e-3 are expected */
export const FORWARD_TOLERANCE_F16 = 2e-2;
export const GRAD_TOLERANCE_F16 = 5e-2;
/** --fp16: an analytically zero gradient is a sum of f16-rounded terms that no longer cancel exactly (a few 1e-6 seen) */
export const ZERO_REFERENCE_ABS_TOLERANCE_F16 = 5e-5;
/** max abs error allowed where the reference is analytically zero */
export const ZERO_REFERENCE_ABS_TOLERANCE = 1e-6;
/** a reference whose largest magnitude is below this is treated as analytically zero */
const ZERO_REFERENCE_MAX = 1e-12;

export interface TensorComparison {
  name: string;
  shape: number[];
  rel_l2: number;
  max_abs: number;
  kind: 'forward' | 'grad';
  /** judged by max_abs (analytically zero reference) instead of rel_l2 */
  zero_reference: boolean;
  pass: boolean;
}

export interface ReferenceCheckResult {
  dir: string;
  weightsFile: string;
  head: string;
  tensors: TensorComparison[];
  worst_forward: number;
  worst_forward_name: string | null;
  worst_grad: number;
  worst_grad_name: string | null;
  /** reference tensors not compared (not model outputs we expose, e.g. attention probabilities) */
  skipped: string[];
  ok: boolean;
  /** 'f32', or 'f16' for a mixed-precision (autocast) run */
  precision: 'f32' | 'f16';
  limits: { forward: number; grad: number; zeroAbs: number };
}

export type WeightsChoice = 'safetensors' | 'bin' | 'auto';

interface ManifestTensor {
  name: string;
  dtype?: string;
  shape?: number[];
  description?: string;
}

interface Manifest {
  tensors?: ManifestTensor[];
  weights?: { keys?: { name: string; shape: number[] }[]; frozen_parameters?: string[] };
}

/** Float64 values of a reference tensor (F64 kept exact; other dtypes widened). */
async function readF64(e: TensorEntry): Promise<Float64Array> {
  if (e.dtype === 'F64') {
    const raw = await e.readRaw();
    const copy = raw.byteOffset % 8 === 0 ? raw : raw.slice();
    return new Float64Array(copy.buffer, copy.byteOffset, raw.byteLength / 8).slice();
  }
  if (e.dtype === 'I64') {
    const raw = await e.readRaw();
    const copy = raw.slice();
    return Float64Array.from(new BigInt64Array(copy.buffer, 0, raw.byteLength / 8), (v) => Number(v));
  }
  return Float64Array.from(await e.read());
}

export function compare(got: ArrayLike<number>, ref: ArrayLike<number>): { rel_l2: number; max_abs: number; ref_max: number } {
  if (got.length !== ref.length) return { rel_l2: Infinity, max_abs: Infinity, ref_max: 0 };
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    const a = Math.abs(d);
    if (!(a <= maxAbs)) maxAbs = Number.isNaN(a) ? Infinity : a;
    refMax = Math.max(refMax, Math.abs(ref[i]));
  }
  const rel = Number.isFinite(num) ? Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300) : Infinity;
  return { rel_l2: rel, max_abs: maxAbs, ref_max: refMax };
}

/** Opens a checkpoint by its file name's extension (.safetensors or a PyTorch .bin). */
async function openByExtension(filePath: string): Promise<OpenedSource> {
  const reader = await FileByteReader.open(filePath);
  try {
    const src = filePath.endsWith('.safetensors') ? await readSafetensors(reader, filePath) : await readPytorch(reader, filePath);
    return { ...src, close: () => reader.close() };
  } catch (e) {
    await reader.close();
    throw e;
  }
}

function pickWeights(dir: string, choice: WeightsChoice): string {
  const st = path.join(dir, 'model.safetensors');
  const bin = path.join(dir, 'pytorch_model.bin');
  if (choice === 'safetensors' || (choice === 'auto' && fs.existsSync(st))) {
    if (!fs.existsSync(st)) throw new Error(`${dir}: no model.safetensors`);
    return st;
  }
  if (!fs.existsSync(bin)) throw new Error(`${dir}: no ${choice === 'bin' ? 'pytorch_model.bin' : 'model.safetensors or pytorch_model.bin'}`);
  return bin;
}

/** Run the model on a fixture directory and compare every reference tensor it can produce. */
export async function runReferenceCheck(rt: Runtime, dir: string, choice: WeightsChoice = 'auto', opts: { fp16?: boolean } = {}): Promise<ReferenceCheckResult> {
  const fp16 = !!opts.fp16;
  if (fp16 && !rt.hasF16) throw new Error('check-reference --fp16: this adapter has no shader-f16 feature');
  // mixed precision as in training: the graph is built under autocast, so backward runs the same f16 GEMMs
  const precision = <T>(fn: () => T): T => (fp16 ? autocast(fn, 'f16') : fn());
  const limits = fp16 ? { forward: FORWARD_TOLERANCE_F16, grad: GRAD_TOLERANCE_F16, zeroAbs: ZERO_REFERENCE_ABS_TOLERANCE_F16 } : { forward: FORWARD_TOLERANCE, grad: GRAD_TOLERANCE, zeroAbs: ZERO_REFERENCE_ABS_TOLERANCE };
  const judge = (name: string, shape: number[], got: ArrayLike<number>, ref: ArrayLike<number>, kind: 'forward' | 'grad') => judgeWith(limits, name, shape, got, ref, kind);
  const manifestPath = path.join(dir, 'manifest.json');
  const manifest: Manifest = fs.existsSync(manifestPath) ? JSON.parse(await fsp.readFile(manifestPath, 'utf8')) : {};
  const config = parseModelConfig(await fsp.readFile(path.join(dir, 'config.json'), 'utf8'), path.join(dir, 'config.json'));
  const family = familyOf(config);
  const prefix = family.keyRules(config).prefix;
  const weightsFile = pickWeights(dir, choice);
  const refPath = path.join(dir, 'reference.safetensors');
  if (!fs.existsSync(refPath)) throw new Error(`${dir}: no reference.safetensors`);
  const opened: OpenedSource[] = [];
  let model: SpeechClassifier | null = null;
  const live: Tensor[] = [];
  try {
    const weights = await openByExtension(weightsFile);
    opened.push(weights);
    const ref: TensorSource & { close(): Promise<void> } = await openByExtension(refPath);
    opened.push(ref);
    const refEntry = (name: string) => ref.entries.get(name) ?? null;
    const need = (name: string) => {
      const e = refEntry(name);
      if (!e) throw new Error(`${refPath}: no '${name}' tensor`);
      return e;
    };

    // the feature encoder is trained only when the reference has gradients for it
    const freeze = ![...ref.entries.keys()].some((n) => n.startsWith('grad.') && family.isFeatureEncoderParameter(n.slice(5)));
    const built = await SpeechClassifier.fromSource(rt, config, weights, { freezeFeatureEncoder: freeze, checkpoint: weightsFile });
    model = built.model;
    if (built.report.newlyInitialized.length) {
      throw new Error(`${weightsFile}: lacks ${built.report.newlyInitialized.join(', ')}; a reference check needs every weight`);
    }
    model.eval(); // dropout is 0 in the fixtures; eval keeps SpecAugment and layerdrop off as in the reference

    const ours = new Map<string, Tensor>();
    const put = (name: string, t: Tensor | null | undefined) => {
      if (t) ours.set(name, t);
    };
    let input: Tensor;
    const inputEntry = refEntry('input_values');
    if (inputEntry) input = Tensor.fromData(rt, Float32Array.from(await readF64(inputEntry)), [...inputEntry.shape], 'f32', 'input_values');
    else {
      // the model input is made by our feature extractor from the raw waveforms (Whisper's log-mel)
      const raws: Float32Array[] = [];
      for (let i = 0; refEntry(`raw_waveform.${i}`); i++) raws.push(Float32Array.from(await readF64(need(`raw_waveform.${i}`))));
      if (!raws.length) throw new Error(`${refPath}: neither input_values nor raw_waveform.0`);
      const ppPath = path.join(dir, 'preprocessor_config.json');
      const pp = family.parsePreprocessor(fs.existsSync(ppPath) ? JSON.parse(await fsp.readFile(ppPath, 'utf8')) : {}, ppPath, config);
      const prepared = pp.prepare(raws);
      input = Tensor.fromData(rt, prepared.values, prepared.shape, 'f32', 'input_features');
      put('input_features', input);
    }
    live.push(input);
    const maskEntry = refEntry('attention_mask');
    const attentionMask = maskEntry && inputEntry ? Int32Array.from(await readF64(maskEntry)) : null;
    const labelValues = await readF64(need('labels'));
    const labels = config.problem_type === 'regression' ? Float32Array.from(labelValues) : Int32Array.from(labelValues);

    // identities on the named intermediates that capture the gradient flowing through them (grad.<name> references)
    const tapped = new Map<string, Tensor>();
    const tapName = (name: string) => (name === 'pos_conv_weight' ? `derived.${prefix}encoder.pos_conv_embed.conv.weight` : name);
    const tap = (prefix: string) => (name: string, t: Tensor) => (ref.entries.has(`grad.${prefix}${tapName(name)}`) ? gradientTap(t, (g) => tapped.set(`grad.${prefix}${tapName(name)}`, g)) : t);
    const out = precision(() => model!.forward({ inputValues: input, attentionMask }, { outputHiddenStates: true, encoderOnly: true, hook: tap('') }));
    for (const [name, t] of out.intermediates) put(name, t);
    out.hidden_states.forEach((t, i) => put(`hidden_states.${i}`, t));
    put('last_hidden_state', out.last_hidden_state);
    // the gradients are of one pooling's loss (loss_masked_mean in the fixtures so far; grad.pooled_<kind> says
    // which); the other head runs without a graph
    const gradKind = ref.entries.has('grad.pooled_plain_mean') ? 'plain_mean' : 'masked_mean';
    let graded: HeadOutput | null = null;
    const hfHeadNames: Record<string, string> = { pooled: 'pooled_output', logits: 'logits', projected_states: 'projected_states' };
    if (model.head !== 'none' && ref.entries.has('logits')) {
      // HF's own head, as its *ForSequenceClassification runs it: masked mean when the batch has a mask
      const hook = (name: string, t: Tensor) => {
        const refName = hfHeadNames[name] ?? name;
        if (name === 'projected_states') put(refName, keep(noGrad(() => scale(t, 1))));
        return tap('')(refName, t);
      };
      const h = precision(() => model!.classify(out.last_hidden_state, out.hidden_states, out.frameMask, { labels, hook }));
      graded = h;
      put('pooled_output', h.pooled);
      put('logits', h.logits);
      put('loss', h.loss);
      live.push(...[h.pooled, h.logits, h.loss].filter((t): t is Tensor => !!t));
    } else if (model.head !== 'none') {
      for (const kind of ['plain_mean', 'masked_mean'] as const) {
        const hook = kind === gradKind ? (name: string, t: Tensor) => tap('')(`${name}_${kind}`, t) : undefined;
        const run = () => model!.classify(out.last_hidden_state, out.hidden_states, out.frameMask, { pooling: 'mean', poolExcludePadding: kind === 'masked_mean', labels, hook });
        const h = precision(() => (kind === gradKind ? run() : noGrad(run)));
        if (kind === gradKind) graded = h;
        put(`pooled_${kind}`, h.pooled);
        put(`logits_${kind}`, h.logits);
        put(`loss_${kind}`, h.loss);
        live.push(...[h.pooled, h.logits, h.loss].filter((t): t is Tensor => !!t));
        if (model.head === 'speech-classification' && ref.entries.has(`classifier_hidden_${kind}`)) {
          const p = model.params;
          put(`classifier_hidden_${kind}`, noGrad(() => linear(h.pooled, p.get('classifier.dense.weight')!, p.get('classifier.dense.bias')!, 'tanh')));
        }
      }
    }
    const derivedName = `derived.${prefix}encoder.pos_conv_embed.conv.weight`;
    const weightG = model.params.get(`${prefix}encoder.pos_conv_embed.conv.weight_g`);
    const weightV = model.params.get(`${prefix}encoder.pos_conv_embed.conv.weight_v`);
    if (ref.entries.has(derivedName) && weightG && weightV) put(derivedName, noGrad(() => weightNorm(weightG, weightV, 2)));

    const tensors: TensorComparison[] = [];
    const skipped: string[] = [];
    const forwardNames = [...ref.entries.keys()].filter((n) => !n.startsWith('grad.'));
    const inputs = new Set(['input_values', 'attention_mask', 'labels', 'input_lengths', 'frame_lengths', 'frame_mask']);
    for (const name of forwardNames) {
      if (inputs.has(name) || name.startsWith('raw_waveform.')) continue;
      const t = ours.get(name);
      if (!t) {
        skipped.push(name);
        continue;
      }
      tensors.push(judge(name, [...need(name).shape], await t.readFloat(), await readF64(need(name)), 'forward'));
    }
    for (const t of new Set(ours.values())) if (!live.includes(t)) live.push(t);
    if (out.frameMask) live.push(out.frameMask);

    // gradients of loss_masked_mean for every weight the reference has one for
    const gradNames = [...ref.entries.keys()].filter((n) => n.startsWith('grad.'));
    const weightGrads = gradNames.filter((n) => model!.params.has(n.slice(5)));
    if (weightGrads.length) {
      const loss: Tensor | null = (graded as HeadOutput | null)?.loss ?? null;
      if (!loss) throw new Error(`${refPath}: has gradients but the model has no classification head to take a loss from`);
      backward(loss);
      for (const name of weightGrads) {
        const param = model.params.get(name.slice(5))!;
        const refShape = [...need(name).shape];
        if (!param.grad) {
          tensors.push({ name, shape: refShape, rel_l2: Infinity, max_abs: Infinity, kind: 'grad', zero_reference: false, pass: false });
          continue;
        }
        tensors.push(judge(name, refShape, await param.grad.readFloat(), await readF64(need(name)), 'grad'));
      }
    }
    for (const name of gradNames) {
      if (weightGrads.includes(name)) continue;
      const g = tapped.get(name);
      if (!g) {
        skipped.push(name);
        continue;
      }
      tensors.push(judge(name, [...need(name).shape], await g.readFloat(), await readF64(need(name)), 'grad'));
      live.push(g);
    }
    disposeOutput(out);

    const fwd = tensors.filter((t) => t.kind === 'forward');
    const grads = tensors.filter((t) => t.kind === 'grad' && !t.zero_reference);
    const worst = (list: TensorComparison[]) => list.reduce<TensorComparison | null>((w, t) => (!w || !(t.rel_l2 <= w.rel_l2) ? t : w), null);
    const wf = worst(fwd);
    const wg = worst(grads);
    return {
      dir,
      weightsFile,
      head: model.head,
      tensors,
      worst_forward: wf ? wf.rel_l2 : 0,
      worst_forward_name: wf?.name ?? null,
      worst_grad: wg ? wg.rel_l2 : 0,
      worst_grad_name: wg?.name ?? null,
      skipped,
      ok: tensors.length > 0 && tensors.every((t) => t.pass),
      precision: fp16 ? 'f16' : 'f32',
      limits,
    };
  } finally {
    for (const t of live) t.dispose();
    model?.dispose();
    await Promise.all(opened.map((o) => o.close()));
  }
}

/** An identity on t whose backward hands a copy of the incoming gradient to `sink` (recorded even when t needs no
 * gradient, e.g. the frozen feature encoder's output). */
function gradientTap(t: Tensor, sink: (g: Tensor) => void): Tensor {
  const y = t.reshape(t.shape);
  return record('gradientTap', y, [t], [], (g) => {
    sink(keep(scale(g, 1)));
    return [scale(g, 1)];
  }, true);
}

function judgeWith(limits: { forward: number; grad: number; zeroAbs: number }, name: string, shape: number[], got: ArrayLike<number>, ref: ArrayLike<number>, kind: 'forward' | 'grad'): TensorComparison {
  const c = compare(got, ref);
  const zero = kind === 'grad' && c.ref_max < ZERO_REFERENCE_MAX;
  const pass = zero ? c.max_abs <= limits.zeroAbs : c.rel_l2 <= (kind === 'forward' ? limits.forward : limits.grad);
  return { name, shape, rel_l2: c.rel_l2, max_abs: c.max_abs, kind, zero_reference: zero, pass };
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toExponential(2) : String(x);
}

export function formatTable(r: ReferenceCheckResult): string {
  const rows = r.tensors.map((t) => [t.name, `[${t.shape.join(', ')}]`, fmt(t.rel_l2), fmt(t.max_abs), t.pass ? (t.zero_reference ? 'ok (zero ref, max abs)' : 'ok') : 'FAIL']);
  const head = ['tensor', 'shape', 'rel L2', 'max abs', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 2 && i <= 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  out.push('');
  out.push(`weights: ${r.weightsFile} (${r.head} head), ${r.precision === 'f16' ? 'mixed precision (linear layers in f16)' : 'f32'}`);
  out.push(`worst forward: ${fmt(r.worst_forward)} (${r.worst_forward_name ?? '-'}), limit ${r.limits.forward}`);
  out.push(`worst gradient: ${fmt(r.worst_grad)} (${r.worst_grad_name ?? '-'}), limit ${r.limits.grad}; analytically zero references: max abs <= ${r.limits.zeroAbs}`);
  if (r.skipped.length) out.push(`not compared (no counterpart in our outputs): ${r.skipped.join(', ')}`);
  out.push(r.ok ? 'OK' : `FAILED: ${r.tensors.filter((t) => !t.pass).map((t) => t.name).join(', ')}`);
  return out.join('\n');
}

export function checkReferenceOptions(): Command {
  return serCommand('check-reference', 'compare the model (f32) with Hugging Face float64 reference outputs and gradients in a fixture directory')
    .argument('<dir>', 'fixture folder: config.json, weights, reference.safetensors, manifest.json')
    .addOption(new Option('--weights <format>', 'which weights file to load (default: safetensors when present)').choices(['safetensors', 'bin']))
    .option('--fp16', 'mixed precision as in training (looser limits)')
    .option('--json', 'one JSON object')
    .addHelpText('after', '\nExit status: 0 every tensor within tolerance, 1 otherwise, 2 usage error.');
}

/** The command: returns the exit code (0 all within tolerance, 1 otherwise, 2 usage). */
export async function checkReference(argv: string[], runtime?: Runtime): Promise<number> {
  let parsed: ReturnType<typeof parseCommand>;
  try {
    parsed = parseCommand(checkReferenceOptions(), argv, 2);
  } catch (e) {
    if (e instanceof UsageExit) return e.exitCode;
    throw e;
  }
  const { options, args } = parsed;
  const dir = args[0];
  const weights = options.string('weights');
  const choice: WeightsChoice = weights === 'safetensors' || weights === 'bin' ? weights : 'auto';
  const json = options.flag('json');
  const fp16 = options.flag('fp16');
  const rt = runtime ?? (await createNodeRuntime());
  try {
    const r = await runReferenceCheck(rt, dir, choice, { fp16 });
    if (json) {
      const tensors = r.tensors.map((t) => ({ name: t.name, shape: t.shape, rel_l2: jsonNumber(t.rel_l2), max_abs: jsonNumber(t.max_abs), kind: t.kind, zero_reference: t.zero_reference, pass: t.pass }));
      console.log(
        JSON.stringify({
          tensors,
          worst_forward: jsonNumber(r.worst_forward),
          worst_grad: jsonNumber(r.worst_grad),
          ok: r.ok,
          worst_forward_name: r.worst_forward_name,
          worst_grad_name: r.worst_grad_name,
          weights: r.weightsFile,
          head: r.head,
          skipped: r.skipped,
          precision: r.precision,
        }),
      );
    } else console.log(formatTable(r));
    return r.ok ? 0 : 1;
  } finally {
    if (!runtime) rt.destroy();
  }
}

/** JSON has no Infinity/NaN: a failed comparison is written as a string so the object stays parseable. */
function jsonNumber(x: number): number | string {
  return Number.isFinite(x) ? x : String(x);
}
