// The GPU runtime: one device, its real limits and features, a buffer pool, a pipeline cache, and a command stream
// that batches dispatches into one encoder and submits only when a result is read back (or the batch is full), so
// the host waits as rarely as possible. Errors are made loud: bindings are checked against the reflected WGSL before
// encoding, and GPU-side validation / out-of-memory errors and device loss are turned into JavaScript errors that name
// the kernel or allocation at fault at the next sync point (read, sync).
import { BufferPool, markWritten, type PooledBuffer } from './pool.js';
import type { Defines, EntryInfo, KernelFamily, ScalarType } from './kernel.js';
import { Profile, ProfileRecorder, type DispatchCost, type ProfileMethod } from './profile.js';
import type { TuneCache } from './tune.js';

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** true for software adapters (lavapipe, SwiftShader, WARP) */
  isCPU: boolean;
}

export interface RuntimeOptions {
  /** dispatches per submitted command buffer before an automatic flush */
  maxBatch?: number;
  /** tune kernel configurations at first use (see autotune) */
  autotune?: boolean;
}

/** Anything with a buffer that a dispatch can bind: tensors implement this. */
export interface Bindable {
  readonly gpu: PooledBuffer;
  readonly dtype: ScalarType;
  readonly label?: string;
  /** bytes actually used (a pooled buffer may be larger) */
  readonly byteLength: number;
}

export type UniformValues = Record<string, number | boolean>;
export type Bindings = Record<string, Bindable | UniformValues>;

interface PendingCheck {
  what: string;
  promise: Promise<GPUError | null>;
}

const UNIFORM_ALIGN = 256;
const ARENA_BYTES = 1 << 16;

export class Runtime {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly pool: BufferPool;
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  readonly hasTimestamps: boolean;

