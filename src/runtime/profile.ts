// Profiles of GPU work: one record per kernel dispatch (name = kernel family + entry point), the named sections it ran
// in, and its GPU time. Two ways to time a dispatch, chosen by the Runtime:
//   timestamps:    each dispatch in its own compute pass with timestampWrites (adapter feature 'timestamp-query');
//                  begin/end are GPU clock nanoseconds, resolved into a buffer and read back when the profile ends.
//   fallback:      each dispatch submitted alone; its end is when onSubmittedWorkDone resolves on the host, its start the
//                  later of its submission and the previous dispatch's end (the queue runs submissions in order). Coarse
//                  (host wake-up latency is included) but needs no feature.
// A Profile aggregates per kernel and per section (inclusive: a section's time is the GPU time of every dispatch
// inside it, nested sections included) and exports the Chrome Trace Event Format (what PyTorch's profiler writes,
// loadable in Perfetto or chrome://tracing).

export type ProfileMethod = 'timestamps' | 'fallback';

/**
 * The work of one dispatch, as its op wrapper states it: flops for GEMM-class kernels (matmul, convolution,
 * attention), the minimum bytes read + written for memory-bound ones. Either may be absent (then the dispatch is
 * judged on the other; with neither it is unclassified in Profile.roofline()).
 */
export interface DispatchCost {
  flops?: number;
  bytes?: number;
}

export interface DispatchRecord {
  /** `${kernel family}.${entry point}` */
  kernel: string;
  /** enclosing sections, outermost first */
  sections: string[];
  workgroups: [number, number, number];
  /** start and duration in milliseconds, on the profile's own timeline (0 = first dispatch's start) */
  startMs: number;
  durMs: number;
  /** work stated by the op wrapper (absent when it stated none) */
  flops?: number;
  bytes?: number;
}

export interface SectionRecord {
  name: string;
  /** enclosing sections, outermost first (not including this one) */
  parents: string[];
  /** index range [first, end) into Profile.dispatches of the dispatches recorded inside it */
  first: number;
  end: number;
}

export interface ProfileRow {
  name: string;
  calls: number;
  totalMs: number;
  meanMs: number;
  /** fraction of the profile's total GPU time (sections: inclusive, so shares of nested sections overlap) */
  share: number;
}

/** One Trace Event Format "complete" event. */
export interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X';
  ts: number;
  dur: number;
  pid: number;
  tid: number;
  args: Record<string, unknown>;
}

export class Profile {
  readonly method: ProfileMethod;
  readonly dispatches: DispatchRecord[];
  readonly sections: SectionRecord[];
  /** host wall time of the profiled function plus waiting for its GPU work, in milliseconds */
  readonly wallMs: number;

  constructor(method: ProfileMethod, dispatches: DispatchRecord[], sections: SectionRecord[], wallMs: number) {
    this.method = method;
    this.dispatches = dispatches;
    this.sections = sections;
    this.wallMs = wallMs;
  }

  /** Sum of every dispatch's GPU time, in milliseconds. */
  get gpuMs(): number {
    let s = 0;
    for (const d of this.dispatches) s += d.durMs;
    return s;
  }

  /** Per kernel: calls, total, mean and share of GPU time, longest total first. */
  byKernel(): ProfileRow[] {
    const acc = new Map<string, { calls: number; total: number }>();
    for (const d of this.dispatches) {
      const a = acc.get(d.kernel) ?? { calls: 0, total: 0 };
      a.calls++;
      a.total += d.durMs;
      acc.set(d.kernel, a);
    }
    return rows(acc, this.gpuMs);
  }

  /** Per section path ('a/b' for b inside a): times entered and inclusive GPU time, longest total first. */
  bySection(): ProfileRow[] {
    const acc = new Map<string, { calls: number; total: number }>();
    for (const s of this.sections) {
      const key = [...s.parents, s.name].join('/');
      const a = acc.get(key) ?? { calls: 0, total: 0 };
      a.calls++;
      for (let i = s.first; i < s.end; i++) a.total += this.dispatches[i].durMs;
      acc.set(key, a);
    }
    return rows(acc, this.gpuMs);
  }

