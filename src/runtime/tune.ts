// Autotuning of kernel configurations per adapter, as Burn/CubeCL do: an op family (GEMM, conv1d) lists a small set of
// candidate tile/workgroup configurations; the first time a shape class (the family's dims bucketed) is used with
// `rt.autotune` on, the op runs its hand-picked default and queues the class; the next rt.sync() times every candidate
// on random data of that shape (interleaved rounds, median per candidate; GPU timestamp queries through rt.profile
// where the device has them, else the wall clock around a synchronised run) and keeps the fastest, if it beats the
// default by MIN_GAIN (noise must not swap configurations); a candidate over PRUNE_RATIO x the fastest after the first
// round is not timed again (GPU-style tiles on a CPU adapter cost seconds per run). Winners are kept
// per runtime and in a TuneCache keyed by adapter + family + shape class, so a later process on the same adapter and
// driver uses them without timing again. Without autotune an op uses a cached winner if there is one, else its default:
// no surprise tuning.
// A cache is untrusted input: entries are validated when read (bounded file, known fields, winner ids only ever looked
// up in the op's own candidate list, never interpreted as configurations).
import type { Runtime } from './runtime.js';

/** Version of the cache file format and of the candidate lists: bump when ids change meaning. */
export const TUNE_FORMAT = 1;
/** At most this many entries are kept (oldest measurement dropped first) or read. */
export const TUNE_MAX_ENTRIES = 4096;
/** A cache file larger than this is ignored unread. */
export const TUNE_MAX_BYTES = 4 << 20;
const KEY_MAX = 600;
const ID_RE = /^[a-z0-9][a-z0-9.-]{0,63}$/;
/** a candidate slower than this times the fastest in the first timed round is not timed again */
const PRUNE_RATIO = 3;
/** a candidate replaces the default only when its median is at least this much faster */
const MIN_GAIN = 1.05;

export interface TuneEntry {
  /** id of the fastest candidate (looked up in the op's candidate list; unknown ids are ignored) */
  winner: string;
  /** its median time per run, ms */
  medianMs: number;
  /** the default candidate's median, ms (for reports) */
  defaultMs: number;
  /** how many candidates were timed */
  candidates: number;
  /** ISO time of the measurement */
  measuredAt: string;
}

/** Where winners are kept between processes. get/set are synchronous (ops choose while recording). */
export interface TuneCache {
  get(key: string): TuneEntry | undefined;
  set(key: string, entry: TuneEntry): void;
  /** every entry (for `ser tune` listings and tests) */
  entries(): [string, TuneEntry][];
}

/** Validates one entry from an untrusted source; null (with the reason) if anything is off. */
export function validateEntry(key: unknown, e: unknown): { entry: TuneEntry } | { error: string } {
  if (typeof key !== 'string' || key.length === 0 || key.length > KEY_MAX) return { error: 'key is not a string of 1..600 characters' };
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return { error: `entry '${key.slice(0, 80)}' is not an object` };
  const o = e as Record<string, unknown>;
  const num = (f: string) => typeof o[f] === 'number' && Number.isFinite(o[f]) && (o[f] as number) >= 0 && (o[f] as number) < 1e9;
  if (typeof o.winner !== 'string' || !ID_RE.test(o.winner)) return { error: `entry '${key.slice(0, 80)}': field winner is not a candidate id` };
  if (!num('medianMs') || !num('defaultMs')) return { error: `entry '${key.slice(0, 80)}': medianMs/defaultMs must be finite non-negative numbers` };
  if (!(Number.isInteger(o.candidates) && (o.candidates as number) >= 1 && (o.candidates as number) <= 1000)) return { error: `entry '${key.slice(0, 80)}': field candidates must be an integer 1..1000` };
  if (typeof o.measuredAt !== 'string' || o.measuredAt.length > 40 || Number.isNaN(Date.parse(o.measuredAt))) return { error: `entry '${key.slice(0, 80)}': field measuredAt is not a date` };
  return { entry: { winner: o.winner, medianMs: o.medianMs as number, defaultMs: o.defaultMs as number, candidates: o.candidates as number, measuredAt: o.measuredAt } };
}

