// The audio side in one import: decode (WAV/FLAC/MP3/Ogg Vorbis), mix to mono, resample, validate, normalize, augment.
export { AudioError } from './errors.js';
export { decodeWav, encodeWav, isWav, type DecodedAudio, type WavEncodeOptions } from './wav.js';
export { decodeAudio, mixToMono, sniffFormat, type AudioFormat } from './decode.js';
export { resample, Resampler, type ResampleOptions } from './resample.js';
export { zeroMeanUnitVar, NORMALIZE_EPS } from './normalize.js';
export { validateSamples, WAV2VEC2_MIN_SAMPLES } from './validate.js';
export { prepareAudio, MODEL_SAMPLE_RATE, type PrepareOptions, type PreparedAudio } from './prepare.js';
export { augment, augmentationEnabled, addNoise, applyGain, speedPerturb, type AugmentOptions } from './augment.js';
