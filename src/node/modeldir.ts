// Node edge for checkpoints: a file-descriptor ByteReader (reads only the requested ranges, so a 1.3 GB checkpoint
// is never in memory whole), opening a Hugging Face model directory (config.json, preprocessor_config.json and the
// weights: model.safetensors, a sharded model.safetensors.index.json, pytorch_model.bin or its sharded index), and
// atomic writes (temp file in the same directory, fsync, rename) for saving a fine-tuned model.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type ByteReader, type TensorSource, openSharded, parseShardIndex } from '../io/source.js';
import { writeSafetensors, type TensorToSave } from '../io/safetensors.js';
import { WEIGHT_FILES, pickWeightsFile, readTensorFile } from '../io/modelfiles.js';
import { type ModelConfigBase, configJsonText, configObject } from '../io/config.js';
import { familyOf, parseModelConfig } from '../model/registry.js';
import type { AudioPreprocessor } from '../model/family.js';
import { resolveModel } from './hub.js';

export class FileByteReader implements ByteReader {
  private constructor(
    private readonly handle: fsp.FileHandle,
    readonly size: number,
    readonly path: string,
  ) {}

  static async open(filePath: string): Promise<FileByteReader> {
    const handle = await fsp.open(filePath, 'r');
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new Error(`${filePath} is not a regular file`);
      return new FileByteReader(handle, st.size, filePath);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`${this.path}: read of ${length} bytes at offset ${offset} is outside the file (${this.size} bytes)`);
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(out, done, length - done, offset + done);
      if (bytesRead === 0) throw new Error(`${this.path}: file ended at ${offset + done} while reading ${length} bytes at ${offset} (changed while open?)`);
      done += bytesRead;
    }
    return out;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** A TensorSource whose files stay open until close(). */
export interface OpenedSource extends TensorSource {
  close(): Promise<void>;
}

/** Opens one checkpoint file, recognised by its content: a PyTorch zip/pickle or safetensors. */
export async function openTensorFile(filePath: string): Promise<OpenedSource> {
  const reader = await FileByteReader.open(filePath);
  try {
    const src = await readTensorFile(reader, filePath);
    return { ...src, close: () => reader.close() };
  } catch (e) {
    await reader.close();
    throw e;
  }
}