/**
 * Parse a serialized cache (the JSON the file and browser caches hold). Anything malformed as a whole gives an empty
 * map and one warning; single bad entries are dropped with a warning each (at most a few printed).
 */
export function parseTuneCache(text: string, source: string, warn: (msg: string) => void): Map<string, TuneEntry> {
  const out = new Map<string, TuneEntry>();
  if (text.length > TUNE_MAX_BYTES) {
    warn(`tune cache ${source}: ${text.length} bytes, over the ${TUNE_MAX_BYTES}-byte limit; ignored`);
    return out;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    warn(`tune cache ${source}: not JSON (${(e as Error).message}); ignored`);
    return out;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    warn(`tune cache ${source}: not an object; ignored`);
    return out;
  }
  const d = doc as Record<string, unknown>;
  if (d.format !== TUNE_FORMAT) {
    warn(`tune cache ${source}: field format is ${JSON.stringify(d.format)?.slice(0, 20)}, expected ${TUNE_FORMAT}; ignored`);
    return out;
  }
  const entries = d.entries;
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) {
    warn(`tune cache ${source}: field entries is not an object; ignored`);
    return out;
  }
  const keys = Object.keys(entries);
  if (keys.length > TUNE_MAX_ENTRIES) {
    warn(`tune cache ${source}: ${keys.length} entries, over the ${TUNE_MAX_ENTRIES} limit; ignored`);
    return out;
  }
  let bad = 0;
  for (const k of keys) {
    const r = validateEntry(k, (entries as Record<string, unknown>)[k]);
    if ('error' in r) {
      if (bad++ < 3) warn(`tune cache ${source}: ${r.error}; entry dropped`);
    } else out.set(k, r.entry);
  }
  if (bad > 3) warn(`tune cache ${source}: ${bad - 3} more bad entries dropped`);
  return out;
}

/** The serialized form: newest entries kept when over the limit. */
export function serializeTuneCache(map: Map<string, TuneEntry>): string {
  let list = [...map];
  if (list.length > TUNE_MAX_ENTRIES) {
    list.sort((a, b) => Date.parse(b[1].measuredAt) - Date.parse(a[1].measuredAt));
    list = list.slice(0, TUNE_MAX_ENTRIES);
  }
  list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return JSON.stringify({ format: TUNE_FORMAT, entries: Object.fromEntries(list) }, null, 1);
}

/** In-memory cache (no persistence); the base of the others. */
export class MemoryTuneCache implements TuneCache {
  protected map: Map<string, TuneEntry>;
  constructor(initial?: Map<string, TuneEntry>) {
    this.map = initial ?? new Map();
  }
  get(key: string): TuneEntry | undefined {
    return this.map.get(key);
  }
  set(key: string, entry: TuneEntry): void {
    this.map.set(key, entry);
    if (this.map.size > TUNE_MAX_ENTRIES) {
      // bounded: drop the oldest measurements
      const newest = [...this.map].sort((a, b) => Date.parse(b[1].measuredAt) - Date.parse(a[1].measuredAt)).slice(0, TUNE_MAX_ENTRIES);
      this.map = new Map(newest);
    }
    this.persist();
  }
  entries(): [string, TuneEntry][] {
    return [...this.map];
  }
  protected persist(): void {}
}

/** Minimal Web Storage surface (window.localStorage). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Browser cache in localStorage under one key; a corrupt value is ignored with a warning and overwritten on the next win. */
export class LocalStorageTuneCache extends MemoryTuneCache {
  private readonly storage: StorageLike;
  private readonly item: string;
  constructor(storage: StorageLike, item = 'ser-webgpu/tune', warn: (msg: string) => void = (m) => console.warn(m)) {
    let text: string | null = null;
    try {
      text = storage.getItem(item);
    } catch (e) {
      warn(`tune cache localStorage '${item}': unreadable (${(e as Error).message}); ignored`);
    }
    super(text === null ? new Map() : parseTuneCache(text, `localStorage '${item}'`, warn));
    this.storage = storage;
    this.item = item;
  }
  protected override persist(): void {
    try {
      this.storage.setItem(this.item, serializeTuneCache(this.map));
    } catch {
      // quota or privacy mode: the winners stay in memory for this page
    }
  }
}

