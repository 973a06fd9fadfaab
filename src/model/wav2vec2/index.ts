// The wav2vec2 family (model_type "wav2vec2": XLSR-53/300M/1B, large-lv60, base, and speech-emotion checkpoints
// fine-tuned from them), found by the registry. Parameters live under `wav2vec2.`.
import type { ModelFamily } from '../family.js';
import { ConfigReader } from '../../io/config.js';
import { parseWav2Vec2StyleConfig, WAV2VEC2_CONFIG_FIELDS, type Wav2Vec2Config } from './config.js';
import { wav2vec2StyleShapes, wav2vec2StyleKeyRules, wav2vec2StyleInitRule } from './params.js';
import { Wav2Vec2Encoder, receptiveField } from './encoder.js';
import { WaveformPreprocessor } from './preprocess.js';

const PREFIX = 'wav2vec2.';

/** Helpers every wav2vec2-style family (HuBERT, WavLM, data2vec-audio) shares: which parameters are what. */
export function wav2vec2StyleRoles(prefix: string) {
  const layerRe = new RegExp(`^${prefix.replace(/\./g, '\\.')}encoder\\.layers\\.(\\d+)\\.`);
  return {
    isFeatureEncoderParameter: (name: string) => name.startsWith(`${prefix}feature_extractor.`),
    layerOf: (name: string) => {
      const m = name.match(layerRe);
      return m ? Number(m[1]) : null;
    },
    // the stable (pre-LN) layout's final encoder.layer_norm sits above the top layer and trains with it
    isTopParameter: (name: string, c: { do_stable_layer_norm?: boolean }) => !!c.do_stable_layer_norm && name.startsWith(`${prefix}encoder.layer_norm.`),
  };
}

export const wav2vec2Family: ModelFamily<Wav2Vec2Config> = {
  name: 'wav2vec2',
  modelTypes: ['wav2vec2'],
  classNames: { base: 'Wav2Vec2Model', sequenceClassification: 'Wav2Vec2ForSequenceClassification' },
  parseConfig: (json, file) => parseWav2Vec2StyleConfig(new ConfigReader(json, file), 'wav2vec2'),
  configFields: WAV2VEC2_CONFIG_FIELDS,
  encoderParameterShapes: (c) => wav2vec2StyleShapes(c, PREFIX),
  keyRules: (c) => wav2vec2StyleKeyRules(c, PREFIX),
  initRule: (name, shape, c) => wav2vec2StyleInitRule(name, shape, c, PREFIX),
  ...wav2vec2StyleRoles(PREFIX),
  createEncoder: (rt, c, params) => new Wav2Vec2Encoder(rt, c, params, PREFIX),
  parsePreprocessor: (json, file, c) => WaveformPreprocessor.parse(json, file, receptiveField(c)),
};

export { receptiveField };
