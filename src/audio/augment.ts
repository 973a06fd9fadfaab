// Waveform augmentation for training, all off by default and all driven by a caller-supplied seeded Rng (one per clip
// and epoch, see src/data/batch.ts) so a run repeats exactly:
//   speed:  Kaldi-style speed perturbation: resample by a factor (0.9 / 1.1 ...), which changes tempo and pitch
//           together; band-limited (resample.ts), so speeding up does not alias.
//   gain:   a random gain in dB. Note: with wav2vec2's per-clip zero-mean unit-variance normalization a pure gain is
//           undone; it matters only when normalization is off or before noise at a fixed absolute level.
//   noise:  white Gaussian noise at a random signal-to-noise ratio (dB) relative to the clip's own power.
import { resample } from './resample.js';
import { randNormal, type Rng } from '../data/random.js';

export interface AugmentOptions {
  /** speed factors to pick from uniformly (e.g. [0.9, 1.0, 1.1]); null/empty: off */
  speeds?: number[] | null;
  /** probability that speed perturbation is applied (default 1 when speeds are given) */
  speedProb?: number;
  /** gain range in dB, e.g. [-6, 6]; null: off */
  gainDb?: [number, number] | null;
  gainProb?: number;
  /** SNR range in dB, e.g. [10, 30]; null: off */
  noiseSnrDb?: [number, number] | null;
  noiseProb?: number;
}

export function augmentationEnabled(opts: AugmentOptions | null | undefined): boolean {
  return !!opts && ((opts.speeds?.length ?? 0) > 0 || !!opts.gainDb || !!opts.noiseSnrDb);
}

/** Speed perturbation: factor > 1 is faster (shorter). Exact for factors whose rate factor*sampleRate is an integer. */
export function speedPerturb(x: Float32Array, factor: number, sampleRate = 16000): Float32Array {
  if (!(factor > 0)) throw new Error(`speedPerturb: factor must be > 0 (got ${factor})`);
  if (factor === 1) return x;
  // playing samples recorded at factor*rate back at rate: resample factor*rate -> rate
  return resample(x, Math.round(sampleRate * factor), sampleRate);
}

export function applyGain(x: Float32Array, db: number): Float32Array {
  const g = 10 ** (db / 20);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * g;
  return out;
}

/** Add white Gaussian noise so that signal power / noise power = 10^(snrDb/10). */
export function addNoise(x: Float32Array, snrDb: number, rng: Rng): Float32Array {
  let p = 0;
  for (let i = 0; i < x.length; i++) p += x[i] * x[i];
  p /= Math.max(1, x.length);
  const sigma = Math.sqrt(p / 10 ** (snrDb / 10));
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] + sigma * randNormal(rng);
  return out;
}

const uniformIn = (rng: Rng, [lo, hi]: [number, number]) => lo + (hi - lo) * rng();

/** Apply the enabled augmentations in the order speed, gain, noise. Returns x itself when nothing is enabled. */
export function augment(x: Float32Array, rng: Rng, opts: AugmentOptions | null | undefined, sampleRate = 16000): Float32Array {
  if (!opts || !augmentationEnabled(opts)) return x;
  let y = x;
  if (opts.speeds && opts.speeds.length > 0 && rng() < (opts.speedProb ?? 1)) {
    y = speedPerturb(y, opts.speeds[Math.floor(rng() * opts.speeds.length)], sampleRate);
  }
  if (opts.gainDb && rng() < (opts.gainProb ?? 1)) y = applyGain(y, uniformIn(rng, opts.gainDb));
  if (opts.noiseSnrDb && rng() < (opts.noiseProb ?? 1)) y = addNoise(y, uniformIn(rng, opts.noiseSnrDb), rng);
  return y;
}
