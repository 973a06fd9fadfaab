// Checks that a decoded clip can go into the model, with errors that name the file. The minimum length is the model's
// receptive field: wav2vec2's feature encoder needs at least 400 samples (25 ms at 16 kHz) to produce one frame.
// Sample rates and lengths come from the file and are hostile until checked: a WAV may declare 1 Hz (a 40 KB file
// would become 10 minutes of 16 kHz audio) or 4 GHz (the resampler's filter would take gigabytes).
import { AudioError } from './errors.js';

/** wav2vec2's receptive field in samples (conv kernels 10,3,3,3,3,2,2 with strides 5,2,2,2,2,2,2) */
export const WAV2VEC2_MIN_SAMPLES = 400;

/** the sample rates accepted from a file (and as a target): telephone-band 1 kHz up to 384 kHz studio audio */
export const MIN_SAMPLE_RATE = 1000;
export const MAX_SAMPLE_RATE = 384000;

/**
 * Default bound on the decoded length, summed over channels: 2^27 samples (512 MiB as f32), e.g. 23 minutes of 48 kHz
 * stereo or 2.3 hours of 16 kHz mono. Longer clips need `maxSamples` raised explicitly.
 */
export const MAX_DECODED_SAMPLES = 2 ** 27;

/** Throws AudioError unless `rate` is an integer in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]. `what` names the field. */
export function checkSampleRate(rate: number, name: string, what = 'sample rate'): void {
  if (!(Number.isInteger(rate) && rate >= MIN_SAMPLE_RATE && rate <= MAX_SAMPLE_RATE)) {
    throw new AudioError(name, `${what} ${rate} Hz is outside the supported range ${MIN_SAMPLE_RATE}-${MAX_SAMPLE_RATE} Hz (damaged header?)`);
  }
}

/** Throws AudioError when `samples` (summed over channels) exceeds `limit`; `what` says what holds them. */
export function checkSampleCount(samples: number, limit: number, name: string, what: string): void {
  if (samples > limit) {
    throw new AudioError(name, `${what} holds ${samples} samples, over the limit of ${limit} (raise maxSamples for longer clips; a damaged header can also claim this)`);
  }
}

/** Throws AudioError if the clip is empty, holds NaN/Inf, or is shorter than minSamples (at sampleRate). */
export function validateSamples(x: Float32Array, name: string, opts: { minSamples?: number; sampleRate?: number } = {}): void {
  if (x.length === 0) throw new AudioError(name, 'no audio samples (empty clip)');
  let bad = 0;
  let first = -1;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) throw new AudioError(name, `${bad} non-finite sample(s) (NaN/Inf), the first at index ${first}`);
  const min = opts.minSamples ?? 0;
  if (x.length < min) {
    const at = opts.sampleRate ? ` at ${opts.sampleRate} Hz (${((x.length / opts.sampleRate) * 1000).toFixed(1)} ms)` : '';
    throw new AudioError(name, `too short: ${x.length} samples${at}, the minimum is ${min}`);
  }
}
