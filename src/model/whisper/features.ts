// Whisper's log-mel feature extractor (Hugging Face WhisperFeatureExtractor, numpy path of transformers v4.30), on the
// CPU in float64. Per clip: cast to f32 as HF does; right-pad with padding_value or truncate to n_samples =
// chunk_length * sampling_rate (30 s); reflect-pad n_fft/2 at both ends (center=True); frames of n_fft every hop_length
// samples, periodic Hann window; power spectrum |rfft|^2; mel = filters^T power with HF's mel_filter_bank (Slaney
// scale, Slaney area normalisation, 0..8000 Hz whatever the rate: HF hard-codes 8000); log10(max(mel, 1e-10)); drop the
// last frame (3001 -> 3000); floor at (max over the whole clip) - 8; (x + 4) / 4. The result is [feature_size, frames].
// HF keeps the rfft in complex64 and casts log10 to f32; we stay in float64 (their rounding is ~1e-7 of a feature).
// preprocessor_config.json is parsed with HF's defaults; every size is bounded before anything is allocated.
import { isPlainObject } from '../../io/source.js';
import { FFT } from './fft.js';

export interface WhisperFeatureExtractorConfig {
  feature_extractor_type: 'WhisperFeatureExtractor';
  /** mel bins (80; 128 for large-v3) */
  feature_size: number;
  sampling_rate: number;
  hop_length: number;
  /** seconds every clip is padded or truncated to */
  chunk_length: number;
  n_fft: number;
  padding_value: number;
  padding_side: 'right';
  return_attention_mask: boolean;
  /** chunk_length * sampling_rate (HF recomputes it; a differing value in the file is ignored, with a warning) */
  n_samples: number;
  /** frames of one clip: 1 + (n_samples + 2 (n_fft/2) - n_fft) / hop_length, less the dropped last frame */
  num_frames: number;
  raw: Record<string, unknown>;
  warnings: string[];
}

/** WhisperFeatureExtractor.__init__ defaults (transformers v4.30) */
export const WHISPER_FEATURE_DEFAULTS = {
  feature_size: 80,
  sampling_rate: 16000,
  hop_length: 160,
  chunk_length: 30,
  n_fft: 400,
  padding_value: 0.0,
  return_attention_mask: false,
  padding_side: 'right',
} as const;

/** HF's mel_filter_bank range for Whisper (hard-coded in WhisperFeatureExtractor) */
export const WHISPER_MEL_MIN_HZ = 0.0;
export const WHISPER_MEL_MAX_HZ = 8000.0;
export const WHISPER_LOG_MEL_FLOOR = 1e-10;

// Bounds for hostile files: generous for real models (whisper: 80/128 mels, n_fft 400, hop 160, 30 s at 16 kHz).
const MAX_MELS = 512;
const MAX_N_FFT = 1 << 16;
const MAX_SAMPLING_RATE = 384000;
const MAX_N_SAMPLES = 1 << 24;
/** mels x frames of one clip's output (default: 240,000) */
const MAX_OUTPUT_ELEMENTS = 1 << 25;

function fail(file: string, field: string, msg: string): never {
  throw new Error(`${file}: "${field}" ${msg}`);
}

