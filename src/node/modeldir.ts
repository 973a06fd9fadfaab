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
//
// Every file is written to a temporary name beside its target, fsynced, renamed over the target, and the folder is
// fsynced; a model folder is written whole into a sibling temporary folder, fsynced, then swapped in (the old folder
// renamed aside, the new one renamed in, the old one removed). A kill at any point leaves either the old or the new
// version under the real name, plus temporaries that removeStaleTemporaries cleans up (and, after a kill between the
// swap's two renames, restores the old folder). Temporaries carry the writer's pid: a live process's are left alone.

const TEMP_FILE = /^\.(.+)\.(\d+)\.[a-z0-9]+\.tmp$/;
const TEMP_DIR = /^\.(.+)\.(saving|replaced)-(\d+)-[a-z0-9]+$/;

function randomTag(): string {
  return Math.random().toString(36).slice(2, 10);
}

/**
 * Fault injection for the kill test: SER_CRASH_AT="point[@file]:n" SIGKILLs this process the n-th time it reaches
 * `point` (while writing a file of that base name, when given). Points: file-data (after each chunk of a file's data),
 * file-renamed (a file renamed into place, its folder not yet fsynced), model-files (a model folder's files complete
 * in its temporary folder), model-swap (the old model folder renamed aside, the new one not yet in). Unset: nothing.
 */
const crashCounts = new Map<string, number>();
export function crashPoint(point: string, file?: string): void {
  const spec = process.env.SER_CRASH_AT;
  if (!spec) return;
  const m = /^([a-z-]+)(?:@(.+))?:(\d+)$/.exec(spec);
  if (!m || m[1] !== point || (m[2] !== undefined && m[2] !== (file && path.basename(file)))) return;
  const count = (crashCounts.get(spec) ?? 0) + 1;
  crashCounts.set(spec, count);
  if (count === Number(m[3])) process.kill(process.pid, 'SIGKILL');
}

const WRITE_ERRORS: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'the folder does not exist',
  ENOTDIR: 'a parent is not a folder',
  EISDIR: 'it is a folder',
};

/** One error naming the path and the cause (ENOSPC, read-only, ...); the system error stays as `cause`. */
export function writeError(target: string, e: unknown, note = '; nothing already written there was changed'): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code && WRITE_ERRORS[code]) return new Error(`cannot write ${target}: ${WRITE_ERRORS[code]} (${code})${note}`, { cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return false; // ours are from before this start (no write is in flight when cleaning)
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Makes `dir` (and its parents); a read-only or unwritable parent is one error naming the folder that could not be
 * made (mkdir's own error would be a misleading ENOENT or name only the deepest path).
 */
export function ensureDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    let parent = path.resolve(dir);
    while (!fs.existsSync(parent) && path.dirname(parent) !== parent) parent = path.dirname(parent);
    throw writeError(`${dir} (in ${parent})`, e, '');
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    throw writeError(dir, e, '');
  }
}

/**
 * Removes what killed writers left in `dir`: temporary files, half-written model folders, and the old copy of a
 * model folder whose swap was cut short (put back when the new one never arrived). Returns what it did, in words.
 */
export async function removeStaleTemporaries(dir: string): Promise<string[]> {
  const done: string[] = [];
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return done;
  }
  for (const name of names) {
    const file = TEMP_FILE.exec(name);
    const folder = TEMP_DIR.exec(name);
    const pid = Number(file?.[2] ?? folder?.[3]);
    if ((!file && !folder) || pidAlive(pid)) continue;
    const full = path.join(dir, name);
    if (folder && folder[2] === 'replaced' && !fs.existsSync(path.join(dir, folder[1]))) {
      await fsp.rename(full, path.join(dir, folder[1]));
      done.push(`restored ${path.join(dir, folder[1])} from an interrupted replacement`);
      continue;
    }
    await fsp.rm(full, { recursive: true, force: true });
    done.push(`removed stale temporary ${full}`);
  }
  if (done.length) await fsyncDir(dir);
  return done;
}

/**
 * When `dir` is missing because a save was killed between its two renames, puts the previous folder back (only when
 * the writer is dead). Returns true when it restored one.
 */
export async function recoverModelDir(dir: string): Promise<boolean> {
  const target = path.resolve(dir);
  if (fs.existsSync(target)) return false;
  const parent = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch {
    return false;
  }
  for (const name of names) {
    const m = TEMP_DIR.exec(name);
    if (m && m[1] === base && m[2] === 'replaced' && !pidAlive(Number(m[3]))) {
      await fsp.rename(path.join(parent, name), target);
      await fsyncDir(parent);
      return true;
    }
  }
  return false;
}