  /** A plain-text table (kernels, then sections), `limit` rows each. */
  table(limit = 30): string {
    const lines: string[] = [];
    lines.push(`profile: ${this.dispatches.length} dispatches, GPU ${this.gpuMs.toFixed(3)} ms, wall ${this.wallMs.toFixed(3)} ms (${this.method === 'timestamps' ? 'GPU timestamp queries' : 'per-dispatch submit + onSubmittedWorkDone, coarse'})`);
    const section = (title: string, r: ProfileRow[]) => {
      if (!r.length) return;
      const w = Math.max(title.length, ...r.slice(0, limit).map((x) => x.name.length));
      lines.push('');
      lines.push(`${title.padEnd(w)}  ${'calls'.padStart(7)}  ${'total ms'.padStart(11)}  ${'mean ms'.padStart(10)}  ${'share'.padStart(6)}`);
      for (const x of r.slice(0, limit)) {
        lines.push(`${x.name.padEnd(w)}  ${String(x.calls).padStart(7)}  ${x.totalMs.toFixed(3).padStart(11)}  ${x.meanMs.toFixed(4).padStart(10)}  ${(100 * x.share).toFixed(1).padStart(5)}%`);
      }
      if (r.length > limit) lines.push(`... ${r.length - limit} more`);
    };
    section('kernel', this.byKernel());
    section('section (inclusive)', this.bySection());
    return lines.join('\n');
  }

  /**
   * Roofline classification: each dispatch's attained fraction of its roofline is
   * max(flops / time / gemmGflops, bytes / time / copyGBps) from the cost its op wrapper stated; a dispatch with
   * neither is unclassified (counted, never dropped). Per kernel (longest total first): calls, time, the fraction its
   * dispatches attain together (total work / total time), its class (gemm if it states flops, memory if only bytes)
   * and its time in dispatches below `threshold` (default 0.5). The summary gives the share of GPU time in dispatches
   * below the threshold (of all GPU time, and split by class) and the unclassified share.
   */
  roofline(peaks: RooflinePeaks, threshold = 0.5): RooflineReport {
    const { gemmGflops, copyGBps } = peaks;
    if (!(gemmGflops > 0 && Number.isFinite(gemmGflops)) || !(copyGBps > 0 && Number.isFinite(copyGBps))) {
      throw new Error(`roofline: gemmGflops and copyGBps must be positive numbers, got ${gemmGflops} and ${copyGBps}`);
    }
    if (!(threshold > 0)) throw new Error(`roofline: threshold must be positive, got ${threshold}`);
    const acc = new Map<string, { calls: number; totalMs: number; flops: number; bytes: number; hasFlops: boolean; hasBytes: boolean; belowMs: number; unclassifiedMs: number }>();
    let belowMs = 0;
    let gemmBelowMs = 0;
    let memoryBelowMs = 0;
    let gemmMs = 0;
    let memoryMs = 0;
    let unclassifiedMs = 0;
    for (const d of this.dispatches) {
      const a = acc.get(d.kernel) ?? { calls: 0, totalMs: 0, flops: 0, bytes: 0, hasFlops: false, hasBytes: false, belowMs: 0, unclassifiedMs: 0 };
      acc.set(d.kernel, a);
      a.calls++;
      a.totalMs += d.durMs;
      const cls = classOf(d.flops !== undefined, d.bytes !== undefined);
      if (cls === 'unclassified') {
        a.unclassifiedMs += d.durMs;
        unclassifiedMs += d.durMs;
        continue;
      }
      a.flops += d.flops ?? 0;
      a.bytes += d.bytes ?? 0;
      a.hasFlops ||= d.flops !== undefined;
      a.hasBytes ||= d.bytes !== undefined;
      const below = attainedFraction(d.flops ?? 0, d.bytes ?? 0, d.durMs, peaks) < threshold;
      if (cls === 'gemm') gemmMs += d.durMs;
      else memoryMs += d.durMs;
      if (below) {
        a.belowMs += d.durMs;
        belowMs += d.durMs;
        if (cls === 'gemm') gemmBelowMs += d.durMs;
        else memoryBelowMs += d.durMs;
      }
    }
    const gpuMs = this.gpuMs;
    const frac = (x: number) => (gpuMs > 0 ? x / gpuMs : 0);
    const rows: RooflineRow[] = [...acc]
      .map(([kernel, a]) => {
        const cls = classOf(a.hasFlops, a.hasBytes);
        const classifiedMs = a.totalMs - a.unclassifiedMs;
        return {
          kernel,
          class: cls,
          calls: a.calls,
          totalMs: a.totalMs,
          share: frac(a.totalMs),
          flops: a.flops,
          bytes: a.bytes,
          attained: cls === 'unclassified' ? null : attainedFraction(a.flops, a.bytes, classifiedMs, peaks),
          belowMs: a.belowMs,
          unclassifiedMs: a.unclassifiedMs,
        };
      })
      .sort((x, y) => y.totalMs - x.totalMs || x.kernel.localeCompare(y.kernel));
    return {
      peaks: { gemmGflops, copyGBps },
      threshold,
      rows,
      summary: {
        gpuMs,
        gemmMs,
        memoryMs,
        unclassifiedMs,
        belowMs,
        gemmBelowMs,
        memoryBelowMs,
        belowShare: frac(belowMs),
        gemmBelowShare: frac(gemmBelowMs),
        memoryBelowShare: frac(memoryBelowMs),
        unclassifiedShare: frac(unclassifiedMs),
      },
    };
  }

