// Whisper encoder parameters: names, shapes and state-dict order of transformers' WhisperForAudioClassification
// (layer_weights, encoder.*, projector.*, classifier.*), which checkpoint key fills which (including seq2seq
// checkpoints: WhisperForConditionalGeneration / WhisperModel name the encoder model.encoder.*, and their decoder and
// proj_out are skipped with a notice, as from_pretrained does), and fresh initialisation with HF's rules.
import type { KeyMapping, MapOptions } from '../../io/statedict.js';
import { shapeString } from '../../io/source.js';
import { mulberry32 } from '../../data/random.js';
import type { WhisperConfig } from './config.js';

/** 'sequence-classification': WhisperForAudioClassification's head; 'none': the encoder alone */
export type WhisperHead = 'sequence-classification' | 'none';

/**
 * Parameter names and shapes in PyTorch state_dict order (a module's own parameters before its children's, so
 * layer_weights comes first when use_weighted_layer_sum is set).
 */
export function whisperParameterShapes(c: WhisperConfig, head: WhisperHead = 'sequence-classification'): Map<string, number[]> {
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
  if (head === 'sequence-classification' && c.use_weighted_layer_sum) m.set('layer_weights', [c.encoder_layers + 1]);
  m.set('encoder.conv1.weight', [D, c.num_mel_bins, 3]);
  m.set('encoder.conv1.bias', [D]);
  m.set('encoder.conv2.weight', [D, D, 3]);
  m.set('encoder.conv2.bias', [D]);
  m.set('encoder.embed_positions.weight', [c.max_source_positions, D]);
  for (let i = 0; i < c.encoder_layers; i++) {
    const L = `encoder.layers.${i}`;
    // WhisperAttention: k_proj has no bias
    linear(`${L}.self_attn.k_proj`, D, D, false);
    linear(`${L}.self_attn.v_proj`, D, D);
    linear(`${L}.self_attn.q_proj`, D, D);
    linear(`${L}.self_attn.out_proj`, D, D);
    norm(`${L}.self_attn_layer_norm`);
    linear(`${L}.fc1`, c.encoder_ffn_dim, D);
    linear(`${L}.fc2`, D, c.encoder_ffn_dim);
    norm(`${L}.final_layer_norm`);
  }
  norm('encoder.layer_norm');
  if (head === 'sequence-classification') {
    linear('projector', c.classifier_proj_size, D);
    linear('classifier', c.num_labels, c.classifier_proj_size);
  }
  return m;
}

/** Parameters that belong to the head (newly initialised when a checkpoint lacks them). */
export function isWhisperHeadParameter(name: string): boolean {
  return !name.startsWith('encoder.');
}

/** Which head a checkpoint carries, from its keys (null: an encoder-only or seq2seq checkpoint). */
export function detectWhisperHead(keys: Iterable<string>): WhisperHead | null {
  for (const k of keys) if (k === 'classifier.weight' || k === 'projector.weight') return 'sequence-classification';
  return null;
}

function skipReason(key: string): string | null {
  if (key.startsWith('decoder.') || key.startsWith('model.decoder.')) return 'the text decoder of a seq2seq (speech recognition) checkpoint';
  if (key === 'proj_out.weight') return 'the output projection (proj_out) of WhisperForConditionalGeneration';
  return null;
}