async function writeAll(handle: fsp.FileHandle, content: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, target: string): Promise<number> {
  let bytes = 0;
  const chunks = typeof content === 'string' ? [new TextEncoder().encode(content)] : content instanceof Uint8Array ? [content] : content;
  for await (const chunk of chunks) {
    let off = 0;
    while (off < chunk.byteLength) {
      const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
      off += bytesWritten;
    }
    bytes += chunk.byteLength;
    crashPoint('file-data', target);
  }
  return bytes;
}

/** Writes a new file (the name must not exist) and fsyncs it; on failure the partial file is removed. */
async function writeNewFile(filePath: string, content: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, target = filePath): Promise<number> {
  const handle = await fsp.open(filePath, 'wx');
  try {
    const bytes = await writeAll(handle, content, target);
    await handle.sync();
    await handle.close();
    return bytes;
  } catch (e) {
    await handle.close().catch(() => {});
    await fsp.rm(filePath, { force: true });
    throw e;
  }
}

/**
 * Writes a file atomically: the content goes to a temporary file beside the target, is flushed to disk, then renamed
 * over the target (and the folder flushed), so a crash never leaves a half-written file under the real name. A full
 * disk or read-only folder is one error naming the target; the previous content stays.
 */
export async function writeFileAtomic(filePath: string, content: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  const dir = path.dirname(filePath);
  const tmp = path.join(dir, `.${path.basename(filePath)}.${process.pid}.${randomTag()}.tmp`);
  try {
    const bytes = await writeNewFile(tmp, content, filePath);
    await fsp.rename(tmp, filePath);
    crashPoint('file-renamed', filePath);
    await fsyncDir(dir);
    return bytes;
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw writeError(filePath, e);
  }
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

/**
 * Saves a model directory that transformers' from_pretrained can load (model.safetensors, config.json,
 * preprocessor_config.json), replacing any previous one as a whole: written into a sibling temporary folder,
 * fsynced, then swapped in. Readers never see a folder with some files missing or from two saves.
 */
export async function saveModelDir(dir: string, opts: SaveModelOptions): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const base = path.basename(target);
  ensureDir(parent);
  const tag = `${process.pid}-${randomTag()}`;
  const saving = path.join(parent, `.${base}.saving-${tag}`);
  const replaced = path.join(parent, `.${base}.replaced-${tag}`);
  try {
    await fsp.mkdir(saving);
    await writeNewFile(path.join(saving, 'model.safetensors'), writeSafetensors(opts.tensors, { ...opts.metadata, format: 'pt' }));
    await writeNewFile(path.join(saving, 'config.json'), configJsonText(opts.config));
    if (opts.preprocessor) await writeNewFile(path.join(saving, 'preprocessor_config.json'), configJsonText(opts.preprocessor));
    await fsyncDir(saving);
    crashPoint('model-files');
  } catch (e) {
    await fsp.rm(saving, { recursive: true, force: true }).catch(() => {});
    throw writeError(target, e);
  }
  // the swap: a kill between the two renames leaves the old folder under `replaced`, restored on the next start
  const had = fs.existsSync(target);
  if (had) await fsp.rename(target, replaced);
  crashPoint('model-swap');
  try {
    await fsp.rename(saving, target);
  } catch (e) {
    if (had) await fsp.rename(replaced, target).catch(() => {});
    await fsp.rm(saving, { recursive: true, force: true }).catch(() => {});
    throw writeError(target, e);
  }
  await fsyncDir(parent);
  if (had) await fsp.rm(replaced, { recursive: true, force: true });
}

/**
 * A JSONL log opened for appending; each line goes out with one write. A full disk or read-only folder is one error
 * naming the file.
 */
export class JsonlLog {
  constructor(readonly file: string) {}

  append(line: Record<string, unknown>): void {
    try {
      fs.appendFileSync(this.file, `${JSON.stringify(line)}\n`);
    } catch (e) {
      throw writeError(this.file, e, '; earlier lines are kept (a torn last line is dropped on --resume)');
    }
  }

  /**
   * For --resume: keeps only the lines a run at `step` had written before its checkpoint (the start line and records,
   * training and validation lines up to `step`; a torn last line and end-of-run lines are dropped), so the resumed
   * run's lines follow without duplicates. Returns how many lines were dropped.
   */
  async truncateToStep(step: number): Promise<number> {
    if (!fs.existsSync(this.file)) return 0;
    const lines = fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const kept: string[] = [];
    for (const raw of lines) {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (!o || typeof o !== 'object') continue;
      const s = typeof o.step === 'number' ? o.step : null;
      if (o.type === 'train' || (o.type === 'eval' && o.split === 'valid')) {
        if (s !== null && s <= step) kept.push(raw);
      } else if (o.type === 'eval' || o.event === 'end') {
        // end-of-run results: written again when the resumed run ends
      } else kept.push(raw);
    }
    if (kept.length === lines.length) return 0;
    await writeFileAtomic(this.file, kept.map((l) => `${l}\n`).join(''));
    return lines.length - kept.length;
  }
}
