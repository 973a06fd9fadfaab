// The HuBERT family (model_type "hubert": hubert-base/large/xlarge, distilhubert, superb/hubert-large-superb-er,
// m3hrdadfi/hubert-base-persian-speech-emotion-recognition), found by the registry. Parameters live under
// `hubert.`. HuBERT's encoder is wav2vec2's (HF's modeling_hubert.py copies it) with one difference handled here:
// feat_proj_layer_norm (default true) decides whether the feature projection has a LayerNorm (distilhubert: false),
// and HuBERT's _init_weights differs in two rules (conv biases zero, the projection a plain nn.Linear).
import type { ModelFamily } from '../family.js';
import { ConfigReader } from '../../io/config.js';
import { defaultRule } from '../init.js';
import { parseWav2Vec2StyleConfig, WAV2VEC2_CONFIG_FIELDS, WAV2VEC2_DEFAULTS, type Wav2Vec2Config } from '../wav2vec2/config.js';
import { wav2vec2StyleShapes, wav2vec2StyleKeyRules, wav2vec2StyleInitRule } from '../wav2vec2/params.js';
import { Wav2Vec2Encoder, receptiveField } from '../wav2vec2/encoder.js';
import { WaveformPreprocessor } from '../wav2vec2/preprocess.js';
import { wav2vec2StyleRoles } from '../wav2vec2/index.js';

const PREFIX = 'hubert.';

export interface HubertConfig extends Wav2Vec2Config {
  /** LayerNorm before the feature projection (HubertConfig default true; distilhubert false) */
  feat_proj_layer_norm: boolean;
}

/** HubertConfig (transformers v4.30) has wav2vec2's defaults for every field both have. */
export function parseHubertConfig(json: Record<string, unknown>, file: string): HubertConfig {
  const r = new ConfigReader(json, file);
  return { ...parseWav2Vec2StyleConfig(r, 'hubert', WAV2VEC2_DEFAULTS), feat_proj_layer_norm: r.bool('feat_proj_layer_norm', true) };
}

export const hubertFamily: ModelFamily<HubertConfig> = {
  name: 'hubert',
  modelTypes: ['hubert'],
  classNames: { base: 'HubertModel', sequenceClassification: 'HubertForSequenceClassification' },
  parseConfig: parseHubertConfig,
  configFields: [...WAV2VEC2_CONFIG_FIELDS, 'feat_proj_layer_norm'],
  encoderParameterShapes: (c) => wav2vec2StyleShapes(c, PREFIX, { featureProjectionLayerNorm: c.feat_proj_layer_norm }),
  keyRules: (c) => wav2vec2StyleKeyRules(c, PREFIX),
  initRule: (name, shape, c) => {
    // HubertPreTrainedModel._init_weights: every nn.Linear / nn.Conv1d bias zero, the projection is a plain Linear
    if (name.startsWith(`${PREFIX}feature_extractor.`) && name.endsWith('.conv.bias')) return { kind: 'fill', value: 0 };
    if (name.startsWith(`${PREFIX}feature_projection.projection.`)) return defaultRule(name, c.initializer_range);
    return wav2vec2StyleInitRule(name, shape, c, PREFIX);
  },
  ...wav2vec2StyleRoles(PREFIX),
  createEncoder: (rt, c, params) => new Wav2Vec2Encoder(rt, c, params, PREFIX, { featureProjectionLayerNorm: c.feat_proj_layer_norm }),
  parsePreprocessor: (json, file, c) => WaveformPreprocessor.parse(json, file, receptiveField(c)),
};