  /**
   * Chrome Trace Event Format: every dispatch and every section as a complete ('X') event on one track (pid 0 = the
   * GPU queue, tid 0), times in microseconds. A section spans its first dispatch's start to its last one's end, so
   * sections nest around their kernels; sections that recorded no dispatch have no event.
   */
  trace(): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms'; otherData: Record<string, unknown> } {
    const events: TraceEvent[] = [];
    for (const s of this.sections) {
      if (s.end <= s.first) continue;
      const t0 = this.dispatches[s.first].startMs;
      let t1 = t0;
      for (let i = s.first; i < s.end; i++) t1 = Math.max(t1, this.dispatches[i].startMs + this.dispatches[i].durMs);
      events.push({ name: s.name, cat: 'section', ph: 'X', ts: t0 * 1000, dur: (t1 - t0) * 1000, pid: 0, tid: 0, args: { path: [...s.parents, s.name].join('/'), dispatches: s.end - s.first } });
    }
    for (const d of this.dispatches) {
      events.push({ name: d.kernel, cat: 'kernel', ph: 'X', ts: d.startMs * 1000, dur: d.durMs * 1000, pid: 0, tid: 0, args: { section: d.sections.join('/'), workgroups: d.workgroups.join('x'), ...(d.flops !== undefined ? { flops: d.flops } : {}), ...(d.bytes !== undefined ? { bytes: d.bytes } : {}) } });
    }
    // parents before children at equal start: longer first
    events.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    return { traceEvents: events, displayTimeUnit: 'ms', otherData: { method: this.method, gpuMs: this.gpuMs, wallMs: this.wallMs } };
  }
}

export interface RooflinePeaks {
  /** attainable GEMM rate, GFLOP/s (e.g. a measured 1024^3 matmul) */
  gemmGflops: number;
  /** attainable memory bandwidth, GB/s of bytes read + written (e.g. a measured large buffer copy) */
  copyGBps: number;
}

export type RooflineClass = 'gemm' | 'memory' | 'unclassified';

export interface RooflineRow {
  kernel: string;
  class: RooflineClass;
  calls: number;
  totalMs: number;
  /** fraction of the profile's GPU time */
  share: number;
  /** summed stated work of its classified dispatches */
  flops: number;
  bytes: number;
  /** total work / total time of its classified dispatches as a fraction of the roofline; null when unclassified */
  attained: number | null;
  /** GPU time of its dispatches below the threshold */
  belowMs: number;
  /** GPU time of its dispatches that stated no cost */
  unclassifiedMs: number;
}

export interface RooflineSummary {
  gpuMs: number;
  gemmMs: number;
  memoryMs: number;
  unclassifiedMs: number;
  /** GPU time of classified dispatches below the threshold, in all and per class */
  belowMs: number;
  gemmBelowMs: number;
  memoryBelowMs: number;
  /** the same as fractions of all GPU time */
  belowShare: number;
  gemmBelowShare: number;
  memoryBelowShare: number;
  unclassifiedShare: number;
}

export interface RooflineReport {
  peaks: RooflinePeaks;
  threshold: number;
  rows: RooflineRow[];
  summary: RooflineSummary;
}

function classOf(hasFlops: boolean, hasBytes: boolean): RooflineClass {
  return hasFlops ? 'gemm' : hasBytes ? 'memory' : 'unclassified';
}

/** max(flops / time / GEMM rate, bytes / time / copy bandwidth); a dispatch of no measurable time attains Infinity (0 without work). */
function attainedFraction(flops: number, bytes: number, durMs: number, peaks: RooflinePeaks): number {
  const work = Math.max(flops / peaks.gemmGflops, bytes / peaks.copyGBps); // ns at the roofline
  if (!(durMs > 0)) return work > 0 ? Infinity : 0;
  return work / (durMs * 1e6);
}

