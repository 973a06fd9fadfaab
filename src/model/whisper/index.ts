// The Whisper family (model_type "whisper": openai/whisper-tiny .. large-v3 and their fine-tunes, as
// WhisperForAudioClassification or from a seq2seq checkpoint's encoder), found by the registry. Only the encoder is
// used; its parameters live under `encoder.` and its input is the log-mel spectrogram of 30 s (features.ts).
import type { ModelFamily } from '../family.js';
import { parseWhisperConfig, WHISPER_CONFIG_FIELDS, type WhisperConfig } from './config.js';
import { whisperEncoderShapes, whisperInitRule, whisperKeyRules, whisperRoles } from './params.js';
import { WhisperEncoder } from './encoder.js';
import { WhisperPreprocessor } from './preprocess.js';

export type { WhisperConfig };

export const whisperFamily: ModelFamily<WhisperConfig> = {
  name: 'whisper',
  modelTypes: ['whisper'],
  classNames: { base: 'WhisperEncoder', sequenceClassification: 'WhisperForAudioClassification' },
  parseConfig: parseWhisperConfig,
  configFields: WHISPER_CONFIG_FIELDS,
  encoderParameterShapes: whisperEncoderShapes,
  keyRules: whisperKeyRules,
  initRule: whisperInitRule,
  ...whisperRoles,
  createEncoder: (rt, c, params) => new WhisperEncoder(rt, c, params),
  parsePreprocessor: (json, file) => WhisperPreprocessor.parse(json, file),
};
