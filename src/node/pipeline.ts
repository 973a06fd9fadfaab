// The Node entry's one-call classifier: the core's audioClassifier (src/pipeline.ts) with what only Node has: a model
// given as a folder path, a training run folder holding model/, or a Hugging Face Hub id (src/node/hub.ts), a Dawn
// runtime by default, and audio given as a file path or file: URL (decoded by the same src/audio path as everything
// else).
//   const clf = await audioClassifier('runs/shemo/model');
//   console.log(await clf('clip.wav', { topK: 3 }));
//   clf.dispose();
import fsp from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { audioClassifier as coreAudioClassifier, type AudioClassifier, type AudioClassifierOptions, type ModelSource } from '../pipeline.js';
import { createNodeRuntime } from './dawn.js';
import { openModelDir } from './modeldir.js';
import { AudioError } from '../audio/errors.js';

export type { AudioClassifier, AudioClassifierOptions, ModelSource };

export interface NodeAudioClassifierOptions extends Omit<AudioClassifierOptions, 'openAudio'> {
  /** Hub models: a branch, tag or commit */
  revision?: string;
}

/** Bytes of an audio file given by path or file: URL (null for http(s) URLs, which the core fetches). */
async function openAudioFile(input: string | URL): Promise<{ bytes: Uint8Array; name: string } | null> {
  const text = String(input);
  if (/^(https?|blob|data):/i.test(text)) return null;
  const file = text.startsWith('file:') ? fileURLToPath(text) : text;
  try {
    return { bytes: new Uint8Array(await fsp.readFile(file)), name: file };
  } catch (e) {
    throw new AudioError(file, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * A classifier from a model folder (config.json + weights), a training run folder, a Hub id, or an opened model. The runtime
 * defaults to a Dawn one (destroyed by dispose()).
 */
export async function audioClassifier(model: string | ModelSource, opts: NodeAudioClassifierOptions = {}): Promise<AudioClassifier> {
  const { revision, ...rest } = opts;
  const runtime = rest.runtime ?? (await createNodeRuntime());
  const own = !rest.runtime;
  try {
    if (typeof model !== 'string') return await withOwnedRuntime(await coreAudioClassifier(model, { ...rest, runtime, openAudio: openAudioFile }), own);
    // a folder, a training run folder (its model/), or a Hub id (org/name[@revision], downloaded into the Hub cache)
    const md = await openModelDir(model, { revision });
    try {
      return withOwnedRuntime(await coreAudioClassifier(md, { ...rest, runtime, openAudio: openAudioFile }), own);
    } finally {
      await md.close();
    }
  } catch (e) {
    if (own) runtime.destroy();
    throw e;
  }
}

/** dispose() also destroys the runtime this wrapper created. */
function withOwnedRuntime(clf: AudioClassifier, own: boolean): AudioClassifier {
  if (!own) return clf;
  const dispose = clf.dispose.bind(clf);
  let done = false;
  return Object.assign(clf, {
    dispose(): void {
      if (done) return;
      done = true;
      dispose();
      clf.model.rt.destroy();
    },
  });
}