/** The summary as one sentence. */
export function rooflineSummaryLine(r: RooflineReport): string {
  const s = r.summary;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const t = Math.round(100 * r.threshold);
  return `${pct(s.belowShare)} of GPU time in dispatches below ${t}% of their roofline (GEMM-class ${pct(s.gemmBelowShare)}, memory-bound ${pct(s.memoryBelowShare)}); ` +
    `${pct(s.unclassifiedShare)} unclassified (no stated cost); GEMM-class ${pct(s.gpuMs > 0 ? s.gemmMs / s.gpuMs : 0)} and memory-bound ${pct(s.gpuMs > 0 ? s.memoryMs / s.gpuMs : 0)} of GPU time ` +
    `[roofs: GEMM ${r.peaks.gemmGflops.toFixed(1)} GFLOP/s, copy ${r.peaks.copyGBps.toFixed(1)} GB/s]`;
}

/** Plain-text roofline table (`limit` kernels) and the summary line. */
export function rooflineTable(r: RooflineReport, limit = 30): string {
  const shown = r.rows.slice(0, limit);
  const w = Math.max('kernel'.length, ...shown.map((x) => x.kernel.length));
  const t = Math.round(100 * r.threshold);
  const lines = [`${'kernel'.padEnd(w)}  ${'class'.padEnd(12)}  ${'calls'.padStart(7)}  ${'total ms'.padStart(11)}  ${'share'.padStart(6)}  ${'attained'.padStart(14)}  ${'% roof'.padStart(7)}  ${`<${t}% ms`.padStart(11)}`];
  for (const x of shown) {
    const rate = x.attained === null ? '' : x.class === 'gemm' ? `${(x.flops / Math.max(1e-12, x.totalMs - x.unclassifiedMs) / 1e6).toFixed(2)} GFLOP/s` : `${(x.bytes / Math.max(1e-12, x.totalMs - x.unclassifiedMs) / 1e6).toFixed(2)} GB/s`;
    const roof = x.attained === null ? '-' : `${(100 * x.attained).toFixed(1)}%`;
    lines.push(`${x.kernel.padEnd(w)}  ${x.class.padEnd(12)}  ${String(x.calls).padStart(7)}  ${x.totalMs.toFixed(3).padStart(11)}  ${(100 * x.share).toFixed(1).padStart(5)}%  ${rate.padStart(14)}  ${roof.padStart(7)}  ${x.belowMs.toFixed(3).padStart(11)}`);
  }
  if (r.rows.length > limit) lines.push(`... ${r.rows.length - limit} more`);
  lines.push('');
  lines.push(rooflineSummaryLine(r));
  return lines.join('\n');
}

function rows(acc: Map<string, { calls: number; total: number }>, totalMs: number): ProfileRow[] {
  return [...acc]
    .map(([name, a]) => ({ name, calls: a.calls, totalMs: a.total, meanMs: a.calls ? a.total / a.calls : 0, share: totalMs > 0 ? a.total / totalMs : 0 }))
    .sort((a, b) => b.totalMs - a.totalMs || a.name.localeCompare(b.name));
}

/** The cost's stated fields (finite, non-negative: anything else is left out, i.e. unclassified). */
function costFields(c: DispatchCost | undefined): { flops?: number; bytes?: number } {
  const out: { flops?: number; bytes?: number } = {};
  if (c?.flops !== undefined && Number.isFinite(c.flops) && c.flops >= 0) out.flops = c.flops;
  if (c?.bytes !== undefined && Number.isFinite(c.bytes) && c.bytes >= 0) out.bytes = c.bytes;
  return out;
}

const QUERIES_PER_SET = 2048; // two per dispatch; WebGPU allows up to 4096 queries per set

interface PendingDispatch {
  kernel: string;
  cost: DispatchCost | undefined;
  sections: string[];
  workgroups: [number, number, number];
  /** timestamps: query set index and slot */
  set: number;
  slot: number;
  /** fallback: host times in ms */
  submitted: number;
  done: Promise<number> | null;
}

/**
 * What the Runtime keeps while a profile is being recorded: the open section stack, the dispatches, and (timestamp
 * method) the query sets and their resolve buffers.
 */
export class ProfileRecorder {
  readonly method: ProfileMethod;
  private readonly device: GPUDevice;
  readonly stack: string[] = [];
  readonly pending: PendingDispatch[] = [];
  readonly sections: SectionRecord[] = [];
  private sets: { querySet: GPUQuerySet; resolve: GPUBuffer; readback: GPUBuffer; used: number; resolved: boolean }[] = [];

  constructor(device: GPUDevice, method: ProfileMethod) {
    this.device = device;
    this.method = method;
  }

  enter(name: string): SectionRecord {
    const s: SectionRecord = { name, parents: [...this.stack], first: this.pending.length, end: this.pending.length };
    this.sections.push(s);
    this.stack.push(name);
    return s;
  }