/**
 * The adapter part of every key: vendor, architecture, device, description, the subgroup sizes (what Dawn exposes of
 * the driver) and the features that select kernels. A driver update that changes any of these starts a fresh table.
 */
const adapterKeys = new WeakMap<Runtime, string>();
export function adapterKey(rt: Runtime): string {
  let k = adapterKeys.get(rt);
  if (k === undefined) adapterKeys.set(rt, (k = computeAdapterKey(rt)));
  return k;
}

function computeAdapterKey(rt: Runtime): string {
  const a = rt.adapter;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number; driver?: string } }).adapterInfo;
  const clean = (s: string) => s.replace(/[|#\n]/g, ' ').trim().slice(0, 100);
  const feats = ['subgroups', 'shader-f16'].filter((f) => rt.features.has(f)).join('+');
  return [a.vendor, a.architecture, a.device, a.description, `sg${info?.subgroupMinSize ?? 0}-${info?.subgroupMaxSize ?? 0}`, feats].map((s) => clean(String(s))).join('|');
}

/** Power-of-two bucket of a size (1, 2, 4, ...), the usual shape class of a tuned dimension. */
export function bucket(n: number): number {
  let b = 1;
  while (b < n && b < 1 << 30) b *= 2;
  return b;
}

export interface Candidate<C> {
  /** short stable id (lowercase, digits, '-', '.'): what the cache stores */
  id: string;
  config: C;
}

/** One tuning job: a shape class and how to run a candidate on random data of a representative shape. */
export interface TuneProblem<C> {
  family: string;
  shapeClass: string;
  candidates: Candidate<C>[];
  defaultId: string;
  /** human-readable representative shape (for tables) */
  shape: string;
  /** work per run, for GFLOP/s in reports (0 if unknown) */
  flops: number;
  /** allocates inputs; run(config) records one run; dispose frees everything */
  prepare(): { run(config: C): void; dispose(): void };
}

export interface TuneResult {
  key: string;
  family: string;
  shapeClass: string;
  shape: string;
  flops: number;
  method: 'timestamps' | 'wall-clock';
  defaultId: string;
  winner: string;
  /** per candidate: median ms over the rounds (Infinity: failed), every sample */
  timings: { id: string; medianMs: number; samples: number[]; pruned?: boolean; error?: string }[];
}

export interface TuneOptions {
  /** timed rounds per candidate (interleaved); default 5 */
  rounds?: number;
  /** force the wall-clock method even with timestamp queries */
  wallClock?: boolean;
}

interface Tuner {
  /** key -> chosen candidate id, for this runtime's life */
  decided: Map<string, string>;
  queued: Map<string, TuneProblem<unknown>>;
  results: TuneResult[];
  /** shape classes timed (tests check a class is timed once) */
  timedCount: number;
  options: TuneOptions;
}

const tuners = new WeakMap<Runtime, Tuner>();

function tunerOf(rt: Runtime): Tuner {
  let t = tuners.get(rt);
  if (!t) tuners.set(rt, (t = { decided: new Map(), queued: new Map(), results: [], timedCount: 0, options: {} }));
  return t;
}

/** Rounds and method used by the tuning that rt.sync() triggers (ser tune --quick sets fewer rounds). */
export function setTuneOptions(rt: Runtime, options: TuneOptions): void {
  tunerOf(rt).options = { ...options };
}

/** Every class this runtime has timed, in order (the table `ser tune` prints). */
export function tuneResults(rt: Runtime): readonly TuneResult[] {
  return tunerOf(rt).results;
}

/** How many shape classes this runtime has timed. */
export function tuneCount(rt: Runtime): number {
  return tunerOf(rt).timedCount;
}

/** Forget this runtime's decisions (not the cache): the next use looks the cache up again. */
export function resetTuner(rt: Runtime): void {
  tuners.delete(rt);
}

export function tuneKey(rt: Runtime, family: string, shapeClass: string): string {
  return `${adapterKey(rt)}#${family}#${shapeClass}`;
}

/**
 * The configuration an op uses for a shape class: this runtime's earlier decision, else a cached winner that is one of
 * the candidates, else the default; with rt.autotune on, an undecided class is queued and timed at the next sync().
 * `problem` is only called when the class gets queued.
 */
export function chooseConfig<C>(rt: Runtime, family: string, shapeClass: string, candidates: Candidate<C>[], defaultId: string, problem: () => Omit<TuneProblem<C>, 'family' | 'shapeClass' | 'candidates' | 'defaultId'>): C {
  const byId = (id: string) => candidates.find((c) => c.id === id);
  const fallback = byId(defaultId) ?? candidates[0];
  if (candidates.length <= 1) return fallback.config;
  const t = tunerOf(rt);
  const key = tuneKey(rt, family, shapeClass);
  const known = t.decided.get(key);
  if (known !== undefined) return (byId(known) ?? fallback).config;
  const cached = rt.tuneCache?.get(key);
  if (cached && byId(cached.winner)) {
    t.decided.set(key, cached.winner);
    return byId(cached.winner)!.config;
  }
  if (rt.autotune && !t.queued.has(key)) {
    t.queued.set(key, { family, shapeClass, candidates, defaultId: fallback.id, ...problem() } as TuneProblem<unknown>);
    rt.pendingTune = () => runQueued(rt);
  }
  return fallback.config;
}

/** Time every queued class now (rt.sync() calls this when autotune queued something). */
export async function runQueued(rt: Runtime): Promise<TuneResult[]> {
  const t = tunerOf(rt);
  const out: TuneResult[] = [];
  while (t.queued.size) {
    const [key, p] = t.queued.entries().next().value as [string, TuneProblem<unknown>];
    t.queued.delete(key);
    try {
      out.push(await tuneProblem(rt, p, t.options));
    } catch (e) {
      // tuning must not break the run that triggered it: the class keeps its default for this runtime
      t.decided.set(key, p.defaultId);
      console.warn(`autotune: ${p.family} ${p.shapeClass} not tuned (${(e as Error).message}); using the default ${p.defaultId}`);
    }
  }
  return out;
}

/** Time one problem's candidates, record the winner for this runtime and in rt.tuneCache. */
export async function tuneProblem<C>(rt: Runtime, p: TuneProblem<C>, opts: TuneOptions = {}): Promise<TuneResult> {
  const t = tunerOf(rt);
  const key = tuneKey(rt, p.family, p.shapeClass);
  const rounds = Math.max(1, Math.min(50, Math.floor(opts.rounds ?? 5)));
  const method: TuneResult['method'] = rt.hasTimestamps && !opts.wallClock && !rt.profiling ? 'timestamps' : 'wall-clock';
  const samples = new Map<string, number[]>(p.candidates.map((c) => [c.id, []]));
  const errors = new Map<string, string>();
  const pruned = new Set<string>();
  const inst = p.prepare();
  try {
    // warm-up: compiles every candidate's pipelines; a candidate that fails here (compile or GPU error) is dropped
    for (const c of p.candidates) {
      try {
        inst.run(c.config);
        await rt.sync();
      } catch (e) {
        errors.set(c.id, (e as Error).message);
      }
    }
    let live = p.candidates.filter((c) => !errors.has(c.id));
    for (let r = 0; r < rounds && live.length; r++) {
      if (r === 1 && live.length > 1) {
        // after one timed round, a candidate over PRUNE_RATIO x the fastest is out of the race (its first time stays
        // in the table): on CPU adapters the GPU-style tiles are ~8x slower, and timing them again costs seconds
        const first = live.map((c) => samples.get(c.id)![0]);
        const best = Math.min(...first);
        live.forEach((c, i) => first[i] > PRUNE_RATIO * best && pruned.add(c.id));
        live = live.filter((c) => !pruned.has(c.id));
      }
      // rotate the order each round so that no candidate always runs first (or after the same neighbour)
      const order = live.map((_, i) => live[(i + r) % live.length]);
      if (method === 'timestamps') {
        const { profile } = await rt.profile(() => {
          for (const c of order) rt.section(c.id, () => inst.run(c.config));
        });
        for (const row of profile.bySection()) samples.get(row.name)?.push(row.totalMs);
      } else {
        for (const c of order) {
          await rt.sync();
          const t0 = performance.now();
          inst.run(c.config);
          await rt.sync();
          samples.get(c.id)!.push(performance.now() - t0);
        }
      }
    }
  } finally {
    inst.dispose();
  }
  const timings = p.candidates.map((c) => {
    const s = samples.get(c.id)!;
    return { id: c.id, medianMs: errors.has(c.id) || !s.length ? Infinity : median(s), samples: s, ...(pruned.has(c.id) ? { pruned: true } : {}), ...(errors.has(c.id) ? { error: errors.get(c.id) } : {}) };
  });
  // the winner among those timed every round
  const best = timings.filter((x) => !x.pruned).reduce((a, b) => (b.medianMs < a.medianMs ? b : a), { medianMs: Infinity, id: p.defaultId });
  // the default stays unless a candidate beats it by MIN_GAIN: timing noise alone must not swap configurations
  const defTiming = timings.find((x) => x.id === p.defaultId && !x.pruned && Number.isFinite(x.medianMs));
  const winner = !Number.isFinite(best.medianMs) ? p.defaultId : defTiming && best.medianMs * MIN_GAIN > defTiming.medianMs ? p.defaultId : best.id;
  const winnerMs = timings.find((x) => x.id === winner)?.medianMs ?? Infinity;
  t.decided.set(key, winner);
  t.timedCount++;
  const result: TuneResult = { key, family: p.family, shapeClass: p.shapeClass, shape: p.shape, flops: p.flops, method, defaultId: p.defaultId, winner, timings };
  t.results.push(result);
  if (Number.isFinite(best.medianMs)) {
    const def = timings.find((x) => x.id === p.defaultId);
    rt.tuneCache?.set(key, {
      winner,
      medianMs: winnerMs,
      defaultMs: def && Number.isFinite(def.medianMs) ? def.medianMs : 0,
      candidates: timings.filter((x) => Number.isFinite(x.medianMs)).length,
      measuredAt: new Date().toISOString(),
    });
  }
  return result;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A plain-text table of results: one block per shape class, candidates fastest first, winner and default marked. */
export function tuneTable(results: readonly TuneResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.family} ${r.shapeClass}  (timed at ${r.shape}, ${r.method})`);
    const sorted = [...r.timings].sort((a, b) => a.medianMs - b.medianMs);
    const def = r.timings.find((x) => x.id === r.defaultId);
    for (const x of sorted) {
      const g = r.flops && Number.isFinite(x.medianMs) && x.medianMs > 0 ? `${(r.flops / x.medianMs / 1e6).toFixed(1).padStart(7)} GFLOP/s` : ''.padStart(15);
      const rel = def && Number.isFinite(def.medianMs) && Number.isFinite(x.medianMs) ? `${(def.medianMs / x.medianMs).toFixed(2)}x default` : '';
      const keptDefault = x === sorted[0] && x.id !== r.winner && r.winner === r.defaultId ? ` (fastest, but not ${MIN_GAIN}x the default: default kept)` : '';
      const tag = `${x.id === r.winner ? ' winner' : ''}${x.id === r.defaultId ? ' default' : ''}${keptDefault}${x.pruned ? ` (over ${PRUNE_RATIO}x the fastest in round 1: not timed again)` : ''}`;
      lines.push(`  ${x.id.padEnd(26)} ${Number.isFinite(x.medianMs) ? x.medianMs.toFixed(3).padStart(10) + ' ms' : '    failed   '} ${g}  ${rel.padEnd(14)}${tag}${x.error ? `  (${x.error.slice(0, 100)})` : ''}`);
    }
  }
  return lines.join('\n');
}
