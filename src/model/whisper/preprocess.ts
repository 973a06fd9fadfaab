// Whisper's input preparation for the registry: clips -> log-mel input_features [B, feature_size, frames] with the
// feature extractor (features.ts), every clip padded or cut to chunk_length seconds, no attention mask (as
// WhisperFeatureExtractor returns by default and WhisperForAudioClassification takes).
import type { AudioPreprocessor } from '../family.js';
import { WhisperFeatureExtractor, parseWhisperFeatureExtractorConfig } from './features.js';

export class WhisperPreprocessor implements AudioPreprocessor {
  readonly extractor: WhisperFeatureExtractor;
  /** any clip works (it is padded to 30 s); an empty one is all padding */
  readonly minSamples = 1;

  constructor(extractor: WhisperFeatureExtractor) {
    this.extractor = extractor;
  }

  static parse(json: Record<string, unknown>, file: string): WhisperPreprocessor {
    return new WhisperPreprocessor(new WhisperFeatureExtractor(parseWhisperFeatureExtractorConfig(json, file)));
  }

  get samplingRate(): number {
    return this.extractor.config.sampling_rate;
  }

  prepare(clips: readonly Float32Array[]): { values: Float32Array; shape: number[]; lengths: number[]; mask: null } {
    if (clips.length === 0) throw new Error('preprocess: empty batch');
    const { data, shape } = this.extractor.batch(clips);
    return { values: data, shape: [...shape], lengths: clips.map((c) => c.length), mask: null };
  }

  /** preprocessor_config.json as WhisperFeatureExtractor.save_pretrained writes it (unknown fields kept). */
  json(): Record<string, unknown> {
    const c = this.extractor.config;
    return {
      ...c.raw,
      feature_extractor_type: c.feature_extractor_type,
      feature_size: c.feature_size,
      sampling_rate: c.sampling_rate,
      hop_length: c.hop_length,
      chunk_length: c.chunk_length,
      n_fft: c.n_fft,
      padding_value: c.padding_value,
      padding_side: c.padding_side,
      return_attention_mask: c.return_attention_mask,
      n_samples: c.n_samples,
      nb_max_frames: Math.floor(c.n_samples / c.hop_length),
    };
  }
}
