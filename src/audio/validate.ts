// Checks that a decoded clip can go into the model, with errors that name the file. The minimum length is the model's
// receptive field: wav2vec2's feature encoder needs at least 400 samples (25 ms at 16 kHz) to produce one frame.
import { AudioError } from './errors.js';

/** wav2vec2's receptive field in samples (conv kernels 10,3,3,3,3,2,2 with strides 5,2,2,2,2,2,2) */
export const WAV2VEC2_MIN_SAMPLES = 400;

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
