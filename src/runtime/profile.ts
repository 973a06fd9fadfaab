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

export interface DispatchRecord {
  /** `${kernel family}.${entry point}` */
  kernel: string;
  /** enclosing sections, outermost first */
  sections: string[];
  workgroups: [number, number, number];
  /** start and duration in milliseconds, on the profile's own timeline (0 = first dispatch's start) */
  startMs: number;
  durMs: number;
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
      events.push({ name: d.kernel, cat: 'kernel', ph: 'X', ts: d.startMs * 1000, dur: d.durMs * 1000, pid: 0, tid: 0, args: { section: d.sections.join('/'), workgroups: d.workgroups.join('x') } });
    }
    // parents before children at equal start: longer first
    events.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    return { traceEvents: events, displayTimeUnit: 'ms', otherData: { method: this.method, gpuMs: this.gpuMs, wallMs: this.wallMs } };
  }
}

function rows(acc: Map<string, { calls: number; total: number }>, totalMs: number): ProfileRow[] {
  return [...acc]
    .map(([name, a]) => ({ name, calls: a.calls, totalMs: a.total, meanMs: a.calls ? a.total / a.calls : 0, share: totalMs > 0 ? a.total / totalMs : 0 }))
    .sort((a, b) => b.totalMs - a.totalMs || a.name.localeCompare(b.name));
}

const QUERIES_PER_SET = 2048; // two per dispatch; WebGPU allows up to 4096 queries per set

interface PendingDispatch {
  kernel: string;
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

  recordTimestamp(kernel: string, workgroups: [number, number, number], set: number, slot: number): void {
    this.pending.push({ kernel, sections: [...this.stack], workgroups, set, slot, submitted: 0, done: null });
  }

  recordSubmitted(kernel: string, workgroups: [number, number, number], submitted: number, done: Promise<number>): void {
    this.pending.push({ kernel, sections: [...this.stack], workgroups, set: -1, slot: -1, submitted, done });
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
        records.push({ kernel: d.kernel, sections: d.sections, workgroups: d.workgroups, startMs: Number(b - (origin ?? b)) / 1e6, durMs: dur });
      }
    } else {
      const ends = await Promise.all(this.pending.map((d) => d.done!));
      const origin = this.pending.length ? this.pending[0].submitted : 0;
      let prevEnd = -Infinity;
      for (let i = 0; i < this.pending.length; i++) {
        const d = this.pending[i];
        const end = Math.max(ends[i], prevEnd);
        const start = Math.min(Math.max(d.submitted, prevEnd), end);
        records.push({ kernel: d.kernel, sections: d.sections, workgroups: d.workgroups, startMs: start - origin, durMs: end - start });
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
