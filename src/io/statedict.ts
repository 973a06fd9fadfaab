// Checkpoint keys -> model parameters, for any model family. Canonical parameter names are Hugging Face's, with the
// family's base-model prefix (`wav2vec2.`, `hubert.`, `wavlm.`, `data2vec_audio.`, `encoder.` for Whisper's
// classifier), so a model saved by this engine loads in transformers and the other way round. The family supplies
// its KeyRules (prefix, the base model's top-level modules, aliases such as a seq2seq checkpoint's `model.encoder.`,
// keys skipped on purpose); this file knows no family. mapCheckpointKeys decides, for each expected parameter,
// which checkpoint tensor fills it, tolerating the spellings real checkpoints use:
//   - keys with or without the base-model prefix (a *Model checkpoint has none)
//   - weight norm as weight_g / weight_v (torch < 2.1) or parametrizations.weight.original0 / original1 (torch >= 2.1)
//   - LayerNorm gamma / beta (old TF-style names, renamed by transformers too)
// and reports like transformers' from_pretrained: unused checkpoint weights (a CTC lm_head, pretraining heads, a
// decoder, layers beyond the config's count are skipped with a notice), newly initialised head weights, and errors
// for missing encoder weights and shape mismatches. loadIntoTensors then streams the mapped tensors one at a time.
import { type TensorSource, shapeString } from './source.js';

/** Which classifier head a model carries ('ctc' and 'none' only describe checkpoints). */
export type HeadKind = 'speech-classification' | 'sequence-classification' | 'ctc' | 'none';

/** How a family's parameter names relate to checkpoint keys. */
export interface KeyRules {
  /** the base model's attribute prefix, e.g. 'wav2vec2.' */
  prefix: string;
  /** top-level modules of the base model: a key starting with one of these lacks the prefix (a *Model checkpoint) */
  baseModelParts: ReadonlySet<string>;
  /** other key prefixes holding the base model's weights, as [theirs, ours] (Whisper seq2seq: ['model.encoder.', 'encoder.']) */
  aliases?: readonly (readonly [string, string])[];
  /** why a checkpoint key (canonical spelling, our prefix) is skipped on purpose, or null */
  skipReason?(key: string): string | null;
  /** base-model parameters a checkpoint may lack (initialised then, like heads), e.g. masked_spec_embed */
  mayBeNew?(name: string): boolean;
}

/** One spelling per parameter: weight norm as weight_g/weight_v, LayerNorm as weight/bias. */
export function canonicalParameterName(key: string): string {
  let k = key;
  if (k.endsWith('.parametrizations.weight.original0')) k = `${k.slice(0, -'.parametrizations.weight.original0'.length)}.weight_g`;
  else if (k.endsWith('.parametrizations.weight.original1')) k = `${k.slice(0, -'.parametrizations.weight.original1'.length)}.weight_v`;
  else if (k.endsWith('.gamma')) k = `${k.slice(0, -'.gamma'.length)}.weight`;
  else if (k.endsWith('.beta')) k = `${k.slice(0, -'.beta'.length)}.bias`;
  return k;
}

export interface ShapeMismatch {
  /** the model's parameter name */
  name: string;
  /** the checkpoint's key */
  sourceKey: string;
  expected: number[];
  found: number[];
}

export interface KeyMapping {
  /** model parameter name -> checkpoint key, for every parameter that will be loaded */
  mapping: Map<string, string>;
  /** model parameters the checkpoint lacks that are heads (or masked_spec_embed): they keep their fresh initialisation */
  newlyInitialized: string[];
  /** model parameters of the encoder that the checkpoint lacks (errors) */
  missing: string[];
  /** checkpoint keys skipped on purpose: the CTC output layer and pretraining heads */
  skipped: { key: string; reason: string }[];
  /** other checkpoint keys the model has no parameter for (a notice, as in transformers) */
  unexpected: string[];
  mismatched: ShapeMismatch[];
  /** if any, the checkpoint cannot be loaded */
  errors: string[];
  /** things to tell the user (transformers-style messages) */
  notices: string[];
}

export interface MapOptions {
  /** the family's key rules (default: no prefix, nothing skipped beyond the common heads) */
  rules?: KeyRules;
  /** names the checkpoint in messages (a path or hub id) */
  checkpoint?: string;
  /** names the model in messages (default Wav2Vec2ForSpeechClassification) */
  model?: string;
  /** as transformers' ignore_mismatched_sizes: a shape mismatch leaves the parameter newly initialised (e.g. a
   * classifier trained for another label set); otherwise it is an error */
  ignoreMismatchedSizes?: boolean;
}

