// Input normalization of Hugging Face's Wav2Vec2FeatureExtractor (do_normalize=True, zero_mean_unit_var_norm):
// x' = (x - mean) / sqrt(var + 1e-7) with mean and (population) variance over the clip's real samples only; padding
// (samples at index >= length) is set to the padding value 0. Statistics are accumulated in float64.

export const NORMALIZE_EPS = 1e-7;

/** Normalize x[0:length] to zero mean and unit variance; the returned array has x's length, padding zeroed. */
export function zeroMeanUnitVar(x: Float32Array, length = x.length): Float32Array {
  const n = Math.min(length, x.length);
  const out = new Float32Array(x.length);
  if (n === 0) return out;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i] - mean;
    v += d * d;
  }
  const inv = 1 / Math.sqrt(v / n + NORMALIZE_EPS);
  for (let i = 0; i < n; i++) out[i] = (x[i] - mean) * inv;
  return out;
}
