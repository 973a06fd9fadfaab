// Bytes of any supported file -> the model's input clip: decode, mix to mono, check, resample to 16 kHz, check the
// length against the receptive field, optionally normalize. The same path serves Node (src/node/audio-file.ts reads
// the file) and browsers (bytes from fetch() or a File).
import { decodeAudio, mixToMono } from './decode.js';
import { zeroMeanUnitVar } from './normalize.js';
import { resample, type ResampleOptions } from './resample.js';
import { MAX_DECODED_SAMPLES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, checkSampleCount, validateSamples, WAV2VEC2_MIN_SAMPLES } from './validate.js';

export const MODEL_SAMPLE_RATE = 16000;

export interface PrepareOptions {
  /** target rate (default 16000) */
  sampleRate?: number;
  /** minimum length in samples at the target rate (default 400, wav2vec2's receptive field) */
  minSamples?: number;
  /** zero-mean unit-variance normalization (default false: normalization is a separate, per-batch step) */
  normalize?: boolean;
  resample?: ResampleOptions;
  /** bound on the decoded samples (summed over channels) and on the resampled clip (default MAX_DECODED_SAMPLES) */
  maxSamples?: number;
}

export interface PreparedAudio {
  /** mono samples at `sampleRate` */
  samples: Float32Array;
  sampleRate: number;
  /** the file's own rate, channel count and format */
  sourceRate: number;
  sourceChannels: number;
  format: string;
}

export async function prepareAudio(bytes: Uint8Array, name: string, opts: PrepareOptions = {}): Promise<PreparedAudio> {
  const rate = opts.sampleRate ?? MODEL_SAMPLE_RATE;
  if (!(Number.isInteger(rate) && rate >= MIN_SAMPLE_RATE && rate <= MAX_SAMPLE_RATE)) {
    // the target comes from preprocessor_config.json or an option, not from this file
    throw new Error(`${name}: target sample rate ${rate} Hz is outside the supported range ${MIN_SAMPLE_RATE}-${MAX_SAMPLE_RATE} Hz`);
  }
  const maxSamples = opts.maxSamples ?? MAX_DECODED_SAMPLES;
  const decoded = await decodeAudio(bytes, name, { maxSamples });
  const mono = mixToMono(decoded.channels);
  validateSamples(mono, name); // NaN/Inf and empty before resampling smears them
  // both rates are in range, so the ratio is at most 384; still, bound the output before the resampler allocates it
  checkSampleCount(Math.ceil((mono.length * rate) / decoded.sampleRate), maxSamples, name, `resampled to ${rate} Hz, the clip`);
  let samples = resample(mono, decoded.sampleRate, rate, opts.resample);
  validateSamples(samples, name, { minSamples: opts.minSamples ?? WAV2VEC2_MIN_SAMPLES, sampleRate: rate });
  if (opts.normalize) samples = zeroMeanUnitVar(samples);
  return { samples, sampleRate: rate, sourceRate: decoded.sampleRate, sourceChannels: decoded.channels.length, format: decoded.format };
}
