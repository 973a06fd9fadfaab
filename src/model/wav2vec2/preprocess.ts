// Input preparation of the raw-waveform families (Wav2Vec2FeatureExtractor, used by wav2vec2, HuBERT, WavLM and
// data2vec-audio checkpoints): each clip normalised to zero mean and unit variance over its own samples when
// do_normalize is set, right-padded with padding_value to the longest clip, with a sample mask (1 = real).
import { parsePreprocessorConfig, preprocessorConfigJson, type PreprocessorConfig } from '../../io/config.js';
import { zeroMeanUnitVar } from '../../audio/normalize.js';
import type { AudioPreprocessor } from '../family.js';

export class WaveformPreprocessor implements AudioPreprocessor {
  readonly config: PreprocessorConfig;
  readonly minSamples: number;

  constructor(config: PreprocessorConfig, minSamples: number) {
    this.config = config;
    this.minSamples = minSamples;
  }

  static parse(json: Record<string, unknown>, file: string, minSamples: number): WaveformPreprocessor {
    return new WaveformPreprocessor(parsePreprocessorConfig(json, file), minSamples);
  }

  get samplingRate(): number {
    return this.config.sampling_rate;
  }

  prepare(clips: readonly Float32Array[]): { values: Float32Array; shape: number[]; lengths: number[]; mask: Int32Array } {
    const B = clips.length;
    if (B === 0) throw new Error('preprocess: empty batch');
    let S = 0;
    for (const c of clips) S = Math.max(S, c.length);
    const values = new Float32Array(B * S);
    if (this.config.padding_value !== 0) values.fill(this.config.padding_value);
    const mask = new Int32Array(B * S);
    const lengths: number[] = [];
    for (let b = 0; b < B; b++) {
      const c = this.config.do_normalize ? zeroMeanUnitVar(clips[b]) : clips[b];
      values.set(c, b * S);
      mask.fill(1, b * S, b * S + c.length);
      lengths.push(c.length);
    }
    return { values, shape: [B, S], lengths, mask };
  }

  json(): Record<string, unknown> {
    return preprocessorConfigJson(this.config);
  }
}
