// Train / validation / test splits, seeded (mulberry32 via random.ts) and independent of the manifest's item order
// (items are sorted by id before anything random happens), and serializable so a run can be repeated exactly.
//   stratified:          per label, a shuffled round(n * fraction) go to the held-out side (at least 1 and at most
//                        n - 1 when the label has 2+ items), so label proportions match on both sides.
//   random:              a shuffled round(n * fraction) of all items, whatever their label (regression: no classes).
//   speaker-independent: every speaker's clips stay on one side. Speakers are assigned whole; among `attempts` seeded
//                        random orders (greedy fill to the target size) the one whose held-out side best matches the
//                        target fraction per label and per gender is kept.
// The validation split is the same procedure applied to the training part (default 10%, stratified; speaker-
// independent too when the test split is).
import { parseJsonBounded } from '../io/json.js';
import { deriveSeed, mulberry32, shuffleInPlace } from './random.js';
import type { DataItem } from './manifest.js';

export type SplitMethod = 'stratified' | 'speaker' | 'random';

export interface SplitOptions {
  /** fraction held out for testing (default 0.2) */
  testFraction?: number;
  /** fraction of the training part held out for validation (default 0.1; 0 for none) */
  validFraction?: number;
  seed?: number;
  method?: SplitMethod;
  /** random orders tried by the speaker split (default 200) */
  attempts?: number;
}

export interface Splits {
  version: 1;
  method: SplitMethod;
  seed: number;
  testFraction: number;
  validFraction: number;
  /** item ids per side, sorted */
  train: string[];
  valid: string[];
  test: string[];
}

const byId = (a: DataItem, b: DataItem) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function groupBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    let g = m.get(k);
    if (!g) m.set(k, (g = []));
    g.push(x);
  }
  return m;
}

/** Stratified split: returns [kept, heldOut]. */
export function stratifiedSplit(items: readonly DataItem[], fraction: number, seed: number, tag = 'stratified'): [DataItem[], DataItem[]] {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`split fraction must be in [0, 1) (got ${fraction})`);
  const kept: DataItem[] = [];
  const held: DataItem[] = [];
  const groups = groupBy([...items].sort(byId), (it) => it.label);
  for (const label of [...groups.keys()].sort()) {
    const g = groups.get(label)!;
    shuffleInPlace(g, mulberry32(deriveSeed(seed, tag, label)));
    let k = Math.round(g.length * fraction);
    if (fraction > 0 && g.length >= 2) k = Math.min(Math.max(k, 1), g.length - 1);
    held.push(...g.slice(0, k));
    kept.push(...g.slice(k));
  }
  return [kept.sort(byId), held.sort(byId)];
}

/** Random split over all items (no stratification: regression has no classes): returns [kept, heldOut]. */
export function randomSplit(items: readonly DataItem[], fraction: number, seed: number, tag = 'random'): [DataItem[], DataItem[]] {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`split fraction must be in [0, 1) (got ${fraction})`);
  const g = [...items].sort(byId);
  shuffleInPlace(g, mulberry32(deriveSeed(seed, tag)));
  let k = Math.round(g.length * fraction);
  if (fraction > 0 && g.length >= 2) k = Math.min(Math.max(k, 1), g.length - 1);
  return [g.slice(k).sort(byId), g.slice(0, k).sort(byId)];
}

function speakerOf(it: DataItem): string {
  if (!it.speaker) throw new Error(`speaker-independent split: item '${it.id}' has no speaker id (ShEMO names like F01A01 carry one; CSV manifests need a speaker column)`);
  return it.speaker;
}

/** Speaker-independent split: returns [kept, heldOut]; no speaker appears on both sides. */
export function speakerSplit(items: readonly DataItem[], fraction: number, seed: number, attempts = 200, tag = 'speaker'): [DataItem[], DataItem[]] {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`split fraction must be in [0, 1) (got ${fraction})`);
  const sorted = [...items].sort(byId);
  const bySpeaker = groupBy(sorted, speakerOf);
  const speakers = [...bySpeaker.keys()].sort();
  if (fraction === 0) return [sorted, []];
  if (speakers.length < 2) throw new Error(`speaker-independent split needs at least 2 speakers (found ${speakers.length})`);
  const labels = [...new Set(sorted.map((it) => it.label))].sort();
  const genders = [...new Set(sorted.map((it) => it.gender ?? ''))].sort();
  const count = (xs: DataItem[], f: (it: DataItem) => string, keys: string[]) => keys.map((k) => xs.filter((it) => f(it) === k).length);
  const perSpeaker = new Map(speakers.map((s) => [s, { n: bySpeaker.get(s)!.length, labels: count(bySpeaker.get(s)!, (it) => it.label, labels), genders: count(bySpeaker.get(s)!, (it) => it.gender ?? '', genders) }]));
  const totalLabels = count(sorted, (it) => it.label, labels);
  const totalGenders = count(sorted, (it) => it.gender ?? '', genders);
  const target = fraction * sorted.length;
  const rng = mulberry32(deriveSeed(seed, tag));
  let best: Set<string> | null = null;
  let bestScore = Infinity;
  for (let a = 0; a < Math.max(1, attempts); a++) {
    const order = shuffleInPlace([...speakers], rng);
    const held = new Set<string>();
    let n = 0;
    for (const s of order) {
      const k = perSpeaker.get(s)!.n;
      if (held.size === speakers.length - 1) break; // keep at least one speaker for training
      if (Math.abs(n + k - target) < Math.abs(n - target)) {
        held.add(s);
        n += k;
      }
    }
    if (held.size === 0) held.add(order[0]);
    // distance from the target, in items, over the total, each label and each gender
    const lab = new Array(labels.length).fill(0);
    const gen = new Array(genders.length).fill(0);
    let total = 0;
    for (const s of held) {
      const p = perSpeaker.get(s)!;
      total += p.n;
      p.labels.forEach((c, i) => (lab[i] += c));
      p.genders.forEach((c, i) => (gen[i] += c));
    }
    let score = 2 * Math.abs(total - target);
    lab.forEach((c, i) => (score += Math.abs(c - fraction * totalLabels[i])));
    gen.forEach((c, i) => (score += Math.abs(c - fraction * totalGenders[i])));
    if (score < bestScore) {
      bestScore = score;
      best = held;
    }
  }
  const kept: DataItem[] = [];
  const heldOut: DataItem[] = [];
  for (const it of sorted) (best!.has(it.speaker!) ? heldOut : kept).push(it);
  return [kept, heldOut];
}

