// Band-limited sample-rate conversion: polyphase windowed-sinc interpolation (Kaiser window), the design of
// torchaudio's resample(..., 'sinc_interp_kaiser') and resampy, sized from the Kaiser formulas for a given stop-band
// attenuation and transition band. Output sample n sits at input time t = n * from / to (no delay, no shift) and is
// sum_k x[k] h(t - k), with h(tau) = 2 fc sinc(2 fc tau) w(tau), fc the cutoff in cycles per input sample and w the
// Kaiser window of half-width W input samples; x is zero outside the clip.
//
// Why not a library: @alexanderolsen/libsamplerate-js is a wasm2js (asm.js) build, 2 MB of JS with a 26 MB heap per
// converter, async to create and ~40 ms per second of 44.1 kHz audio at its best-quality setting; wave-resampler's
// "sinc" mode is a 6-tap sinc plus a Butterworth IIR filter, which cannot meet the pass-band flatness asked here. This
// design, at its defaults (pass band to 0.9 of the new Nyquist, stop band from the new Nyquist, 80 dB), is flat within
// ~0.001 dB below 0.9 Nyquist and suppresses everything above Nyquist by >= 80 dB (test/audio.test.ts measures it),
// synchronously, at a few ms per second of audio.
//
// For a rational ratio to/from = L/M (reduced) there are only L distinct fractional positions, so the filter is
// tabulated once per phase (L x taps). Ratios with L > 4096 (odd rates) use a 4096-phase table with linear
// interpolation between neighbouring phases (error far below the stop-band level). The table is bounded too
// (MAX_TABLE_ENTRIES): a steep downsampling ratio (384 kHz -> 16 kHz: ~2400 taps) uses fewer interpolated phases, which
// costs nothing there because its filter is correspondingly smooth (narrow band) between phases. Output lengths are
// checked before allocating (MAX_OUTPUT_SAMPLES), so no rate pair ends in a raw RangeError.

export interface ResampleOptions {
  /** pass-band edge as a fraction of the lower Nyquist frequency (default 0.9) */
  passband?: number;
  /** stop-band edge as a fraction of the lower Nyquist frequency (default 1.0: nothing above Nyquist aliases) */
  stopband?: number;
  /** stop-band attenuation in dB (default 80) */
  attenuationDb?: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for the betas used here). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

const MAX_EXACT_PHASES = 4096;
/** filter table bound: 2^21 doubles (16 MiB) per converter */
const MAX_TABLE_ENTRIES = 2 ** 21;
/** the longest output one call produces (2^30 samples, 4 GiB as f32; callers bound clips far below this) */
export const MAX_OUTPUT_SAMPLES = 2 ** 30;
/** any rate beyond this is a damaged header, not audio (the clip paths check the narrower 1 kHz - 384 kHz first) */
const MAX_RATE = 2 ** 24;

/** A converter for one (from, to) pair; reusable and synchronous. */
export class Resampler {
  readonly from: number;
  readonly to: number;
  /** taps per output sample (2 * halfTaps) */
  readonly taps: number;
  private readonly up: number; // L
  private readonly down: number; // M
  private readonly halfTaps: number; // K
  private readonly phases: number;
  private readonly exact: boolean;
  private readonly table: Float64Array; // [phases (+1 when interpolated)][taps]

