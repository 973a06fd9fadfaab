// Dataset manifests -> a flat list of items (id, audio path, label, speaker, ...). Pure functions over text, so they
// run in browsers too; reading files and listing folders is the Node edge's job (src/node/audio-file.ts).
//   1. Modified ShEMO JSON as published: { "F01A01.wav": { "path": "shemo/F01A01.wav", "gender": "female",
//      "speech_name": "F01A01", "text_name": ..., "emotion": "anger", "transcript": ..., "ipa": ... }, ... }.
//      Paths are relative to the JSON's folder unless a data root is given. Speaker = the file name's leading
//      [FM]<digits> (F01, M56), which is what a speaker-independent split needs.
//   2. CSV/TSV with a header row: a path column and a label column (names configurable, common names detected),
//      optional speaker / id columns; parsed with papaparse (quoted fields, BOM, CRLF, delimiter detection).
//   3. Folder per label: <root>/<label>/<file> (the listing comes from the caller).
import Papa from 'papaparse';
import { normalizeLabel } from './labels.js';

export interface DataItem {
  /** unique within the dataset (ShEMO: the file name without extension, e.g. "F01A01") */
  id: string;
  /** where the audio is: root joined with the manifest's relative path (or an absolute path / URL) */
  path: string;
  label: string;
  speaker?: string;
  gender?: string;
  transcript?: string;
  /** regression: float targets in the order of the manifest's target columns (e.g. arousal, dominance, valence) */
  targets?: number[];
}

/** Join a root and a relative path with '/', leaving absolute paths and URLs alone. */
export function joinPath(root: string, rel: string): string {
  if (!root || /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/|\/|[a-zA-Z]:[\\/]|data:)/.test(rel)) return rel;
  const r = root.replace(/[\\/]+$/, '');
  const p = rel.replace(/^\.\//, '');
  return `${r}/${p}`;
}

export function baseName(p: string): string {
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1];
}

export function stripExtension(name: string): string {
  const i = name.lastIndexOf('.');
  return i > 0 ? name.slice(0, i) : name;
}

/** ShEMO-style speaker id from a file name: the leading F/M and digits (F01A01.wav -> F01), else undefined. */
export function speakerFromName(p: string, pattern: RegExp = /^([FM]\d+)/): string | undefined {
  const m = baseName(p).match(pattern);
  return m ? m[1] : undefined;
}

function assertUniqueIds(items: DataItem[], what: string): void {
  const seen = new Set<string>();
  for (const it of items) {
    if (seen.has(it.id)) throw new Error(`${what}: duplicate item id '${it.id}'`);
    seen.add(it.id);
  }
}

interface ShemoEntry {
  path?: unknown;
  emotion?: unknown;
  gender?: unknown;
  transcript?: unknown;
  speech_name?: unknown;
}

/**
 * Parse a Modified ShEMO JSON manifest (text or parsed object). `root`: the folder paths are relative to (the JSON's
 * own folder, or the data root the user gave). `name` appears in errors.
 */