function intField(json: Record<string, unknown>, file: string, field: string, def: number, lo: number, hi: number): number {
  const v = json[field] ?? def;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) fail(file, field, `must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  return v;
}

export function parseWhisperFeatureExtractorConfig(json: unknown, fileName = 'preprocessor_config.json'): WhisperFeatureExtractorConfig {
  if (typeof json === 'string') {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object`);
  const D = WHISPER_FEATURE_DEFAULTS;
  const warnings: string[] = [];
  const type = json.feature_extractor_type;
  if (type !== undefined && type !== null && type !== 'WhisperFeatureExtractor') {
    fail(fileName, 'feature_extractor_type', `is ${JSON.stringify(type)}; expected "WhisperFeatureExtractor"`);
  }
  const feature_size = intField(json, fileName, 'feature_size', D.feature_size, 1, MAX_MELS);
  const sampling_rate = intField(json, fileName, 'sampling_rate', D.sampling_rate, 1000, MAX_SAMPLING_RATE);
  const hop_length = intField(json, fileName, 'hop_length', D.hop_length, 1, MAX_N_FFT);
  const n_fft = intField(json, fileName, 'n_fft', D.n_fft, 2, MAX_N_FFT);
  const chunk_length = intField(json, fileName, 'chunk_length', D.chunk_length, 1, Math.floor(MAX_N_SAMPLES / sampling_rate));
  const n_samples = chunk_length * sampling_rate;
  // numpy's reflect padding of n_fft/2 needs that many samples beyond the edge one
  if (n_fft >> 1 >= n_samples) fail(fileName, 'n_fft', `(${n_fft}) needs more than n_fft/2 samples per clip; chunk_length * sampling_rate is ${n_samples}`);
  const stftFrames = 1 + Math.floor((n_samples + 2 * (n_fft >> 1) - n_fft) / hop_length);
  const num_frames = stftFrames - 1;
  if (num_frames < 1) fail(fileName, 'hop_length', `(${hop_length}) leaves no frame in ${n_samples} samples`);
  if (num_frames * feature_size > MAX_OUTPUT_ELEMENTS) {
    fail(fileName, 'hop_length', `(${hop_length}) with feature_size ${feature_size} makes ${num_frames} x ${feature_size} features per clip (limit ${MAX_OUTPUT_ELEMENTS})`);
  }
  const padding_value = json.padding_value ?? D.padding_value;
  if (typeof padding_value !== 'number' || !Number.isFinite(padding_value)) fail(fileName, 'padding_value', `must be a finite number, got ${JSON.stringify(padding_value)}`);
  const padding_side = json.padding_side ?? D.padding_side;
  if (padding_side !== 'right') fail(fileName, 'padding_side', `is ${JSON.stringify(padding_side)}; only "right" is supported`);
  const return_attention_mask = json.return_attention_mask ?? D.return_attention_mask;
  if (typeof return_attention_mask !== 'boolean') fail(fileName, 'return_attention_mask', `must be true or false, got ${JSON.stringify(return_attention_mask)}`);
  // later transformers versions add random dither; a non-zero one is a different (random) input, not supported
  const dither = json.dither ?? 0;
  if (dither !== 0) fail(fileName, 'dither', `is ${JSON.stringify(dither)}; only 0 (no dither) is supported`);
  // HF recomputes these two from chunk_length, sampling_rate and hop_length and ignores the file's values
  if (json.n_samples !== undefined && json.n_samples !== n_samples) {
    warnings.push(`${fileName}: "n_samples" is ${JSON.stringify(json.n_samples)} but chunk_length * sampling_rate = ${n_samples}; using ${n_samples} as Hugging Face does`);
  }
  const nbMaxFrames = Math.floor(n_samples / hop_length);
  if (json.nb_max_frames !== undefined && json.nb_max_frames !== nbMaxFrames) {
    warnings.push(`${fileName}: "nb_max_frames" is ${JSON.stringify(json.nb_max_frames)} but n_samples / hop_length = ${nbMaxFrames}; ignored as Hugging Face does`);
  }
  return {
    feature_extractor_type: 'WhisperFeatureExtractor',
    feature_size,
    sampling_rate,
    hop_length,
    chunk_length,
    n_fft,
    padding_value,
    padding_side: 'right',
    return_attention_mask,
    n_samples,
    num_frames,
    raw: { ...json },
    warnings,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Slaney mel scale and filter bank (HF audio_utils.hertz_to_mel / mel_to_hertz with mel_scale "slaney", mel_filter_bank
// with norm "slaney"): linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).

const SLANEY_MIN_LOG_HZ = 1000.0;
const SLANEY_MIN_LOG_MEL = 15.0;
const SLANEY_LOGSTEP = Math.log(6.4) / 27.0;

export function hertzToMelSlaney(hz: number): number {
  return hz >= SLANEY_MIN_LOG_HZ ? SLANEY_MIN_LOG_MEL + Math.log(hz / SLANEY_MIN_LOG_HZ) / SLANEY_LOGSTEP : (3.0 * hz) / 200.0;
}

export function melToHertzSlaney(mel: number): number {
  return mel >= SLANEY_MIN_LOG_MEL ? SLANEY_MIN_LOG_HZ * Math.exp(SLANEY_LOGSTEP * (mel - SLANEY_MIN_LOG_MEL)) : (200.0 * mel) / 3.0;
}

/** numpy.linspace(start, stop, num) (endpoint included, computed as numpy does: start + i * step, last = stop) */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = num > 1 ? (stop - start) / (num - 1) : 0;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** Edge frequencies (Hz) of the triangular filters: numMelFilters + 2 points evenly spaced in Slaney mels. */
export function melFilterEdgesHz(numMelFilters: number, minHz = WHISPER_MEL_MIN_HZ, maxHz = WHISPER_MEL_MAX_HZ): Float64Array {
  const mels = linspace(hertzToMelSlaney(minHz), hertzToMelSlaney(maxHz), numMelFilters + 2);
  return mels.map(melToHertzSlaney);
}

/**
 * HF mel_filter_bank(num_frequency_bins, num_mel_filters, min, max, sampling_rate, norm="slaney", mel_scale="slaney"):
 * [numFrequencyBins, numMelFilters] row-major, float64. Filter m rises from edge m to m+1 and falls to m+2 (linear in
 * Hz), scaled by 2 / (edge[m+2] - edge[m]) so each filter has about the same area.
 */
export function melFilterBank(numFrequencyBins: number, numMelFilters: number, samplingRate: number, minHz = WHISPER_MEL_MIN_HZ, maxHz = WHISPER_MEL_MAX_HZ): Float64Array {
  const edges = melFilterEdgesHz(numMelFilters, minHz, maxHz);
  // HF: np.linspace(0, sampling_rate // 2, num_frequency_bins)
  const fftHz = linspace(0, Math.floor(samplingRate / 2), numFrequencyBins);
  const out = new Float64Array(numFrequencyBins * numMelFilters);
  for (let k = 0; k < numFrequencyBins; k++) {
    for (let m = 0; m < numMelFilters; m++) {
      const down = -(edges[m] - fftHz[k]) / (edges[m + 1] - edges[m]);
      const up = (edges[m + 2] - fftHz[k]) / (edges[m + 2] - edges[m + 1]);
      const w = Math.max(0, Math.min(down, up));
      out[k * numMelFilters + m] = w * (2.0 / (edges[m + 2] - edges[m]));
    }
  }
  return out;
}

/** Periodic Hann window (HF window_function(n, "hann"), = np.hanning(n + 1)[:-1]). */
export function periodicHann(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  return w;
}

// ---------------------------------------------------------------------------------------------------------------

/** Log-mel features of one clip: [feature_size, num_frames] row-major, float64. */
export interface LogMel {
  data: Float64Array;
  melBins: number;
  frames: number;
}

export class WhisperFeatureExtractor {
  readonly config: WhisperFeatureExtractorConfig;
  /** [n_fft/2 + 1, feature_size] as HF's mel_filters */
  readonly melFilters: Float64Array;
  readonly window: Float64Array;
  private readonly fft: FFT;
  /** per mel filter, the first and one-past-last frequency bin with a non-zero weight (the bank is sparse) */
  private readonly filterLo: Int32Array;
  private readonly filterHi: Int32Array;

  constructor(config: WhisperFeatureExtractorConfig = parseWhisperFeatureExtractorConfig({})) {
    this.config = config;
    const { n_fft, feature_size, sampling_rate } = this.config;
    const bins = (n_fft >> 1) + 1;
    this.melFilters = melFilterBank(bins, feature_size, sampling_rate);
    this.window = periodicHann(n_fft);
    this.fft = new FFT(n_fft);
    this.filterLo = new Int32Array(feature_size);
    this.filterHi = new Int32Array(feature_size);
    for (let m = 0; m < feature_size; m++) {
      let lo = bins;
      let hi = 0;
      for (let k = 0; k < bins; k++) {
        if (this.melFilters[k * feature_size + m] !== 0) {
          lo = Math.min(lo, k);
          hi = k + 1;
        }
      }
      this.filterLo[m] = lo;
      this.filterHi[m] = Math.max(hi, lo);
    }
  }

  /** From preprocessor_config.json's text or parsed JSON (absent fields take HF's defaults). */
  static fromJson(json: unknown, fileName = 'preprocessor_config.json'): WhisperFeatureExtractor {
    return new WhisperFeatureExtractor(parseWhisperFeatureExtractorConfig(json, fileName));
  }

  get numFrames(): number {
    return this.config.num_frames;
  }

  /** The clip as HF feeds the STFT: f32 samples, truncated or right-padded with padding_value to n_samples. */
  padOrTruncate(waveform: ArrayLike<number>, what = 'waveform'): Float32Array {
    const n = this.config.n_samples;
    const out = new Float32Array(n);
    const len = Math.min(waveform.length, n);
    for (let i = 0; i < len; i++) {
      const v = waveform[i];
      if (!Number.isFinite(v)) throw new Error(`${what}: sample ${i} is ${v}; audio must be finite`);
      out[i] = v;
    }
    if (len < n) out.fill(this.config.padding_value, len);
    return out;
  }

  /** Whisper log-mel features of one clip (any length; padded or truncated to chunk_length seconds). */
  logMel(waveform: ArrayLike<number>, what = 'waveform'): LogMel {
    const { n_fft, hop_length, feature_size: mels, num_frames: frames } = this.config;
    const x = this.padOrTruncate(waveform, what);
    const n = x.length;
    const pad = n_fft >> 1;
    // numpy reflect padding (edge sample not repeated): left x[pad..1], right x[n-2..n-1-pad]
    const padded = new Float64Array(n + 2 * pad);
    for (let i = 0; i < n; i++) padded[pad + i] = x[i];
    for (let i = 0; i < pad; i++) {
      padded[i] = x[pad - i];
      padded[pad + n + i] = x[n - 2 - i];
    }
    const bins = (n_fft >> 1) + 1;
    const out = new Float64Array(mels * frames);
    const re = new Float64Array(n_fft);
    const im = new Float64Array(n_fft);
    const powerA = new Float64Array(bins);
    const powerB = new Float64Array(bins);
    const w = this.window;
    // two real frames per complex transform: frame t in the real part, t + 1 in the imaginary part
    for (let t = 0; t < frames; t += 2) {
      const second = t + 1 < frames;
      const a = t * hop_length;
      const b = a + hop_length;
      for (let j = 0; j < n_fft; j++) {
        re[j] = padded[a + j] * w[j];
        im[j] = second ? padded[b + j] * w[j] : 0;
      }
      this.fft.forward(re, im);
      for (let k = 0; k < bins; k++) {
        const nk = k === 0 ? 0 : n_fft - k;
        const p = re[k];
        const q = im[k];
        const r = re[nk];
        const s = im[nk];
        // A = (X[k] + conj X[n-k]) / 2, B = (X[k] - conj X[n-k]) / 2i
        powerA[k] = ((p + r) * (p + r) + (q - s) * (q - s)) / 4;
        powerB[k] = ((q + s) * (q + s) + (p - r) * (p - r)) / 4;
      }
      this.applyFilters(powerA, out, t, frames);
      if (second) this.applyFilters(powerB, out, t + 1, frames);
    }
    let max = -Infinity;
    for (let i = 0; i < out.length; i++) {
      const v = Math.log10(Math.max(out[i], WHISPER_LOG_MEL_FLOOR));
      out[i] = v;
      if (v > max) max = v;
    }
    const floor = max - 8.0;
    for (let i = 0; i < out.length; i++) out[i] = (Math.max(out[i], floor) + 4.0) / 4.0;
    return { data: out, melBins: mels, frames };
  }

  private applyFilters(power: Float64Array, out: Float64Array, t: number, frames: number): void {
    const mels = this.config.feature_size;
    const f = this.melFilters;
    for (let m = 0; m < mels; m++) {
      let s = 0;
      for (let k = this.filterLo[m]; k < this.filterHi[m]; k++) s += f[k * mels + m] * power[k];
      out[m * frames + t] = s;
    }
  }

  /** The model's input_features for a batch: [B, feature_size, num_frames] as f32 (HF returns f32). */
  batch(waveforms: readonly ArrayLike<number>[], names?: readonly string[]): { data: Float32Array; shape: [number, number, number] } {
    const { feature_size: mels, num_frames: frames } = this.config;
    const per = mels * frames;
    if (waveforms.length * per > 1 << 30) throw new RangeError(`input_features for ${waveforms.length} clips would need ${waveforms.length * per} values`);
    const data = new Float32Array(waveforms.length * per);
    waveforms.forEach((w, i) => data.set(this.logMel(w, names?.[i] ?? `waveform ${i}`).data, i * per));
    return { data, shape: [waveforms.length, mels, frames] };
  }
}