/** Opens a sharded checkpoint from its index (model.safetensors.index.json or pytorch_model.bin.index.json). */
export async function openShardedIndex(indexPath: string): Promise<OpenedSource> {
  const index = parseShardIndex(await readTextFile(indexPath), indexPath);
  const dir = path.dirname(indexPath);
  const opened: OpenedSource[] = [];
  const closeAll = async () => {
    await Promise.all(opened.map((o) => o.close()));
  };
  try {
    const src = await openSharded(index, indexPath, async (file) => {
      const shardPath = path.join(dir, file);
      if (!fs.existsSync(shardPath)) throw new Error(`${indexPath}: shard ${file} is listed in weight_map but ${shardPath} does not exist`);
      const o = await openTensorFile(shardPath);
      opened.push(o);
      return o;
    });
    return { ...src, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

export { WEIGHT_FILES };

export interface ModelDir {
  dir: string;
  config: ModelConfigBase;
  /** the family's input preparation, from preprocessor_config.json (defaults when absent) */
  preprocessor: AudioPreprocessor;
  /** false when preprocessor_config.json is absent and defaults are used */
  preprocessorFound: boolean;
  /** the weights file (or index) that was opened */
  weightsFile: string;
  weights: OpenedSource;
  close(): Promise<void>;
}

/** A text file's content; the error names the file (Node's own message may not, e.g. EISDIR). */
export async function readTextFile(file: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * The model folder `dir` names: itself when it holds config.json, or its model/ sub-folder when it is a training run
 * folder (ser train --out). Otherwise an error that says what the folder is and what was expected.
 */
export function modelFolder(dir: string): string {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such folder (expected a model folder with config.json and weights)`);
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder (a model folder holds config.json and the weights; give the folder)`);
  if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
  const inner = path.join(dir, 'model');
  if (fs.existsSync(path.join(inner, 'config.json'))) return inner;
  const isRun = ['run.json', 'checkpoint.safetensors', 'log.jsonl', 'splits.json'].some((f) => fs.existsSync(path.join(dir, f)));
  if (isRun) throw new Error(`${dir}: a training run folder without a saved model (${inner}/config.json is missing: the run has not saved a model yet)`);
  throw new Error(`${dir}: no config.json (a Hugging Face model folder needs one)`);
}

/**
 * Opens a Hugging Face model directory (or a training run folder's model/): configs parsed and checked, weights
 * opened (headers only). A folder without weights is refused (config.json alone would be a random model). A name
 * that is no local folder but a Hub id (`org/name[@revision]`) is downloaded into the Hub cache first (resolveModel).
 */
export async function openModelDir(idOrDir: string, opts: { revision?: string } = {}): Promise<ModelDir> {
  const dir = modelFolder(await resolveModel(idOrDir, { revision: opts.revision }));
  const configPath = path.join(dir, 'config.json');
  const config = parseModelConfig(await readTextFile(configPath), configPath);
  const ppPath = path.join(dir, 'preprocessor_config.json');
  const preprocessorFound = fs.existsSync(ppPath);
  const preprocessor = familyOf(config).parsePreprocessor(configObject(preprocessorFound ? await readTextFile(ppPath) : {}, ppPath), ppPath, config);
  const found = pickWeightsFile(fs.readdirSync(dir), dir);
  const weightsFile = path.join(dir, found);
  const weights = found.endsWith('.index.json') ? await openShardedIndex(weightsFile) : await openTensorFile(weightsFile);
  return { dir, config, preprocessor, preprocessorFound, weightsFile, weights, close: () => weights.close() };
}

// ---------------------------------------------------------------------------------------------------------------
// writing

/**
 * Writes a file atomically: the content goes to a temporary file beside the target, is flushed to disk, then renamed
 * over the target, so a crash never leaves a half-written checkpoint under the real name.
 */
export async function writeFileAtomic(filePath: string, content: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  const dir = path.dirname(filePath);
  const tmp = path.join(dir, `.${path.basename(filePath)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  const handle = await fsp.open(tmp, 'wx');
  let bytes = 0;
  try {
    const chunks = typeof content === 'string' ? [new TextEncoder().encode(content)] : content instanceof Uint8Array ? [content] : content;
    for await (const chunk of chunks) {
      let off = 0;
      while (off < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
        off += bytesWritten;
      }
      bytes += chunk.byteLength;
    }
    await handle.sync();
    await handle.close();
    await fsp.rename(tmp, filePath);
  } catch (e) {
    await handle.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  return bytes;
}

/** Streams tensors to a safetensors file (atomic). Lazy tensor data is produced one tensor at a time. */
export function saveSafetensorsFile(filePath: string, tensors: readonly TensorToSave[], metadata: Record<string, string> = {}): Promise<number> {
  return writeFileAtomic(filePath, writeSafetensors(tensors, metadata));
}

export interface SaveModelOptions {
  /** config.json content (e.g. fineTunedConfigJson(...)) */
  config: Record<string, unknown>;
  /** preprocessor_config.json content (preprocessorConfigJson(...)) */
  preprocessor?: Record<string, unknown>;
  tensors: readonly TensorToSave[];
  /** safetensors metadata; {format: 'pt'} is always included since transformers refuses files without it */
  metadata?: Record<string, string>;
}

/** Saves a model directory that transformers' from_pretrained can load: model.safetensors, config.json, preprocessor_config.json. */
export async function saveModelDir(dir: string, opts: SaveModelOptions): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await saveSafetensorsFile(path.join(dir, 'model.safetensors'), opts.tensors, { ...opts.metadata, format: 'pt' });
  await writeFileAtomic(path.join(dir, 'config.json'), configJsonText(opts.config));
  if (opts.preprocessor) await writeFileAtomic(path.join(dir, 'preprocessor_config.json'), configJsonText(opts.preprocessor));
}
