// Node edge of the data side: read audio files and dataset manifests from disk, list folder-per-label datasets, keep
// decoded clips in memory, and write/read split files. Everything format-related lives in src/audio and src/data.
import fs from 'node:fs';
import path from 'node:path';
import { AudioError } from '../audio/errors.js';
import { prepareAudio, type PrepareOptions, type PreparedAudio } from '../audio/prepare.js';
import { folderManifest, parseCsvManifest, parseShemoManifest, type CsvManifestOptions, type DataItem } from '../data/manifest.js';
import { applySplits, makeSplits, splitsFromJson, splitsToCsv, splitsToJson, type SplitOptions, type Splits } from '../data/split.js';
import { LabelSet, SHEMO_LABELS, selectLabels } from '../data/labels.js';

/** the largest audio file read whole (2 GiB - 1, Node's Buffer limit on 64-bit hosts) */
export const MAX_AUDIO_FILE_BYTES = 2 ** 31 - 1;

const AUDIO_EXTENSIONS = new Set(['.wav', '.flac', '.mp3', '.ogg', '.oga', '.wave']);

/** Read and decode one file to mono 16 kHz (see prepareAudio); errors name the path. */
export async function readAudioFile(file: string, opts: PrepareOptions = {}): Promise<PreparedAudio> {
  let bytes: Uint8Array;
  try {
    // a file too large for one buffer (Node's limit is 2 GiB) is refused by its size, before reading it
    const { size } = await fs.promises.stat(file);
    if (size > MAX_AUDIO_FILE_BYTES) throw new AudioError(file, `the file is ${size} bytes; audio files over ${MAX_AUDIO_FILE_BYTES} bytes are not read (split it)`);
    bytes = new Uint8Array(await fs.promises.readFile(file));
  } catch (e) {
    if (e instanceof AudioError) throw e;
    throw new AudioError(file, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return prepareAudio(bytes, file, opts);
}

export type DatasetKind = 'shemo' | 'csv' | 'folder';

export interface DatasetSpec {
  /** a ShEMO-style .json manifest, a .csv/.tsv manifest, or a folder with one sub-folder per label */
  source: string;
  /** detected from `source` when omitted (.json: shemo, .csv/.tsv/.txt: csv, folder: folder) */
  kind?: DatasetKind;
  /** folder the manifest's paths are relative to (default: the manifest's own folder) */
  dataRoot?: string;
  csv?: Omit<CsvManifestOptions, 'root' | 'name'>;
}

export interface LoadedDataset {
  kind: DatasetKind;
  root: string;
  items: DataItem[];
}

/** Load a dataset's item list (no audio is read). */
export function loadDataset(spec: DatasetSpec): LoadedDataset {
  const src = spec.source;
  if (!fs.existsSync(src)) throw new Error(`dataset ${src}: no such file or folder`);
  const isDir = fs.statSync(src).isDirectory();
  const ext = path.extname(src).toLowerCase();
  const kind: DatasetKind = spec.kind ?? (isDir ? 'folder' : ext === '.json' ? 'shemo' : 'csv');
  const root = spec.dataRoot ?? (isDir ? src : path.dirname(src));
  if (kind === 'folder') {
    if (!isDir) throw new Error(`dataset ${src}: a folder-per-label dataset must be a folder`);
    const entries: { label: string; rel: string }[] = [];
    for (const label of fs.readdirSync(src).sort()) {
      const dir = path.join(src, label);
      if (!fs.statSync(dir).isDirectory() || label.startsWith('.')) continue;
      const walk = (rel: string) => {
        for (const f of fs.readdirSync(path.join(src, rel)).sort()) {
          const r = path.posix.join(rel, f);
          const st = fs.statSync(path.join(src, r));
          if (st.isDirectory()) walk(r);
          else if (AUDIO_EXTENSIONS.has(path.extname(f).toLowerCase())) entries.push({ label, rel: r });
        }
      };
      walk(label);
    }
    if (entries.length === 0) throw new Error(`dataset ${src}: no audio files in label sub-folders (expected ${src}/<label>/<file>.wav)`);
    return { kind, root, items: folderManifest(entries, root) };
  }
  const text = fs.readFileSync(src, 'utf8');
  if (kind === 'shemo') return { kind, root, items: parseShemoManifest(text, { root, name: src }) };
  const delimiter = spec.csv?.delimiter ?? (ext === '.tsv' ? '\t' : undefined);
  return { kind, root, items: parseCsvManifest(text, { ...spec.csv, delimiter, root, name: src }) };
}

/** Items whose audio file is missing (checked up front, so a long run does not die at clip 2900). */
export function missingFiles(items: readonly DataItem[]): DataItem[] {
  return items.filter((it) => !fs.existsSync(it.path));
}

/**
 * Decoded clips (mono 16 kHz, un-normalized) kept in memory up to `maxBytes` (default 2 GiB); beyond that the
 * least recently used are dropped and re-read when needed.
 */
export class ClipStore {
  private readonly cache = new Map<string, Float32Array>();
  private bytes = 0;
  readonly maxBytes: number;
  readonly opts: PrepareOptions;

  constructor(opts: PrepareOptions & { maxBytes?: number } = {}) {
    const { maxBytes, ...prep } = opts;
    this.maxBytes = maxBytes ?? 2 * 1024 ** 3;
    this.opts = { ...prep, normalize: false };
  }

  async get(file: string): Promise<Float32Array> {
    const hit = this.cache.get(file);
    if (hit) {
      this.cache.delete(file); // re-insert: most recently used last
      this.cache.set(file, hit);
      return hit;
    }
    const { samples } = await readAudioFile(file, this.opts);
    this.cache.set(file, samples);
    this.bytes += samples.byteLength;
    while (this.bytes > this.maxBytes && this.cache.size > 1) {
      const [k, v] = this.cache.entries().next().value as [string, Float32Array];
      this.cache.delete(k);
      this.bytes -= v.byteLength;
    }
    return samples;
  }

  get cachedBytes(): number {
    return this.bytes;
  }
}

/** Write a split as <base>.json (authoritative) and <base>.csv (one row per item, for people). */
export function writeSplits(base: string, s: Splits, items: readonly DataItem[]): { json: string; csv: string } {
  const json = `${base}.json`;
  const csv = `${base}.csv`;
  fs.mkdirSync(path.dirname(json), { recursive: true });
  fs.writeFileSync(json, splitsToJson(s));
  fs.writeFileSync(csv, splitsToCsv(s, items));
  return { json, csv };
}

export function readSplits(file: string): Splits {
  return splitsFromJson(fs.readFileSync(file, 'utf8'), file);
}

/** Reuse the split file when it exists (so a run repeats), else make one and write it. */
export function loadOrMakeSplits(file: string, items: readonly DataItem[], opts: SplitOptions): { splits: Splits; created: boolean } {
  if (fs.existsSync(file)) return { splits: readSplits(file), created: false };
  const splits = makeSplits(items, opts);
  writeSplits(file.replace(/\.json$/i, ''), splits, items);
  return { splits, created: true };
}

export interface PreparedDataset {
  kind: DatasetKind;
  root: string;
  labels: LabelSet;
  /** items with a label in the set */
  items: DataItem[];
  /** items left out per label */
  dropped: Record<string, number>;
  splits: Splits;
  /** the split file used (null when none was asked for) and whether it was made now */
  splitFile: string | null;
  createdSplit: boolean;
  train: DataItem[];
  valid: DataItem[];
  test: DataItem[];
}

/**
 * Everything before training: load the item list, keep the chosen labels (default: ShEMO's five without 'fear' for a
 * ShEMO manifest, else every label present), check that the audio files exist, and reuse the split file when it
 * exists or make (and write) one.
 */
export function prepareDataset(opts: { dataset: DatasetSpec; labels?: string[]; split?: SplitOptions; splitFile?: string | null }): PreparedDataset {
  const ds = loadDataset(opts.dataset);
  const labels = new LabelSet(opts.labels ?? (ds.kind === 'shemo' ? [...SHEMO_LABELS] : ds.items.map((it) => it.label)));
  const { items, dropped } = selectLabels(ds.items, labels);
  const missing = missingFiles(items);
  if (missing.length > 0) {
    throw new Error(`${missing.length} of ${items.length} audio files are missing, e.g. ${missing.slice(0, 3).map((it) => it.path).join(', ')}${ds.kind !== 'folder' ? ' (paths are relative to the manifest folder unless a data root is given)' : ''}`);
  }
  const empty = labels.labels.filter((l) => !items.some((it) => it.label === l));
  if (empty.length > 0) throw new Error(`no items with label(s) ${empty.join(', ')} in ${opts.dataset.source}`);
  let splits: Splits;
  let created = true;
  if (opts.splitFile) ({ splits, created } = loadOrMakeSplits(opts.splitFile, items, opts.split ?? {}));
  else splits = makeSplits(items, opts.split ?? {});
  const sides = applySplits(items, splits);
  return { kind: ds.kind, root: ds.root, labels, items, dropped, splits, splitFile: opts.splitFile ?? null, createdSplit: created, ...sides };
}