function list(names: readonly string[], max = 12): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, ... (${names.length - max} more)` : shown;
}

/**
 * Which checkpoint tensor fills which parameter, as from_pretrained decides it for WhisperForAudioClassification
 * (base_model_prefix 'model', which the model itself lacks): when the checkpoint's keys start with 'model.' (seq2seq
 * checkpoints), HF prefixes every expected name with 'model.', so model.encoder.* fills encoder.* and keys without the
 * prefix go unused; otherwise names match as they are (a WhisperModel saved alone has encoder.* and decoder.*).
 */
export function mapWhisperCheckpointKeys(source: Iterable<readonly [string, readonly number[]]>, expected: ReadonlyMap<string, readonly number[]>, opts: MapOptions = {}): KeyMapping {
  const ckpt = opts.checkpoint ?? 'the checkpoint';
  const model = opts.model ?? 'WhisperForAudioClassification';
  const entries = [...source];
  const prefixed = entries.some(([k]) => k.startsWith('model.'));
  const out: KeyMapping = { mapping: new Map(), newlyInitialized: [], missing: [], skipped: [], unexpected: [], mismatched: [], errors: [], notices: [] };
  const claimed = new Set<string>();
  for (const [key, shape] of entries) {
    const why = skipReason(key);
    if (why) {
      out.skipped.push({ key, reason: why });
      continue;
    }
    const name = prefixed ? (key.startsWith('model.') ? key.slice('model.'.length) : null) : key;
    const want = name === null ? undefined : expected.get(name);
    if (name === null || want === undefined) {
      out.unexpected.push(key);
      continue;
    }
    claimed.add(name);
    if (want.length !== shape.length || !want.every((d, i) => d === shape[i])) {
      out.mismatched.push({ name, sourceKey: key, expected: [...want], found: [...shape] });
      continue;
    }
    out.mapping.set(name, key);
  }
  for (const name of expected.keys()) {
    if (claimed.has(name)) continue;
    if (isWhisperHeadParameter(name)) out.newlyInitialized.push(name);
    else out.missing.push(name);
  }
  for (const mm of out.mismatched) {
    const text = `'${mm.name}'${mm.sourceKey === mm.name ? '' : ` (checkpoint key '${mm.sourceKey}')`}: the checkpoint has shape ${shapeString(mm.found)}, the model expects ${shapeString(mm.expected)}`;
    if (opts.ignoreMismatchedSizes && isWhisperHeadParameter(mm.name)) {
      out.newlyInitialized.push(mm.name);
      out.notices.push(`${ckpt}: ${text}; newly initialized (ignoreMismatchedSizes)`);
    } else {
      out.errors.push(`${ckpt}: shape mismatch for ${text}${isWhisperHeadParameter(mm.name) ? ' (a head trained for another label set? set ignoreMismatchedSizes to reinitialise it)' : ''}`);
    }
  }
  if (out.missing.length) {
    const hint = out.mapping.size === 0 ? ` (no key matched at all: is this a Whisper checkpoint? its first keys: ${list(entries.map(([k]) => k), 5)})` : '';
    out.errors.push(`${ckpt}: ${out.missing.length} encoder weight(s) missing from the checkpoint: ${list(out.missing)}${hint}`);
  }
  const byReason = new Map<string, string[]>();
  for (const s of out.skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.key]);
  for (const [reason, keys] of byReason) out.notices.push(`${ckpt}: skipped ${keys.length} weight(s) of ${reason}, not used by ${model}: ${list(keys, 6)}`);
  if (out.unexpected.length) out.notices.push(`Some weights of the model checkpoint at ${ckpt} were not used when initializing ${model}: [${list(out.unexpected)}]`);
  const fresh = out.newlyInitialized.filter((n) => !out.mismatched.some((m) => m.name === n));
  if (fresh.length) {
    out.notices.push(
      `Some weights of ${model} were not initialized from the model checkpoint at ${ckpt} and are newly initialized: [${list(fresh)}]\n` +
        'You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.',
    );
  }
  return out;
}

/**
 * Whisper's sinusoidal position table (OpenAI's sinusoids(length, channels)): [sin(t f_i), cos(t f_i)] with
 * f_i = 10000^(-i / (channels/2 - 1)). Real checkpoints hold exactly this (transformers >= 4.37 also initialises
 * embed_positions with it); v4.30's _init_weights drew N(0, init_std) instead.
 */
export function whisperSinusoids(length: number, channels: number): Float32Array {
  const half = channels >> 1;
  const out = new Float32Array(length * channels);
  const step = half > 1 ? Math.log(10000) / (half - 1) : 0;
  for (let t = 0; t < length; t++) {
    for (let i = 0; i < half; i++) {
      const a = t * Math.exp(-step * i);
      out[t * channels + i] = Math.sin(a);
      out[t * channels + half + i] = Math.cos(a);
    }
  }
  return out;
}

/**
 * Fresh parameters as WhisperPreTrainedModel._init_weights leaves them: nn.Linear and nn.Conv1d weights N(0, init_std),
 * biases 0; LayerNorm 1 / 0; layer_weights 1 / (encoder_layers + 1); embed_positions the sinusoid table (odd d_model:
 * N(0, init_std)). Values come from our seeded generator, so they match HF's distributions, not its numbers.
 */
export function initWhisperWeights(c: WhisperConfig, opts: { head: WhisperHead; seed?: number; only?: (name: string) => boolean }): Map<string, { shape: number[]; data: Float32Array }> {
  const random = mulberry32(opts.seed ?? 0);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of whisperParameterShapes(c, opts.head)) {
    if (opts.only && !opts.only(name)) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    const normal = () => {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(Math.max(random(), 1e-12)));
        const v = 2 * Math.PI * random();
        d[i] = c.init_std * r * Math.cos(v);
        if (i + 1 < n) d[i + 1] = c.init_std * r * Math.sin(v);
      }
      return d;
    };
    let data: Float32Array;
    if (name === 'layer_weights') data = new Float32Array(n).fill(1 / n);
    else if (/layer_norm\.weight$/.test(name)) data = new Float32Array(n).fill(1);
    else if (name.endsWith('.bias')) data = new Float32Array(n);
    else if (name === 'encoder.embed_positions.weight' && c.d_model % 2 === 0 && c.d_model >= 4) data = whisperSinusoids(shape[0], shape[1]);
    else data = normal();
    out.set(name, { shape, data });
  }
  return out;
}