  private pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; entry: EntryInfo }>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchKernels: string[] = [];
  private readonly maxBatch: number;
  private arena: GPUBuffer;
  private arenaCpu = new Uint8Array(ARENA_BYTES);
  private arenaUsed = 0;
  private checks: PendingCheck[] = [];
  private lost: GPUDeviceLostInfo | null = null;
  private uncaptured: string[] = [];
  /** set only inside profile(); dispatch() and section() test it once and do nothing more when it is null */
  private recorder: ProfileRecorder | null = null;
  /** fill every new allocation with NaN (tests) */
  poison = false;
  /** dispatches recorded since creation (for tests and benches) */
  dispatchCount = 0;
  submitCount = 0;
  /**
   * Autotuning (src/runtime/tune.ts): on, a kernel family's shape class seen for the first time runs its default
   * configuration and is timed, over every candidate, at the next sync(); the winner is used from then on. Off (the
   * default): winners found in tuneCache are used, else the hand-picked defaults; nothing is timed.
   */
  autotune = false;
  /** winners per adapter and shape class, kept between processes (Node: a JSON file; browsers: localStorage) */
  tuneCache: TuneCache | null = null;
  /** set by the tuner when shape classes wait to be timed; sync() runs it first */
  pendingTune: (() => Promise<unknown>) | null = null;

  constructor(device: GPUDevice, adapter: AdapterSummary, opts: RuntimeOptions = {}) {
    this.device = device;
    this.adapter = adapter;
    this.limits = device.limits;
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.hasF16 = this.features.has('shader-f16');
    this.hasSubgroups = this.features.has('subgroups');
    this.hasTimestamps = this.features.has('timestamp-query');
    this.maxBatch = opts.maxBatch ?? 256;
    this.autotune = opts.autotune ?? false;
    this.pool = new BufferPool(device, Number(this.limits.maxBufferSize), (label, create) => {
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('validation');
      const b = create();
      this.checks.push({ what: `allocation '${label}'`, promise: this.device.popErrorScope() });
      this.checks.push({ what: `allocation '${label}' (out of memory)`, promise: this.device.popErrorScope() });
      return b;
    });
    this.arena = this.newArena();
    device.lost.then((info) => {
      this.lost = info;
    });
    device.addEventListener?.('uncapturederror', (ev: Event) => {
      this.uncaptured.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  private newArena(): GPUBuffer {
    return this.device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform arena' });
  }

  private assertAlive(what: string): void {
    if (this.lost) throw new Error(`GPU device lost (${this.lost.reason}): ${this.lost.message}; while ${what}`);
  }

  /**
   * A pooled storage buffer. With `poison` on (tests), every allocation is filled with 0xFF bytes first: NaN in f32
   * and f16, -1 in i32, so an element a kernel forgot to write shows up in the result.
   */
  alloc(bytes: number, label: string): PooledBuffer {
    const b = this.pool.acquire(bytes, label);
    if (this.poison) {
      this.flush();
      this.device.queue.writeBuffer(b.buffer, 0, new Uint8Array(b.size).fill(0xff));
    }
    return b;
  }

  /** Compile (once) and cache the pipeline of one entry point of a kernel family. */
  pipeline(kernel: KernelFamily, entryPoint: string, defines: Defines = {}, constants: Record<string, number> = {}) {
    const variant = kernel.variant(defines);
    const key = `${kernel.name}|${entryPoint}|${variant.key}|${JSON.stringify(constants)}`;
    let p = this.pipelines.get(key);
    if (p) return p;
    const entry = kernel.entry(entryPoint, defines);
    const label = `${kernel.name}.${entryPoint}`;
    const storage = entry.bindings.filter((b) => b.kind !== 'uniform').length;
    if (storage > this.limits.maxStorageBuffersPerShaderStage) {
      throw new Error(`kernel ${label} binds ${storage} storage buffers; this adapter allows ${this.limits.maxStorageBuffersPerShaderStage} per shader stage`);
    }
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: variant.code, label: kernel.name });
    const layout = this.device.createBindGroupLayout({
      label,
      entries: entry.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.kind } })),
    });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout], label }),
      compute: { module, entryPoint, constants },
    });
    const scope = this.device.popErrorScope();
    this.checks.push({ what: `compiling kernel ${label}`, promise: scope });
    p = { pipeline, layout, entry };
    this.pipelines.set(key, p);
    return p;
  }

  /**
   * Record one dispatch. `bindings` maps every binding name the entry point uses to a tensor (storage) or a plain
   * object of uniform members; anything missing, extra or of the wrong element type is an error naming both.
   * `cost` (the dispatch's work: flops for GEMM-class kernels, minimum bytes moved for memory-bound ones) is kept only
   * while profiling, for Profile.roofline().
   */
  dispatch(
    kernel: KernelFamily,
    entryPoint: string,
    bindings: Bindings,
    workgroups: [number, number?, number?],
    opts: { defines?: Defines; constants?: Record<string, number>; cost?: DispatchCost } = {},
  ): void {
    const label = `${kernel.name}.${entryPoint}`;
    this.assertAlive(`dispatching ${label}`);
    const { pipeline, layout, entry } = this.pipeline(kernel, entryPoint, opts.defines, opts.constants);
    const wg = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    for (const n of wg) {
      if (!Number.isInteger(n) || n < 0 || n > maxWg) {
        throw new Error(`kernel ${label}: workgroup count ${wg.join('x')} is outside 0..${maxWg}`);
      }
    }
    const names = new Set(Object.keys(bindings));
    const entries: GPUBindGroupEntry[] = [];
    for (const b of entry.bindings) {
      const v = bindings[b.name];
      if (v === undefined) throw new Error(`kernel ${label}: binding '${b.name}' is missing`);
      names.delete(b.name);
      if (b.kind === 'uniform') {
        if (isBindable(v)) throw new Error(`kernel ${label}: binding '${b.name}' is a uniform struct, got a tensor`);
        const offset = this.packUniform(label, b.name, b.members ?? [], b.size ?? 0, v);
        entries.push({ binding: b.binding, resource: { buffer: this.arena, offset, size: Math.max(16, b.size ?? 16) } });
      } else {
        if (!isBindable(v)) throw new Error(`kernel ${label}: binding '${b.name}' is a storage buffer, got ${typeof v}`);
        if (v.gpu.released) throw new Error(`kernel ${label}: binding '${b.name}' uses a released buffer (${v.label ?? 'unnamed'})`);
        if (b.elementType && v.dtype !== b.elementType) {
          throw new Error(`kernel ${label}: binding '${b.name}' expects ${b.elementType} elements, got a ${v.dtype} tensor`);
        }
        const size = Math.max(4, Math.ceil(v.byteLength / 4) * 4);
        if (size > this.limits.maxStorageBufferBindingSize) {
          throw new Error(`kernel ${label}: binding '${b.name}' is ${size} bytes, over the adapter's maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize})`);
        }
        entries.push({ binding: b.binding, resource: { buffer: v.gpu.buffer, offset: 0, size } });
        if (b.kind === 'storage') markWritten(v.gpu);
      }
    }
    if (names.size) throw new Error(`kernel ${label}: unexpected binding(s) ${[...names].join(', ')}`);
    if (wg[0] * wg[1] * wg[2] === 0) return;
    const group = this.device.createBindGroup({ layout, entries, label });
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.recorder) {
      this.profiledDispatch(this.recorder, this.encoder, label, pipeline, group, wg as [number, number, number], opts.cost);
      return;
    }
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.batchKernels.push(label);
    this.dispatchCount++;
    if (this.batchKernels.length >= this.maxBatch) this.flush();
  }

  /** One dispatch in its own compute pass, timed by timestamp queries or by submitting it alone (see profile.ts). */
  private profiledDispatch(rec: ProfileRecorder, encoder: GPUCommandEncoder, label: string, pipeline: GPUComputePipeline, group: GPUBindGroup, wg: [number, number, number], cost: DispatchCost | undefined): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    const timed = rec.method === 'timestamps' ? rec.nextTimestampSlots(encoder) : null;
    const pass = encoder.beginComputePass(
      timed ? { timestampWrites: { querySet: timed.querySet, beginningOfPassWriteIndex: timed.begin, endOfPassWriteIndex: timed.end } } : {},
    );
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    pass.end();
    this.batchKernels.push(label);
    this.dispatchCount++;
    if (timed) {
      rec.recordTimestamp(label, wg, cost, timed.set, timed.begin);
      if (this.batchKernels.length >= this.maxBatch) this.flush();
    } else {
      const submitted = performance.now();
      this.flush();
      rec.recordSubmitted(label, wg, cost, submitted, this.device.queue.onSubmittedWorkDone().then(() => performance.now()));
    }
  }

  /** The open section names while profiling (autograd books backward time under the forward's sections), else null. */
  sectionStack(): string[] | null {
    return this.recorder ? [...this.recorder.stack] : null;
  }

  /** True while profile() records. */
  get profiling(): boolean {
    return this.recorder !== null;
  }

  /**
   * Run `fn` as a named section of the current profile (nested sections give paths such as 'encoder/layer.3').
   * Without a profile it just calls fn. An async fn's section ends when its promise settles.
   */
  section<R>(name: string, fn: () => R): R {
    const rec = this.recorder;
    if (!rec) return fn();
    const s = rec.enter(name);
    let result: R;
    try {
      result = fn();
    } catch (e) {
      rec.leave(s);
      throw e;
    }
    if (result instanceof Promise) return result.finally(() => rec.leave(s)) as R;
    rec.leave(s);
    return result;
  }

  /**
   * Run `fn` (sync or async) and time every dispatch it records. Work recorded before is finished first and not
   * counted. method 'auto' (default) uses GPU timestamp queries when the device has 'timestamp-query', else the
   * per-dispatch submit fallback; 'fallback' forces the latter. Profiles do not nest.
   */
  async profile<R>(fn: () => R | Promise<R>, opts: { method?: 'auto' | ProfileMethod } = {}): Promise<{ result: R; profile: Profile }> {
    if (this.recorder) throw new Error('profile: a profile is already being recorded (profiles do not nest; use section() inside)');
    const want = opts.method ?? 'auto';
    if (want === 'timestamps' && !this.hasTimestamps) throw new Error("profile: method 'timestamps' needs the device feature 'timestamp-query', which this device lacks");
    const method: ProfileMethod = want === 'fallback' || !this.hasTimestamps ? 'fallback' : 'timestamps';
    await this.sync();
    const rec = new ProfileRecorder(this.device, method);
    this.recorder = rec;
    const t0 = performance.now();
    let result: R;
    try {
      result = await fn();
      if (rec.needsResolve) {
        if (!this.encoder) this.encoder = this.device.createCommandEncoder();
        if (this.pass) {
          this.pass.end();
          this.pass = null;
        }
        rec.resolveAll(this.encoder);
      }
      await this.sync();
    } catch (e) {
      this.recorder = null;
      // recorded passes still reference the query sets: submit and finish them before the sets are destroyed
      this.flush();
      await this.device.queue.onSubmittedWorkDone();
      rec.destroy();
      throw e;
    }
    this.recorder = null;
    return { result, profile: await rec.finish(t0, () => performance.now()) };
  }

  private packUniform(label: string, name: string, members: { name: string; offset: number; type: ScalarType }[], size: number, values: UniformValues): number {
    const need = Math.ceil(Math.max(size, 16) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    if (this.arenaUsed + need > ARENA_BYTES) this.flush();
    const offset = this.arenaUsed;
    this.arenaUsed += need;
    const view = new DataView(this.arenaCpu.buffer, offset, Math.max(size, 16));
    const seen = new Set(Object.keys(values));
    for (const m of members) {
      const v = values[m.name];
      if (v === undefined) throw new Error(`kernel ${label}: uniform '${name}.${m.name}' is missing`);
      seen.delete(m.name);
      const x = typeof v === 'boolean' ? Number(v) : v;
      if (!Number.isFinite(x)) throw new Error(`kernel ${label}: uniform '${name}.${m.name}' is ${x}`);
      if (m.type === 'f32') view.setFloat32(m.offset, x, true);
      else if (m.type === 'u32') {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`kernel ${label}: uniform '${name}.${m.name}' must be a u32, got ${x}`);
        view.setUint32(m.offset, x, true);
      } else if (m.type === 'i32') {
        if (!Number.isInteger(x)) throw new Error(`kernel ${label}: uniform '${name}.${m.name}' must be an i32, got ${x}`);
        view.setInt32(m.offset, x, true);
      } else throw new Error(`kernel ${label}: uniform '${name}.${m.name}' has unsupported type ${m.type}`);
    }
    if (seen.size) throw new Error(`kernel ${label}: uniform '${name}' has no member(s) ${[...seen].join(', ')}`);
    return offset;
  }

  /** Copy between buffers inside the command stream (ends the open compute pass). */
  copy(src: Bindable, dst: Bindable, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.assertAlive('copying');
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder.copyBufferToBuffer(src.gpu.buffer, srcOffset, dst.gpu.buffer, dstOffset, Math.ceil(bytes / 4) * 4);
    markWritten(dst.gpu);
    this.batchKernels.push('copy');
  }

  /** Submit everything recorded so far. Does not wait. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, this.arenaUsed);
    const kernels = this.batchKernels;
    this.device.pushErrorScope('validation');
    this.device.queue.submit([this.encoder.finish()]);
    this.checks.push({ what: `a batch of ${kernels.length} dispatch(es): ${summarize(kernels)}`, promise: this.device.popErrorScope() });
    this.submitCount++;
    this.encoder = null;
    this.batchKernels = [];
    this.arenaUsed = 0;
  }

  /** Writes go through the queue, which runs before any not-yet-submitted dispatch: flush first so order holds. */
  write(dst: Bindable, data: ArrayBufferView, dstOffset = 0): void {
    this.assertAlive(`uploading ${dst.label ?? ''}`);
    this.flush();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(dst.gpu.buffer, dstOffset, padded);
    markWritten(dst.gpu);
  }

  /** Read bytes back: submits pending work, waits for it, and reports any GPU error that happened meanwhile. */
  async readBytes(src: Bindable, bytes: number, srcOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(size, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `read ${src.label ?? ''}` });
    if (size > 0) {
      const stagingBuffer: PooledBuffer = { buffer: staging, size, label: staging.label, released: false, writeStamp: 0 };
      this.copy(src, { gpu: stagingBuffer, dtype: 'u32', byteLength: size }, size, srcOffset);
    }
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await this.sync();
      this.assertAlive(`reading ${src.label ?? 'a buffer'}`);
      throw new Error(`reading ${src.label ?? 'a buffer'} failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange(0, size).slice(0);
    staging.unmap();
    staging.destroy();
    await this.sync();
    return out.slice(0, bytes);
  }

  /** Wait for all submitted work and throw the first GPU error recorded since the last sync, naming its source. */
  async sync(): Promise<void> {
    if (this.pendingTune && !this.recorder) {
      const tune = this.pendingTune;
      this.pendingTune = null;
      await tune();
    }
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    const checks = this.checks;
    this.checks = [];
    const errors = await Promise.all(checks.map((c) => c.promise));
    this.assertAlive('waiting for the GPU');
    for (let i = 0; i < errors.length; i++) {
      const e = errors[i];
      if (e) throw new Error(`GPU error while ${checks[i].what}: ${e.message}`);
    }
    if (this.uncaptured.length) {
      const msg = this.uncaptured.join('; ');
      this.uncaptured = [];
      throw new Error(`uncaptured GPU error: ${msg}`);
    }
  }

  destroy(): void {
    this.flush();
    this.pool.trim();
    this.arena.destroy();
    this.device.destroy();
  }
}

function isBindable(v: unknown): v is Bindable {
  return typeof v === 'object' && v !== null && 'gpu' in v && 'dtype' in v;
}

function padTo4(b: Uint8Array): Uint8Array {
  const p = new Uint8Array(Math.ceil(b.byteLength / 4) * 4);
  p.set(b);
  return p;
}

function summarize(kernels: string[]): string {
  const counts = new Map<string, number>();
  for (const k of kernels) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts].map(([k, n]) => (n > 1 ? `${k} x${n}` : k)).join(', ');
}

/** Classify an adapter from its info; software rasterizers mean the JS thread competes with the GPU for cores. */
export function summarizeAdapter(info: GPUAdapterInfo | undefined, isFallback = false): AdapterSummary {
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const device = info?.device ?? '';
  const description = info?.description ?? '';
  const text = `${vendor} ${architecture} ${device} ${description}`.toLowerCase();
  const isCPU = isFallback || /llvmpipe|lavapipe|swiftshader|warp|software|cpu/.test(text) || (info as any)?.type === 'CPU';
  return { vendor, architecture, device, description, isCPU };
}

/** Request a device with the adapter's real limits and every feature we can use. */
export async function createRuntime(gpu: GPU, opts: RuntimeOptions & { powerPreference?: GPUPowerPreference } = {}): Promise<Runtime> {
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new Error(
      'No WebGPU adapter found. In a browser, use one with WebGPU enabled (Chrome/Edge 113+, or --enable-unsafe-webgpu). ' +
        'In Node on Linux without a GPU, install the software Vulkan driver: run `npm run setup` (it installs ' +
        'mesa-vulkan-drivers from bookworm-backports), or `apt-get install -t bookworm-backports mesa-vulkan-drivers`.',
    );
  }
  const wanted: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  // Every limit at the adapter's maximum (the default device limits are the spec's minimums, e.g. a 128 MiB storage
  // binding even on GPUs that allow 4 GiB): the named ones the engine sizes its work by, plus whatever else the
  // adapter enumerates. Alignment limits ('min...') are also best at the adapter's value.
  const l = adapter.limits as unknown as Record<string, unknown>;
  const named = [
    'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxStorageBuffersPerShaderStage',
    'maxComputeWorkgroupsPerDimension', 'maxUniformBufferBindingSize', 'maxBindingsPerBindGroup',
  ];
  const requiredLimits: Record<string, number> = {};
  const names = new Set(named);
  for (const k in l) names.add(k);
  for (const k of names) {
    const value = l[k];
    if (typeof value === 'number' && Number.isFinite(value)) requiredLimits[k] = value;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'ser' });
  const info = (adapter as any).info as GPUAdapterInfo | undefined;
  return new Runtime(device, summarizeAdapter(info, (adapter as any).isFallbackAdapter), opts);
}
