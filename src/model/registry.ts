// The model registry: config.json's model_type -> the family that parses, builds and runs it (as transformers.js
// maps model_type to classes). Adding a family = its folder under src/model/ + one line here.
import { ConfigReader, configObject, type ModelConfigBase } from '../io/config.js';
import type { ModelFamily } from './family.js';
import { wav2vec2Family } from './wav2vec2/index.js';
import { hubertFamily } from './hubert/index.js';
import { data2vecAudioFamily } from './data2vec_audio/index.js';
import { whisperFamily } from './whisper/index.js';
import { wavlmFamily } from './wavlm/index.js';

/** A family as the rest of the engine uses it: its config typed as the common base. A family only ever receives
 * configs its own parseConfig made (the classifier keeps the pair together). */
export type AnyFamily = ModelFamily<ModelConfigBase>;

/** Every family the engine runs, one line each. */
const FAMILIES: readonly AnyFamily[] = [
  wav2vec2Family,
  hubertFamily,
  data2vecAudioFamily,
  whisperFamily,
  wavlmFamily,
];

export function registeredFamilies(): readonly AnyFamily[] {
  return FAMILIES;
}

/** The family for a model_type, or an error that lists what is supported. */
export function familyForModelType(modelType: string, file = 'config.json'): AnyFamily {
  const fam = registeredFamilies().find((f) => f.modelTypes.includes(modelType));
  if (!fam) {
    const known = registeredFamilies().flatMap((f) => f.modelTypes).map((t) => JSON.stringify(t)).join(', ');
    throw new Error(`${file}: "model_type" is ${JSON.stringify(modelType)}; supported: ${known}`);
  }
  return fam;
}

/** The family of a parsed config. */
export function familyOf(config: Pick<ModelConfigBase, 'model_type'>): AnyFamily {
  return familyForModelType(config.model_type);
}

/**
 * Parse config.json (text or object) with its family's defaults. A config without model_type is read as wav2vec2
 * (old checkpoints saved before transformers wrote the field).
 */
export function parseModelConfig(input: unknown, file = 'config.json'): ModelConfigBase {
  const json = configObject(input, file);
  const r = new ConfigReader(json, file);
  const modelType = r.has('model_type') ? json.model_type : 'wav2vec2';
  if (typeof modelType !== 'string') r.fail('model_type', 'must be a string');
  return familyForModelType(modelType as string, file).parseConfig(json, file);
}