  leave(s: SectionRecord): void {
    // sections close in order even when an async section ends late: pop back to (and including) this one
    const at = this.stack.lastIndexOf(s.name);
    if (at >= 0) this.stack.length = at;
    s.end = this.pending.length;
  }

  /** Timestamp method: the query slots for the next dispatch; the set that fills up is resolved on `encoder`. */
  nextTimestampSlots(encoder: GPUCommandEncoder): { querySet: GPUQuerySet; begin: number; end: number; set: number } {
    let cur = this.sets[this.sets.length - 1];
    if (!cur || cur.used + 2 > QUERIES_PER_SET) {
      if (cur) this.resolveSet(encoder, cur);
      const querySet = this.device.createQuerySet({ type: 'timestamp', count: QUERIES_PER_SET, label: 'profile timestamps' });
      const bytes = QUERIES_PER_SET * 8;
      const resolve = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'profile resolve' });
      const readback = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'profile readback' });
      cur = { querySet, resolve, readback, used: 0, resolved: false };
      this.sets.push(cur);
    }
    const begin = cur.used;
    cur.used += 2;
    return { querySet: cur.querySet, begin, end: begin + 1, set: this.sets.length - 1 };
  }

  private resolveSet(encoder: GPUCommandEncoder, s: { querySet: GPUQuerySet; resolve: GPUBuffer; readback: GPUBuffer; used: number; resolved: boolean }): void {
    if (s.resolved || s.used === 0) return;
    encoder.resolveQuerySet(s.querySet, 0, s.used, s.resolve, 0);
    encoder.copyBufferToBuffer(s.resolve, 0, s.readback, 0, s.used * 8);
    s.resolved = true;
  }

  /** Resolve the last (partly filled) query set on `encoder`; call before the final submit. */
  resolveAll(encoder: GPUCommandEncoder): void {
    for (const s of this.sets) this.resolveSet(encoder, s);
  }

  get needsResolve(): boolean {
    return this.sets.some((s) => !s.resolved && s.used > 0);
  }

  recordTimestamp(kernel: string, workgroups: [number, number, number], cost: DispatchCost | undefined, set: number, slot: number): void {
    this.pending.push({ kernel, cost, sections: [...this.stack], workgroups, set, slot, submitted: 0, done: null });
  }

  recordSubmitted(kernel: string, workgroups: [number, number, number], cost: DispatchCost | undefined, submitted: number, done: Promise<number>): void {
    this.pending.push({ kernel, cost, sections: [...this.stack], workgroups, set: -1, slot: -1, submitted, done });
  }

  /** After all work is submitted and done: read the timestamps (or await the host times) into a Profile. */
  async finish(wallStart: number, now: () => number): Promise<Profile> {
    const records: DispatchRecord[] = [];
    if (this.method === 'timestamps') {
      const stamps: BigUint64Array[] = [];
      for (const s of this.sets) {
        await s.readback.mapAsync(GPUMapMode.READ);
        stamps.push(new BigUint64Array(s.readback.getMappedRange().slice(0)));
        s.readback.unmap();
      }
      let origin: bigint | null = null;
      for (const d of this.pending) {
        const t = stamps[d.set][d.slot];
        if (origin === null || t < origin) origin = t;
      }
      for (const d of this.pending) {
        const b = stamps[d.set][d.slot];
        const e = stamps[d.set][d.slot + 1];
        // a clock that steps backwards (or an unwritten query) gives 0, never a negative duration
        const dur = e > b ? Number(e - b) / 1e6 : 0;
        records.push({ kernel: d.kernel, sections: d.sections, workgroups: d.workgroups, startMs: Number(b - (origin ?? b)) / 1e6, durMs: dur, ...costFields(d.cost) });
      }
    } else {
      const ends = await Promise.all(this.pending.map((d) => d.done!));
      const origin = this.pending.length ? this.pending[0].submitted : 0;
      let prevEnd = -Infinity;
      for (let i = 0; i < this.pending.length; i++) {
        const d = this.pending[i];
        const end = Math.max(ends[i], prevEnd);
        const start = Math.min(Math.max(d.submitted, prevEnd), end);
        records.push({ kernel: d.kernel, sections: d.sections, workgroups: d.workgroups, startMs: start - origin, durMs: end - start, ...costFields(d.cost) });
        prevEnd = end;
      }
    }
    this.destroy();
    return new Profile(this.method, records, this.sections, now() - wallStart);
  }

  destroy(): void {
    for (const s of this.sets) {
      s.querySet.destroy();
      s.resolve.destroy();
      s.readback.destroy();
    }
    this.sets = [];
  }
}
