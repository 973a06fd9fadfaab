// SpecAugment masks for wav2vec2 fine-tuning, computed on the CPU the way Hugging Face's _compute_mask_indices
// (modeling_wav2vec2.py) does, but from a seeded generator so a run can be replayed:
//   num spans   = int(mask_prob * length / mask_length + eps), eps ~ U[0,1) drawn once per call (probabilistic
//                 rounding), at least min_masks, at most what fits in the sequence and in length - (mask_length - 1)
//   span starts = a uniform sample without replacement from [0, length - mask_length]; items with fewer spans than
//                 the longest are padded with repeats of their first start (the same span twice)
//   each span covers [start, start + mask_length), clipped to the padded sequence length.
// The result is an i32 [B, L] mask (1 = masked) ready to upload: time masks go to replaceRows (rows replaced by
// masked_spec_embed), feature masks ([B, C]) to maskColumns.

/** A seeded uniform [0, 1) generator: the project's one mulberry32 (src/data/random.ts). */
export { mulberry32 as seededRandom } from '../data/random.js';

export interface MaskOptions {
  /** upper bound on the masked fraction of each item (overlapping spans make the real fraction smaller) */
  maskProb: number;
  /** span length */
  maskLength: number;
  /** minimum number of spans per item */
  minMasks?: number;
  /** real (unpadded) length per item; default: every item spans the whole axis */
  lengths?: readonly number[] | null;
  /** uniform [0, 1) source */
  random: () => number;
}

/**
 * HF _compute_mask_indices for shape [batch, length]: returns an i32 [batch * length] mask, 1 = masked.
 * Throws, as HF does, when mask_length < 1 or mask_length > length.
 */
export function computeMaskIndices(batch: number, length: number, opts: MaskOptions): Int32Array {
  const { maskProb, maskLength, random } = opts;
  const minMasks = opts.minMasks ?? 0;
  if (!Number.isInteger(maskLength) || maskLength < 1) throw new Error(`SpecAugment: mask_length has to be a positive integer, got ${maskLength}`);
  if (maskLength > length) {
    throw new Error(`SpecAugment: mask_length (${maskLength}) has to be smaller than the sequence length (${length})`);
  }
  const lengths = opts.lengths ?? new Array<number>(batch).fill(length);
  if (lengths.length !== batch) throw new Error(`SpecAugment: ${lengths.length} lengths for a batch of ${batch}`);
  const mask = new Int32Array(batch * length);

  // one epsilon per call, shared by every item (as in HF)
  const epsilon = random();
  const numSpans = (inputLength: number): number => {
    let n = Math.trunc((maskProb * inputLength) / maskLength + epsilon);
    n = Math.max(n, minMasks);
    if (n * maskLength > length) n = Math.floor(length / maskLength);
    if (inputLength - (maskLength - 1) < n) n = Math.max(inputLength - (maskLength - 1), 0);
    return n;
  };

  const maxSpans = numSpans(length);
  if (maxSpans === 0) return mask;

  for (let b = 0; b < batch; b++) {
    const inputLength = lengths[b];
    const n = numSpans(inputLength);
    const candidates = Math.max(inputLength - (maskLength - 1), 0);
    const starts = sampleWithoutReplacement(candidates, n, random);
    // HF pads every item to maxSpans starts with a dummy: its first start, or the last (padding) frame if it has none
    const dummy = starts.length ? starts[0] : length - 1;
    while (starts.length < maxSpans) starts.push(dummy);
    for (const s of starts) {
      for (let o = 0; o < maskLength; o++) mask[b * length + Math.min(s + o, length - 1)] = 1;
    }
  }
  return mask;
}

/** k distinct integers from [0, n), uniformly (partial Fisher-Yates, like numpy's choice(replace=False)). */
function sampleWithoutReplacement(n: number, k: number, random: () => number): number[] {
  if (k > n) throw new Error(`SpecAugment: cannot draw ${k} distinct span starts from ${n} positions`);
  const pool = Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (n - i));
    const t = pool[i];
    pool[i] = pool[j];
    pool[j] = t;
    out.push(pool[i]);
  }
  return out;
}

export interface SpecAugmentConfig {
  mask_time_prob: number;
  mask_time_length: number;
  mask_time_min_masks: number;
  mask_feature_prob: number;
  mask_feature_length: number;
  mask_feature_min_masks: number;
}

export interface SpecAugmentMasks {
  /** i32 [B, T] (1 = replace the frame by masked_spec_embed), or null when time masking is off */
  time: Int32Array | null;
  /** i32 [B, C] (1 = zero the channel in every frame), or null when feature masking is off */
  feature: Int32Array | null;
}

/**
 * Both SpecAugment masks for one training batch, as Wav2Vec2Model._mask_hidden_states draws them: the time mask
 * respects each item's valid frame count (frameLengths), the feature mask spans all channels of every item.
 */
export function specAugmentMasks(
  config: SpecAugmentConfig,
  batch: number,
  frames: number,
  channels: number,
  frameLengths: readonly number[] | null,
  random: () => number,
): SpecAugmentMasks {
  const time =
    config.mask_time_prob > 0
      ? computeMaskIndices(batch, frames, {
          maskProb: config.mask_time_prob,
          maskLength: config.mask_time_length,
          minMasks: config.mask_time_min_masks,
          lengths: frameLengths,
          random,
        })
      : null;
  const feature =
    config.mask_feature_prob > 0
      ? computeMaskIndices(batch, channels, {
          maskProb: config.mask_feature_prob,
          maskLength: config.mask_feature_length,
          minMasks: config.mask_feature_min_masks,
          random,
        })
      : null;
  return { time, feature };
}