/** Skip reasons every family shares: output layers of speech-recognition and pretraining checkpoints. */
export function commonSkipReason(key: string): string | null {
  if (key.startsWith('lm_head.')) return 'the CTC output layer of a speech-recognition checkpoint';
  if (key.startsWith('quantizer.') || key.startsWith('project_q.') || key.startsWith('project_hid.') || key.startsWith('label_embeddings_concat') || key.startsWith('final_proj.')) {
    return 'a pretraining head (quantizer, project_q, project_hid, final_proj)';
  }
  return null;
}

/** A skip rule for `<prefix>encoder.layers.<i>.` keys with i >= layers: a config cut to its first N layers (audeering's 24 -> 12). */
export function extraLayerSkip(layersPrefix: string, layers: number): (key: string) => string | null {
  return (key) => {
    if (!key.startsWith(layersPrefix)) return null;
    const i = Number(key.slice(layersPrefix.length).split('.')[0]);
    return Number.isInteger(i) && i >= layers ? `encoder layers beyond num_hidden_layers = ${layers} in config.json (only the first ${layers} are used)` : null;
  };
}

function list(names: readonly string[], max = 12): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, ... (${names.length - max} more)` : shown;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Which checkpoint tensor fills which model parameter. `source` gives the checkpoint's keys and shapes (a Map, or
 * any iterable of [key, shape]); `expected` the model's parameter names and shapes.
 */
export function mapCheckpointKeys(source: Iterable<readonly [string, readonly number[]]>, expected: ReadonlyMap<string, readonly number[]>, opts: MapOptions = {}): KeyMapping {
  const ckpt = opts.checkpoint ?? 'the checkpoint';
  const model = opts.model ?? 'Wav2Vec2ForSpeechClassification';
  const rules: KeyRules = opts.rules ?? { prefix: '', baseModelParts: new Set() };
  const PREFIX = rules.prefix;
  const isHead = (name: string) => (PREFIX !== '' && !name.startsWith(PREFIX)) || (rules.mayBeNew?.(name) ?? false);
  const skipReason = (key: string) => rules.skipReason?.(key) ?? commonSkipReason(key);
  // the model's names by canonical spelling (the model may itself use either weight-norm spelling)
  const expectedByCanon = new Map<string, string>();
  for (const name of expected.keys()) expectedByCanon.set(canonicalParameterName(name), name);

  const out: KeyMapping = { mapping: new Map(), newlyInitialized: [], missing: [], skipped: [], unexpected: [], mismatched: [], errors: [], notices: [] };
  const claimedBy = new Map<string, string>(); // model name -> checkpoint key that filled it
  const sourceShapes = new Map<string, readonly number[]>();
  for (const [key, shape] of source) {
    sourceShapes.set(key, shape);
    let canon = canonicalParameterName(key);
    for (const [theirs, ours] of rules.aliases ?? []) {
      if (canon.startsWith(theirs)) {
        canon = ours + canon.slice(theirs.length);
        break;
      }
    }
    if (PREFIX && !canon.startsWith(PREFIX) && (expectedByCanon.has(PREFIX + canon) || rules.baseModelParts.has(canon.split('.')[0]))) canon = PREFIX + canon;
    const target = expectedByCanon.get(canon);
    if (target === undefined) {
      const why = skipReason(canon);
      if (why) out.skipped.push({ key, reason: why });
      else out.unexpected.push(key);
      continue;
    }
    const prev = claimedBy.get(target);
    if (prev !== undefined) {
      out.errors.push(`${ckpt}: both '${prev}' and '${key}' hold model parameter '${target}'; the checkpoint is ambiguous`);
      continue;
    }
    claimedBy.set(target, key);
    const want = expected.get(target)!;
    if (!sameShape(want, shape)) {
      out.mismatched.push({ name: target, sourceKey: key, expected: [...want], found: [...shape] });
      continue;
    }
    out.mapping.set(target, key);
  }

  for (const name of expected.keys()) {
    if (claimedBy.has(name)) continue;
    if (isHead(name)) out.newlyInitialized.push(name);
    else out.missing.push(name);
  }

  for (const mm of out.mismatched) {
    const keyNote = mm.sourceKey === mm.name ? '' : ` (checkpoint key '${mm.sourceKey}')`;
    const text = `'${mm.name}'${keyNote}: the checkpoint has shape ${shapeString(mm.found)}, the model expects ${shapeString(mm.expected)}`;
    if (opts.ignoreMismatchedSizes) {
      out.newlyInitialized.push(mm.name);
      out.notices.push(`${ckpt}: ${text}; newly initialized (ignoreMismatchedSizes)`);
    } else {
      out.errors.push(
        `${ckpt}: shape mismatch for ${text}` + (isHead(mm.name) ? ' (a head trained for another label set? set ignoreMismatchedSizes to reinitialise it)' : ''),
      );
    }
  }
  if (out.missing.length) {
    let hint = '';
    if (out.missing.some((n) => n.includes('pos_conv_embed.conv.weight_')) && sourceShapes.has(`${PREFIX}encoder.pos_conv_embed.conv.weight`)) {
      hint = ' (the checkpoint stores the positional convolution without weight norm; re-save it with weight_g/weight_v)';
    } else if (out.mapping.size === 0) {
      hint = ` (no key matched at all: is this checkpoint of the family config.json names? its first keys: ${list([...sourceShapes.keys()], 5)})`;
    }
    out.errors.push(`${ckpt}: ${out.missing.length} encoder weight(s) missing from the checkpoint: ${list(out.missing)}${hint}`);
  }

  const byReason = new Map<string, string[]>();
  for (const s of out.skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.key]);
  for (const [reason, keys] of byReason) out.notices.push(`${ckpt}: skipped ${keys.length} weight(s) of ${reason}, not used by ${model}: ${list(keys, 6)}`);
  if (out.unexpected.length) {
    out.notices.push(`Some weights of the model checkpoint at ${ckpt} were not used when initializing ${model}: [${list(out.unexpected)}]`);
  }
  const fresh = out.newlyInitialized.filter((n) => !out.mismatched.some((m) => m.name === n));
  if (fresh.length) {
    out.notices.push(
      `Some weights of ${model} were not initialized from the model checkpoint at ${ckpt} and are newly initialized: [${list(fresh)}]\n` +
        'You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.',
    );
  }
  return out;
}

/** [key, shape] of every tensor in a source, for mapCheckpointKeys. */
export function sourceShapes(source: TensorSource): Map<string, readonly number[]> {
  const m = new Map<string, readonly number[]>();
  for (const [k, e] of source.entries) m.set(k, e.shape);
  return m;
}

/** What loadIntoTensors writes into: a Tensor (shape + write) fits. */
export interface ParameterTarget {
  readonly shape: readonly number[];
  write(data: Float32Array): void | Promise<void>;
}

export interface LoadReport extends KeyMapping {
  loadedTensors: number;
  loadedValues: number;
}

export interface LoadOptions extends MapOptions {
  /** called after each tensor is written */
  onTensor?: (name: string, index: number, total: number) => void;
}

/**
 * Fills the model's parameters from a checkpoint, one tensor at a time (read, convert to f32, write, drop), so only
 * one tensor's values are in JS memory at once. Throws before reading any weights if the mapping has errors; the
 * error carries the full report as `.report`. Parameters newly initialised are left untouched.
 */
export async function loadIntoTensors(source: TensorSource, targets: ReadonlyMap<string, ParameterTarget>, opts: LoadOptions = {}): Promise<LoadReport> {
  const expected = new Map<string, readonly number[]>();
  for (const [name, t] of targets) expected.set(name, t.shape);
  const mapping = mapCheckpointKeys(sourceShapes(source), expected, { ...opts, checkpoint: opts.checkpoint ?? source.files.join(', ') });
  if (mapping.errors.length) {
    const err = new Error(mapping.errors.join('\n')) as Error & { report?: KeyMapping };
    err.report = mapping;
    throw err;
  }
  let i = 0;
  let values = 0;
  const total = mapping.mapping.size;
  for (const [name, key] of mapping.mapping) {
    const data = await source.entries.get(key)!.read();
    await targets.get(name)!.write(data);
    values += data.length;
    i++;
    opts.onTensor?.(name, i, total);
  }
  return { ...mapping, loadedTensors: i, loadedValues: values };
}