/** Train / valid / test split of a dataset. */
export function makeSplits(items: readonly DataItem[], opts: SplitOptions = {}): Splits {
  const testFraction = opts.testFraction ?? 0.2;
  const validFraction = opts.validFraction ?? 0.1;
  const seed = opts.seed ?? 0;
  const method = opts.method ?? 'stratified';
  const split = (xs: readonly DataItem[], f: number, tag: string) =>
    method === 'speaker' ? speakerSplit(xs, f, seed, opts.attempts ?? 200, `${tag}-speaker`)
      : method === 'random' ? randomSplit(xs, f, seed, `${tag}-random`) : stratifiedSplit(xs, f, seed, tag);
  const [rest, test] = split(items, testFraction, 'test');
  const [train, valid] = split(rest, validFraction, 'valid');
  const ids = (xs: DataItem[]) => xs.map((it) => it.id).sort();
  return { version: 1, method, seed, testFraction, validFraction, train: ids(train), valid: ids(valid), test: ids(test) };
}

/** The items of each side (throws if the split names an id the dataset lacks: a split for another dataset). */
export function applySplits(items: readonly DataItem[], s: Splits): { train: DataItem[]; valid: DataItem[]; test: DataItem[] } {
  const map = new Map(items.map((it) => [it.id, it]));
  const get = (side: string, ids: string[]) =>
    ids.map((id) => {
      const it = map.get(id);
      if (!it) throw new Error(`split file lists '${id}' (${side}) which is not in the dataset; was the split made for another dataset or label set?`);
      return it;
    });
  return { train: get('train', s.train), valid: get('valid', s.valid), test: get('test', s.test) };
}

export function splitsToJson(s: Splits): string {
  return `${JSON.stringify(s, null, 1)}\n`;
}

export function splitsFromJson(text: string, name = 'split file'): Splits {
  const o = parseJsonBounded(text, name, { maxChars: 256 * 1024 * 1024, maxDepth: 8 });
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${name}: expected an object with train, valid and test id lists`);
  const field = (k: string): unknown => (o as Record<string, unknown>)[k];
  const lists = { train: [] as string[], valid: [] as string[], test: [] as string[] };
  const seen = new Set<string>();
  for (const k of ['train', 'valid', 'test'] as const) {
    const list = field(k);
    if (!Array.isArray(list)) throw new Error(`${name}: missing the '${k}' id list`);
    for (const id of list) {
      if (typeof id !== 'string') throw new Error(`${name}: '${k}' holds ${JSON.stringify(id)}, not an item id`);
      if (seen.has(id)) throw new Error(`${name}: id '${id}' appears in more than one side`);
      seen.add(id);
      lists[k].push(id);
    }
  }
  const num = (k: string) => (typeof field(k) === 'number' && Number.isFinite(field(k)) ? (field(k) as number) : 0);
  const method = field('method') === 'speaker' ? 'speaker' : field('method') === 'random' ? 'random' : 'stratified';
  return { version: 1, method, seed: num('seed'), testFraction: num('testFraction'), validFraction: num('validFraction'), ...lists };
}

/** One row per item: id,split,label,speaker (a readable companion to the JSON). */
export function splitsToCsv(s: Splits, items: readonly DataItem[]): string {
  const map = new Map(items.map((it) => [it.id, it]));
  const q = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const lines = ['id,split,label,speaker'];
  for (const side of ['train', 'valid', 'test'] as const) {
    for (const id of s[side]) lines.push([id, side, map.get(id)?.label ?? '', map.get(id)?.speaker ?? ''].map(q).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Per side: item count, per-label counts and speakers (for logs and the report). */
export function describeSplits(items: readonly DataItem[], s: Splits): Record<'train' | 'valid' | 'test', { n: number; labels: Record<string, number>; speakers: string[] }> {
  const sides = applySplits(items, s);
  const d = (xs: DataItem[]) => {
    const labels: Record<string, number> = {};
    for (const it of xs) labels[it.label] = (labels[it.label] ?? 0) + 1;
    return { n: xs.length, labels, speakers: [...new Set(xs.map((it) => it.speaker ?? '').filter(Boolean))].sort() };
  };
  return { train: d(sides.train), valid: d(sides.valid), test: d(sides.test) };
}