  constructor(from: number, to: number, opts: ResampleOptions = {}) {
    if (!(from > 0 && to > 0 && Number.isInteger(from) && Number.isInteger(to))) throw new Error(`resample: rates must be positive integers (got ${from} -> ${to})`);
    if (from > MAX_RATE || to > MAX_RATE || Math.max(from / to, to / from) > 1024) {
      throw new Error(`resample: ${from} Hz -> ${to} Hz is outside what the resampler accepts (rates up to ${MAX_RATE} Hz, ratios up to 1024)`);
    }
    const passband = opts.passband ?? 0.9;
    const stopband = opts.stopband ?? 1.0;
    const atten = opts.attenuationDb ?? 80;
    if (!(passband > 0 && passband < stopband && stopband <= 1.2)) throw new Error(`resample: need 0 < passband < stopband (got ${passband}, ${stopband})`);
    this.from = from;
    this.to = to;
    const g = gcd(from, to);
    this.up = to / g;
    this.down = from / g;
    const nyq = Math.min(from, to) / 2;
    // cutoff and transition width in cycles per input sample
    const fc = ((passband + stopband) / 2) * nyq / from;
    const df = ((stopband - passband) * nyq) / from;
    const beta = atten > 50 ? 0.1102 * (atten - 8.7) : atten > 21 ? 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) : 0;
    const order = Math.ceil((atten - 7.95) / (2.285 * 2 * Math.PI * df)); // Kaiser's estimate of the filter length
    const halfWidth = order / 2; // W, in input samples
    const K = Math.ceil(halfWidth);
    this.halfTaps = K;
    this.taps = 2 * K;
    const maxPhases = Math.max(64, Math.min(MAX_EXACT_PHASES, Math.floor(MAX_TABLE_ENTRIES / this.taps) - 1));
    this.exact = this.up <= maxPhases;
    this.phases = this.exact ? this.up : maxPhases;
    const rows = this.exact ? this.phases : this.phases + 1;
    const i0beta = besselI0(beta);
    const h = (tau: number): number => {
      const r = tau / halfWidth;
      if (r <= -1 || r >= 1) return 0;
      const x = 2 * fc * tau;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      return 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0beta);
    };
    // row p, tap j: the weight of x[i0 - K + 1 + j] for an output at t = i0 + p / phases
    this.table = new Float64Array(rows * this.taps);
    for (let p = 0; p < rows; p++) {
      const frac = p / this.phases;
      for (let j = 0; j < this.taps; j++) this.table[p * this.taps + j] = h(K - 1 - j + frac);
    }
  }

  /** Number of output samples for n input samples: ceil(n * to / from). */
  outputLength(n: number): number {
    return Math.ceil((n * this.up) / this.down);
  }

  process(x: Float32Array): Float32Array {
    if (this.from === this.to) return Float32Array.from(x);
    const n = x.length;
    const length = this.outputLength(n);
    if (length > MAX_OUTPUT_SAMPLES) throw new Error(`resample: ${n} samples at ${this.from} Hz would become ${length} at ${this.to} Hz, over the limit of ${MAX_OUTPUT_SAMPLES}`);
    const out = new Float32Array(length);
    const { taps, halfTaps: K, up: L, down: M, table } = this;
    for (let o = 0; o < out.length; o++) {
      // t = o * M / L = i0 + rem / L, exactly, in integers
      const num = o * M;
      const i0 = Math.floor(num / L);
      const rem = num - i0 * L;
      let row: number;
      let w = 0; // interpolation weight toward row + 1 (inexact mode only)
      if (this.exact) row = rem * taps;
      else {
        const pos = (rem / L) * this.phases;
        const p = Math.floor(pos);
        w = pos - p;
        row = p * taps;
      }
      const first = i0 - K + 1;
      const jLo = Math.max(0, -first);
      const jHi = Math.min(taps, n - first);
      let acc = 0;
      if (w === 0) {
        for (let j = jLo; j < jHi; j++) acc += table[row + j] * x[first + j];
      } else {
        const next = row + taps;
        for (let j = jLo; j < jHi; j++) acc += (table[row + j] + w * (table[next + j] - table[row + j])) * x[first + j];
      }
      out[o] = acc;
    }
    return out;
  }
}

const cache = new Map<string, Resampler>();

/** Resample a mono clip from `from` Hz to `to` Hz (converters are cached per rate pair and options). */
export function resample(x: Float32Array, from: number, to: number, opts: ResampleOptions = {}): Float32Array {
  if (from === to) return x;
  const key = `${from}:${to}:${opts.passband ?? ''}:${opts.stopband ?? ''}:${opts.attenuationDb ?? ''}`;
  let r = cache.get(key);
  if (!r) {
    if (cache.size >= 16) cache.delete(cache.keys().next().value as string);
    r = new Resampler(from, to, opts);
    cache.set(key, r);
  }
  return r.process(x);
}