export function parseShemoManifest(json: string | Record<string, unknown>, opts: { root: string; name?: string }): DataItem[] {
  const name = opts.name ?? 'ShEMO manifest';
  let obj: unknown;
  if (typeof json === 'string') {
    try {
      obj = JSON.parse(json);
    } catch (e) {
      throw new Error(`${name}: not valid JSON (${(e as Error).message})`);
    }
  } else obj = json;
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${name}: expected an object keyed by file name`);
  const items: DataItem[] = [];
  for (const [key, raw] of Object.entries(obj as Record<string, ShemoEntry>)) {
    if (!raw || typeof raw !== 'object') throw new Error(`${name}: entry '${key}' is not an object`);
    const rel = typeof raw.path === 'string' && raw.path ? raw.path : key;
    if (typeof raw.emotion !== 'string' || !raw.emotion) throw new Error(`${name}: entry '${key}' has no "emotion"`);
    const speechName = typeof raw.speech_name === 'string' && raw.speech_name ? raw.speech_name : stripExtension(baseName(key));
    items.push({
      id: speechName,
      path: joinPath(opts.root, rel),
      label: normalizeLabel(raw.emotion),
      speaker: speakerFromName(baseName(rel)) ?? speakerFromName(key),
      gender: typeof raw.gender === 'string' ? raw.gender : undefined,
      transcript: typeof raw.transcript === 'string' ? raw.transcript : undefined,
    });
  }
  assertUniqueIds(items, name);
  return items;
}

/** Items -> a Modified-ShEMO-style JSON object (paths made relative to `root` when they start with it). */
export function toShemoManifest(items: readonly DataItem[], root = ''): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  const prefix = root ? `${root.replace(/[\\/]+$/, '')}/` : '';
  for (const it of items) {
    const rel = prefix && it.path.startsWith(prefix) ? it.path.slice(prefix.length) : it.path;
    const entry: Record<string, string> = { path: rel };
    if (it.gender) entry.gender = it.gender;
    entry.speech_name = it.id;
    entry.emotion = it.label;
    if (it.transcript !== undefined) entry.transcript = it.transcript;
    out[baseName(rel)] = entry;
  }
  return out;
}

export interface CsvManifestOptions {
  root: string;
  name?: string;
  /** column names; by default the first present of the common names */
  pathColumn?: string;
  labelColumn?: string;
  speakerColumn?: string;
  idColumn?: string;
  /** ',' or '\t' ...; detected when omitted */
  delimiter?: string;
  /** regression: numeric target columns (each row's values become item.targets); the label column is then optional */
  targetColumns?: readonly string[];
}

const PATH_COLUMNS = ['path', 'file', 'filename', 'file_name', 'filepath', 'file_path', 'audio', 'audio_path', 'wav', 'wav_path'];
const LABEL_COLUMNS = ['label', 'emotion', 'class', 'category', 'target'];
const SPEAKER_COLUMNS = ['speaker', 'speaker_id', 'spk', 'spk_id'];

/** Parse a CSV/TSV manifest with a header row. */
export function parseCsvManifest(text: string, opts: CsvManifestOptions): DataItem[] {
  const name = opts.name ?? 'CSV manifest';
  const parsed = Papa.parse<Record<string, string>>(text.replace(/^\uFEFF/, ''), {
    header: true,
    skipEmptyLines: 'greedy',
    delimiter: opts.delimiter ?? '',
    transformHeader: (h: string) => h.trim(),
  });
  const fatal = parsed.errors.find((e) => e.type !== 'Delimiter' || parsed.data.length === 0);
  if (fatal) throw new Error(`${name}: CSV error at row ${(fatal.row ?? 0) + 2}: ${fatal.message}`);
  const columns = parsed.meta.fields ?? [];
  const pick = (given: string | undefined, candidates: string[], what: string, required: boolean): string | undefined => {
    if (given) {
      if (!columns.includes(given)) throw new Error(`${name}: no ${what} column '${given}' (columns: ${columns.join(', ')})`);
      return given;
    }
    const lower = columns.map((c) => c.toLowerCase());
    for (const c of candidates) {
      const i = lower.indexOf(c);
      if (i >= 0) return columns[i];
    }
    if (required) throw new Error(`${name}: no ${what} column (looked for ${candidates.join(', ')}; columns: ${columns.join(', ')}); name it with the ${what} column option`);
    return undefined;
  };
  const pathCol = pick(opts.pathColumn, PATH_COLUMNS, 'path', true)!;
  const targetCols = (opts.targetColumns ?? []).map((c) => pick(c, [], 'target', true)!);
  const labelCol = pick(opts.labelColumn, LABEL_COLUMNS, 'label', targetCols.length === 0);
  const speakerCol = pick(opts.speakerColumn, SPEAKER_COLUMNS, 'speaker', false);
  const idCol = opts.idColumn ? pick(opts.idColumn, [], 'id', true) : undefined;
  const items: DataItem[] = parsed.data.map((row, i) => {
    const rel = (row[pathCol] ?? '').trim();
    const label = labelCol ? (row[labelCol] ?? '').trim() : '';
    if (!rel) throw new Error(`${name}: row ${i + 2} has an empty '${pathCol}'`);
    if (labelCol && !label && !targetCols.length) throw new Error(`${name}: row ${i + 2} (${rel}) has an empty '${labelCol}'`);
    const speaker = speakerCol ? (row[speakerCol] ?? '').trim() || undefined : speakerFromName(rel);
    const item: DataItem = { id: idCol ? row[idCol].trim() : stripExtension(rel), path: joinPath(opts.root, rel), label: label ? normalizeLabel(label) : '', speaker };
    if (targetCols.length) {
      item.targets = targetCols.map((c) => {
        const text = (row[c] ?? '').trim();
        const v = Number(text);
        if (!text || !Number.isFinite(v)) throw new Error(`${name}: row ${i + 2} (${rel}) has '${c}' = ${JSON.stringify(text)}, not a number`);
        return v;
      });
    }
    return item;
  });
  assertUniqueIds(items, name);
  return items;
}

/** Folder-per-label layout: entries are (label folder, file path relative to the root) pairs from a listing. */
export function folderManifest(entries: readonly { label: string; rel: string }[], root: string): DataItem[] {
  const items = entries.map(({ label, rel }) => ({
    id: stripExtension(rel),
    path: joinPath(root, rel),
    label: normalizeLabel(label),
    speaker: speakerFromName(rel),
  }));
  assertUniqueIds(items, `folder dataset ${root}`);
  return items;
}

/** Items -> CSV text (path relative to root when possible), readable again by parseCsvManifest. */
export function toCsvManifest(items: readonly DataItem[], root = ''): string {
  const prefix = root ? `${root.replace(/[\\/]+$/, '')}/` : '';
  const rows = items.map((it) => ({ id: it.id, path: prefix && it.path.startsWith(prefix) ? it.path.slice(prefix.length) : it.path, label: it.label, speaker: it.speaker ?? '' }));
  return `${Papa.unparse(rows, { columns: ['id', 'path', 'label', 'speaker'], newline: '\n' })}\n`;
}
