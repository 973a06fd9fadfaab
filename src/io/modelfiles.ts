// A Hugging Face model folder given as named files (browsers: the File objects of <input webkitdirectory> or a drop;
// anything with a Blob per file name). The same choices as the Node edge's openModelDir: config.json required,
// preprocessor_config.json optional (defaults), weights preferred in transformers' order. Only headers are read.
import { type ByteReader, type TensorSource, blobReader, openSharded, parseShardIndex } from './source.js';
import { readSafetensors } from './safetensors.js';
import { readPytorch } from './pytorch.js';
import { configObject, type ModelConfigBase } from './config.js';
import { familyOf, parseModelConfig } from '../model/registry.js';
import type { AudioPreprocessor } from '../model/family.js';

/** weight files in the order transformers prefers them */
export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'] as const;

/** The weights file to open among a folder's file names, or an error that says what was there instead. */
export function pickWeightsFile(names: readonly string[], folder: string): (typeof WEIGHT_FILES)[number] {
  const found = WEIGHT_FILES.find((f) => names.includes(f));
  if (found) return found;
  const other = names.find((n) => /^(tf_model\.h5|flax_model\.msgpack|.*\.ckpt|.*\.onnx)$/.test(n));
  const hint = other ? ` ${other} is not supported: convert it to safetensors or pytorch_model.bin (transformers: from_pretrained(..., from_tf/from_flax=True) then save_pretrained)` : '';
  throw new Error(`${folder}: no weights found (looked for ${WEIGHT_FILES.join(', ')}; the folder has: ${names.slice(0, 20).join(', ') || 'nothing'}).${hint}`);
}

/** A safetensors or PyTorch file, recognised by its first bytes. */
export async function readTensorFile(reader: ByteReader, fileName: string): Promise<TensorSource> {
  const head = await reader.read(0, Math.min(reader.size, 9));
  // a safetensors file starts with its header length (u64 LE) whose low byte may well be 0x80 (lengths are padded
  // to multiples of 8), so a leading 0x80 means a bare pickle only when the JSON header's '{' is not at byte 8
  const isSafetensors = head.length === 9 && head[8] === 0x7b;
  const isPytorch = (head[0] === 0x50 && head[1] === 0x4b) || (head[0] === 0x80 && !isSafetensors);
  return isPytorch ? readPytorch(reader, fileName) : readSafetensors(reader, fileName);
}

export interface ModelFiles {
  config: ModelConfigBase;
  /** the family's input preparation, from preprocessor_config.json (defaults when absent) */
  preprocessor: AudioPreprocessor;
  preprocessorFound: boolean;
  weightsFile: string;
  weights: TensorSource;
}

/** Opens a model folder from its files: a Map or list of [file name, Blob] (paths are reduced to base names). */
export async function openModelFiles(files: Map<string, Blob> | Iterable<readonly [string, Blob]>, folder = 'model folder'): Promise<ModelFiles> {
  const byName = new Map<string, Blob>();
  for (const [name, blob] of files) byName.set(name.split(/[\\/]/).pop()!, blob);
  const text = async (name: string) => byName.get(name)!.text();
  if (!byName.has('config.json')) throw new Error(`${folder}: no config.json (a Hugging Face model folder needs one)`);
  const config = parseModelConfig(await text('config.json'), `${folder}/config.json`);
  const preprocessorFound = byName.has('preprocessor_config.json');
  const ppFile = `${folder}/preprocessor_config.json`;
  const preprocessor = familyOf(config).parsePreprocessor(configObject(preprocessorFound ? await text('preprocessor_config.json') : {}, ppFile), ppFile, config);
  const weightsFile = pickWeightsFile([...byName.keys()], folder);
  let weights: TensorSource;
  if (weightsFile.endsWith('.index.json')) {
    const index = parseShardIndex(await text(weightsFile), `${folder}/${weightsFile}`);
    weights = await openSharded(index, `${folder}/${weightsFile}`, async (shard) => {
      const blob = byName.get(shard);
      if (!blob) throw new Error(`${folder}/${weightsFile}: shard ${shard} is listed in weight_map but is not among the files`);
      return readTensorFile(blobReader(blob), `${folder}/${shard}`);
    });
  } else {
    weights = await readTensorFile(blobReader(byName.get(weightsFile)!), `${folder}/${weightsFile}`);
  }
  return { config, preprocessor, preprocessorFound, weightsFile, weights };
}
