// conv1d (PyTorch Conv1d: cross-correlation, zero padding, groups) with its backward next to it. Three strategies
// (convConfig.strategy, picked per adapter like matmul's GEMM):
//   'subgroup' (CPU adapters with 8-wide subgroups): every pass an implicit GEMM (rows = output channels, columns =
//              output times, contraction = (input channel, tap)) with no im2col buffer: the input is read through
//              16-byte aligned windows of a zero-padded copy; grad input = one stride-1 GEMM per stride phase with
//              the taps reversed; grad weight = a GEMM over (batch, time).
//   'tiled'    (GPUs): forward and grad input as implicit GEMMs on workgroup-memory tiles; grad weight direct.
//   'direct':  register-tiled direct convolution: grad input as a transposed convolution, grad weight as per-chunk
//              partial sums over (batch, time) added by a second pass (no float atomics).
// Grad bias is a per-channel reduction. Tile sizes are template parameters of kernels/conv1d.wgsl.
// With convConfig.strategy 'auto', each pass (forward, grad input, grad weight) of each shape class gets its strategy
// and tile from the autotuner (src/runtime/tune.ts): a cached or freshly timed winner among convCandidates(), else
// the hand-picked per-adapter default below.
import source from '../../kernels/conv1d.wgsl';
import { defineKernel, type Defines } from '../runtime/kernel.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { ceilDiv, grid1d } from './grid.js';
import { hasSubgroupGemm, TILED_CANDIDATES, tuneInput } from './matmul.js';
import { chooseConfig, bucket, type Candidate } from '../runtime/tune.js';
import type { DerivedCache } from '../runtime/derived.js';

const SUBGROUP_MARKER = '// ==== SUBGROUP KERNEL ====';
const markerAt = source.indexOf(SUBGROUP_MARKER);
if (markerAt < 0) throw new Error('kernels/conv1d.wgsl: subgroup kernel marker missing');
/** Portable part only: compiles on every adapter. */
export const conv1dKernel = defineKernel('conv1d', source.slice(0, markerAt));
/** Whole file with `enable subgroups;`: only compiled where the adapter has the feature. */
export const conv1dSubgroupKernel = defineKernel('conv1d_subgroup', `enable subgroups;\n${source}`);

/**
 * 'subgroup': implicit GEMM on 8-wide subgroups (conv1dSubgroup, conv1dWeightGradSubgroup): CPU adapters (lavapipe).
 * 'tiled':    implicit GEMM on workgroup-memory tiles (conv1dTiled, forward and input gradient; the weight gradient
 *             runs on the direct kernel): GPUs, as matmul's 'tiled'.
 * 'direct':   the register-tiled direct convolution (conv1dForward, conv1dBackwardInput, conv1dBackwardWeight):
 *             CPU adapters without 8-wide subgroups, and small channel counts on the subgroup path.
 */
export type ConvStrategy = 'subgroup' | 'tiled' | 'direct';

export const convConfig = {
  /** 'auto' picks per adapter (see ConvStrategy); tests and benches force one */
  strategy: 'auto' as 'auto' | ConvStrategy,
  /** subgroup kernel: 8-row blocks per tile (1..4), capped by the channels per group */
  rowBlocks: 4,
  /** subgroup weight-gradient kernel: time steps per contraction step (4 or 8) */
  timeSteps: 4 as 4 | 8,
  /** tiled kernel: threads (tgM x tgN), outputs per thread (ttM x ttN), contraction slice (bk) */
  tiled: { tgM: 16, tgN: 16, ttM: 4, ttN: 4, bk: 16 } as ConvTile,
};

export interface ConvTile {
  tgM: number;
  tgN: number;
  ttM: number;
  ttN: number;
  bk: number;
}

/** One conv1d configuration: what the tuner chooses between, per pass. */
export interface ConvConfig {
  strategy: ConvStrategy;
  rowBlocks: number;
  /** subgroup weight gradient only: time steps per step (4: smaller per-lane state; 8: fewer loop trips) */
  timeSteps: 4 | 8;
  tiled: ConvTile;
}

export type ConvPass = 'forward' | 'grad-input' | 'grad-weight';

/** The tiled kernel's candidate tiles: the GEMM's (same scheme, same limits). */
const CONV_TILES: ConvTile[] = TILED_CANDIDATES.map((t) => ({ tgM: t.wgM, tgN: t.wgN, ttM: t.tptM, ttN: t.tptN, bk: t.bk }));

/** Every configuration any adapter may get (tests run each against the float64 reference). */
export function allConvCandidates(): ConvConfig[] {
  return [
    ...[8, 4].flatMap((ts) => [1, 2, 3, 4].map((rb): ConvConfig => ({ strategy: 'subgroup', rowBlocks: rb, timeSteps: ts as 4 | 8, tiled: CONV_TILES[0] }))),
    { strategy: 'direct', rowBlocks: 4, timeSteps: 8, tiled: CONV_TILES[0] },
    ...CONV_TILES.map((t): ConvConfig => ({ strategy: 'tiled', rowBlocks: 4, timeSteps: 8, tiled: { ...t } })),
  ];
}

/** Today's hand-picked configuration: convConfig with the per-adapter strategy. */
export function defaultConvConfig(rt: Runtime): ConvConfig {
  return { strategy: convStrategy(rt), rowBlocks: convConfig.rowBlocks, timeSteps: convConfig.timeSteps, tiled: { ...convConfig.tiled } };
}

/** Kernel path a pass of this geometry takes under a strategy (the subgroup kernels have geometric limits). */
function passPath(pass: ConvPass, g: Geometry, strategy: ConvStrategy): ConvStrategy {
  if (strategy === 'subgroup' && g.stride <= SUBGROUP_MAX_STRIDE) {
    // (fewer than 8 input channels per group, e.g. the first layer's audio input, would leave most of an 8-row tile
    // idle; fewer than 32 (channel, tap) columns, e.g. the first layer's 1 x 10, most of a 32-column tile)
    if (pass === 'forward') return 'subgroup';
    if (pass === 'grad-input' && g.cinG >= 8) return 'subgroup';
    if (pass === 'grad-weight' && g.cinG * (g.ksize <= 2 ? g.ksize : roundUp(g.ksize, 4)) >= 32) return 'subgroup';
  }
  // the weight gradient has no tiled kernel: it runs the direct one
  if (strategy === 'tiled' && pass !== 'grad-weight') return 'tiled';
  return 'direct';
}

/** Rows of the pass's GEMM per group: output channels (forward, grad weight) or input channels (grad input). */
function passRows(pass: ConvPass, g: Geometry): number {
  return pass === 'grad-input' ? g.cinG : g.coutG;
}

/** Id of what a configuration really runs for this pass and geometry (equal ids: the same kernels). */
export function effectiveId(pass: ConvPass, g: Geometry, c: ConvConfig): string {
  const path = passPath(pass, g, c.strategy);
  if (path === 'subgroup') {
    const rb = `sg-rb${rowBlocks(c.rowBlocks, passRows(pass, g))}`;
    return pass === 'grad-weight' ? `${rb}-t${timeSteps(c.timeSteps)}` : rb;
  }
  if (path === 'tiled') return `tiled-${c.tiled.tgM}x${c.tiled.tgN}-${c.tiled.ttM}x${c.tiled.ttN}-k${c.tiled.bk}`;
  return 'direct';
}

/**
 * The candidates timed for a pass on this adapter, one per distinct kernel path: with 8-wide subgroups, rowBlocks
 * 1..4, the direct kernels and the default tiled tile (CPU adapters); otherwise the direct kernels and the tiled set.
 */
export function convCandidates(rt: Runtime, pass: ConvPass, g: Geometry): Candidate<ConvConfig>[] {
  const all = allConvCandidates();
  const fits = (t: ConvTile) =>
    t.tgM * t.tgN <= rt.limits.maxComputeInvocationsPerWorkgroup &&
    t.tgN <= rt.limits.maxComputeWorkgroupSizeX &&
    t.tgM <= rt.limits.maxComputeWorkgroupSizeY &&
    4 * t.bk * (t.tgM * t.ttM + t.tgN * t.ttN) <= rt.limits.maxComputeWorkgroupStorageSize;
  const tiled = all.filter((c) => c.strategy === 'tiled' && fits(c.tiled));
  const direct = all.filter((c) => c.strategy === 'direct');
  const list = hasSubgroupGemm(rt)
    ? [...all.filter((c) => c.strategy === 'subgroup'), ...direct, ...(rt.adapter.isCPU ? tiled.slice(0, 1) : tiled)]
    : [...direct, ...tiled];
  const seen = new Map<string, Candidate<ConvConfig>>();
  for (const config of list) {
    const id = effectiveId(pass, g, config);
    if (!seen.has(id)) seen.set(id, { id, config });
  }
  return [...seen.values()];
}

/** Shape class of a conv pass: channels per group, time and batch bucketed; kernel size, stride and groups exact. */
function convShapeClass(pass: ConvPass, g: Geometry, dtype: string): string {
  return `${pass} ${dtype} ci${bucket(g.cinG)} co${bucket(g.coutG)} g${g.groups} k${g.ksize} s${g.stride} t${bucket(g.tout)} b${bucket(g.batch)}`;
}

/** The configuration a pass uses: forced by convConfig.strategy, else tuned / cached / default. */
function convConfigFor(rt: Runtime, pass: ConvPass, g: Geometry, dtype: Tensor['dtype']): ConvConfig {
  const def = defaultConvConfig(rt);
  if (convConfig.strategy !== 'auto') return def;
  const candidates = convCandidates(rt, pass, g);
  const defId = effectiveId(pass, g, def);
  // a default that is not among the candidates (tests set other tiles) is used as is: nothing to tune against
  if (!candidates.some((c) => c.id === defId)) return def;
  return chooseConfig(rt, 'conv1d', convShapeClass(pass, g, dtype), candidates, defId, () => ({
    shape: `${pass} x [${g.batch}, ${g.cin}, ${g.tin}] w [${g.cout}, ${g.cinG}, ${g.ksize}] s${g.stride} p${g.padding} g${g.groups} ${dtype}`,
    flops: (2 * g.batch * g.cout * g.cinG * g.ksize * g.tout),
    prepare: () => convTuneProblem(rt, pass, g, dtype),
  }));
}


/** Random inputs of the geometry; run(config) records one pass and frees its output. */
function convTuneProblem(rt: Runtime, pass: ConvPass, g: Geometry, dtype: Tensor['dtype']) {
  const x = tuneInput(rt, [g.batch, g.cin, g.tin], dtype, 'tune.x');
  const w = tuneInput(rt, [g.cout, g.cinG, g.ksize], dtype, 'tune.w');
  const gy = tuneInput(rt, [g.batch, g.cout, g.tout], dtype, 'tune.gy');
  return {
    run: (config: ConvConfig) => {
      const out = conv1dPass(rt, pass, g, config, x, w, gy);
      out.dispose();
    },
    dispose: () => {
      for (const t of [x, w, gy]) t.dispose();
    },
  };
}

/**
 * One pass of conv1d with an explicit configuration and no autograd: forward (x, w -> y, no bias), grad input
 * (gy, w -> dx) or grad weight (gy, x -> dw). What the tuner times and what tests run for every candidate.
 */
export function conv1dPass(rt: Runtime, pass: ConvPass, g: Geometry, config: ConvConfig, x: Tensor, w: Tensor, gy: Tensor): Tensor {
  if (pass === 'forward') {
    const y = Tensor.empty(rt, [g.batch, g.cout, g.tout], x.dtype, 'conv1d');
    conv1dForwardWith(rt, g, config, x, w, null, y);
    return y;
  }
  return pass === 'grad-input' ? conv1dBackwardInput(rt, g, gy, w, config) : conv1dBackwardWeight(rt, g, gy, x, config);
}

/** Geometry of a conv1d call (validated as conv1d() does). */
export function convGeometry(xShape: readonly number[], wShape: readonly number[], opts: Conv1dOptions = {}): Geometry {
  const stride = opts.stride ?? 1;
  const padding = opts.padding ?? 0;
  const groups = opts.groups ?? 1;
  if (xShape.length !== 3 || wShape.length !== 3) {
    throw new Error(`conv1d: x must be [B, Cin, T] and w [Cout, Cin/groups, K]; got x [${xShape}] w [${wShape}]`);
  }
  const [batch, cin, tin] = xShape;
  const [cout, cinG, ksize] = wShape;
  if (!(Number.isInteger(stride) && stride >= 1 && Number.isInteger(padding) && padding >= 0 && Number.isInteger(groups) && groups >= 1)) {
    throw new Error(`conv1d: bad options stride ${stride}, padding ${padding}, groups ${groups}`);
  }
  if (cin % groups !== 0 || cout % groups !== 0 || cinG !== cin / groups) {
    throw new Error(`conv1d: Cin ${cin} and Cout ${cout} must be divisible by groups ${groups}, and w [${wShape}] must have Cin/groups = ${cin / groups} input channels`);
  }
  const tout = Math.floor((tin + 2 * padding - ksize) / stride) + 1;
  if (ksize < 1 || tout < 1) throw new Error(`conv1d: kernel ${ksize} does not fit input length ${tin} with padding ${padding}`);
  return { batch, cin, cout, tin, tout, ksize, stride, padding, cinG, coutG: cout / groups, groups };
}

export function convStrategy(rt: Runtime): ConvStrategy {
  const s = convConfig.strategy;
  if (s === 'subgroup') {
    if (!hasSubgroupGemm(rt)) throw new Error("conv1d: strategy 'subgroup' needs the 'subgroups' feature with 8-wide subgroups");
    return s;
  }
  if (s === 'tiled' || s === 'direct') return s;
  if (!rt.adapter.isCPU) return 'tiled';
  return hasSubgroupGemm(rt) ? 'subgroup' : 'direct';
}

const WG = 64;
/** kernel sizes and strides up to this get baked into the pipeline */
const SMALL_KERNEL = 16;
/** aim for at least this many threads in the weight gradient before splitting time into chunks */
const WEIGHT_GRAD_TARGET_THREADS = 8192;
const MIN_CHUNK = 32;
const MAX_PARTIAL_BYTES = 64 << 20;

// Tile shapes, measured on lavapipe (2 cores): a storage load costs ~5 FMAs, so a thread's
// tile is as large as its registers allow. Small kernels: 8 channels x 16 times (8 x 8 with one input channel, where
// the output writes dominate). Long kernels (positional conv, K = 128): 2 channels x 32 times, the input window then
// costs ~1 load per tap and the weights 2.
function outputTile(k: number, channelsIn: number): { tm: number; tn: number } {
  if (k > SMALL_KERNEL) return { tm: 2, tn: 32 };
  return { tm: 8, tn: channelsIn === 1 ? 8 : 16 };
}

/** K baked in for small kernels (their tap loops unroll), S for small strides (the weight gradient's window shift) */
function fixedDefines(g: Geometry): { KFIX: number; SFIX: number } {
  return { KFIX: g.ksize <= SMALL_KERNEL ? g.ksize : 0, SFIX: g.stride <= SMALL_KERNEL ? g.stride : 0 };
}

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  groups?: number;
  /**
   * Where the forward may keep w relaid for the implicit GEMM (taps padded to a multiple of 4) between calls, while
   * w is unchanged: a model passes its own cache (no gradient through w needed, see DerivedCache.get).
   */
  derived?: DerivedCache;
}

export interface Geometry {
  batch: number;
  cin: number;
  cout: number;
  tin: number;
  tout: number;
  ksize: number;
  stride: number;
  padding: number;
  cinG: number;
  coutG: number;
  groups: number;
}

/**
 * Channels per thread: a tile must not straddle two groups (its weights and inputs come from one group), so with
 * groups > 1 it is the largest power of two <= 8 dividing the channels per group; with one group the last tile is
 * clipped instead, and small channel counts get a small tile.
 */
function channelTile(perGroup: number, groups: number, max: number): number {
  if (groups === 1) {
    let t = 1;
    while (t < max && t < perGroup) t *= 2;
    return t;
  }
  let t = max;
  while (perGroup % t !== 0) t /= 2;
  return t;
}

function uniforms(g: Geometry, extra: Partial<{ hasBias: number; chunk: number; tapBlocks: number; n: number; count: number }> = {}) {
  return {
    batch: g.batch,
    cin: g.cin,
    cout: g.cout,
    tin: g.tin,
    tout: g.tout,
    ksize: g.ksize,
    stride: g.stride,
    padding: g.padding,
    cinG: g.cinG,
    coutG: g.coutG,
    hasBias: extra.hasBias ?? 0,
    chunk: extra.chunk ?? 0,
    tapBlocks: extra.tapBlocks ?? 0,
    n: extra.n ?? 0,
    count: extra.count ?? 0,
  };
}

function checkDtype(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== ts[0].dtype || (t.dtype !== 'f32' && t.dtype !== 'f16')) {
      throw new Error(`${op}: tensors must all be f32 or all f16; ${t.label} is ${t.dtype}, ${ts[0].label} is ${ts[0].dtype}`);
    }
  }
}

/** x [B, Cin, T], w [Cout, Cin/groups, K], bias [Cout] or null -> [B, Cout, floor((T + 2*padding - K)/stride) + 1] */
export function conv1d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv1dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== g.cout)) throw new Error(`conv1d: bias [${bias.shape}] must be [${g.cout}]`);
  checkDtype('conv1d', x, w, ...(bias ? [bias] : []));
  const rt = x.rt;

  const y = Tensor.empty(rt, [g.batch, g.cout, g.tout], x.dtype, 'conv1d');
  conv1dForwardWith(rt, g, convConfigFor(rt, 'forward', g, x.dtype), x, w, bias, y, opts.derived);

  const inputs = bias ? [x, w, bias] : [x, w];
  // keep only what the requested gradients need: x for grad w, w for grad x
  const saved = [...(w.requiresGrad ? [x] : []), ...(x.requiresGrad ? [w] : [])];
  return record('conv1d', y, inputs, saved, (gy, needs) => [
    needs[0] ? conv1dBackwardInput(rt, g, gy, w, convConfigFor(rt, 'grad-input', g, gy.dtype)) : null,
    needs[1] ? conv1dBackwardWeight(rt, g, gy, x, convConfigFor(rt, 'grad-weight', g, gy.dtype)) : null,
    ...(bias ? [needs[2] ? conv1dBackwardBias(rt, g, gy) : null] : []),
  ]);
}

function conv1dForwardWith(rt: Runtime, g: Geometry, config: ConvConfig, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor, derived?: DerivedCache): void {
  const path = passPath('forward', g, config.strategy);
  if (path === 'subgroup') {
    if (!hasSubgroupGemm(rt)) throw new Error("conv1d: strategy 'subgroup' needs the 'subgroups' feature with 8-wide subgroups");
    forwardSubgroup(rt, g, x, w, bias, y, config.rowBlocks, derived);
  } else if (path === 'tiled') {
    const { batch, cout, groups, cinG, cin, tin, tout, ksize, stride, padding } = g;
    tiledGemm(rt, config.tiled, {
      x, w, bias, y, batch, rows: cout, groups, inG: cinG, inTotal: cin, tin, cols: tout, taps: ksize, ksize,
      colStride: stride, posOffset: -padding, tapDir: 1, wGroupStride: g.coutG * cinG * ksize, wRowStride: cinG * ksize,
      wChanStride: ksize, tap0: 0, tapStep: 1, yRowLen: tout, outStride: 1, outOffset: 0,
    });
  } else forwardDirect(rt, g, x, w, bias, y);
}

function forwardDirect(rt: Runtime, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor): void {
  const { ksize, cinG, cout, tout, batch, groups } = g;
  const tile = outputTile(ksize, cinG);
  const tm = channelTile(g.coutG, groups, tile.tm);
  rt.dispatch(conv1dKernel, 'conv1dForward', { p: uniforms(g, { hasBias: bias ? 1 : 0 }), x, w, bias: bias ?? w, y }, grid1d(ceilDiv(tout, tile.tn) * ceilDiv(cout, tm) * batch, WG), { cost: { flops: 2 * g.batch * g.cout * g.cinG * g.ksize * g.tout },
    defines: { T: x.dtype, WG, TM: tm, TN: tile.tn, ...fixedDefines(g) },
  });
}

function conv1dBackwardInput(rt: Runtime, g: Geometry, gy: Tensor, w: Tensor, config: ConvConfig): Tensor {
  const dx = Tensor.empty(rt, [g.batch, g.cin, g.tin], gy.dtype, 'conv1d.grad_x');
  const path = passPath('grad-input', g, config.strategy);
  if (path === 'subgroup' && backwardInputSubgroup(rt, g, gy, w, dx, config.rowBlocks)) return dx;
  if (path === 'tiled') {
    backwardInputTiled(rt, g, gy, w, dx, config.tiled);
    return dx;
  }
  const tile = outputTile(g.ksize, g.coutG);
  const tm = channelTile(g.cinG, g.groups, tile.tm);
  // positions q per stride phase, from the first q with t >= 0 in any phase to the last with t < Tin in any
  const qCount = Math.floor((g.tin - 1 + g.padding) / g.stride) - Math.floor(g.padding / g.stride) + 1;
  const threads = ceilDiv(qCount, tile.tn) * ceilDiv(g.cin, tm) * g.stride * g.batch;
  rt.dispatch(conv1dKernel, 'conv1dBackwardInput', { p: uniforms(g), w, dy: gy, dx }, grid1d(threads, WG), { cost: { flops: 2 * g.batch * g.cout * g.cinG * g.ksize * g.tout },
    defines: { T: gy.dtype, WG, TM: tm, TN: tile.tn, ...fixedDefines(g) },
  });
  return dx;
}

function conv1dBackwardWeight(rt: Runtime, g: Geometry, gy: Tensor, x: Tensor, config: ConvConfig): Tensor {
  const dw = Tensor.empty(rt, [g.cout, g.cinG, g.ksize], gy.dtype, 'conv1d.grad_w');
  if (passPath('grad-weight', g, config.strategy) === 'subgroup' && backwardWeightSubgroup(rt, g, gy, x, dw, config.rowBlocks, config.timeSteps)) return dw;
  // thread tile: TM output channels x CI input channels x TN consecutive taps (all of a small kernel's taps)
  const small = g.ksize <= SMALL_KERNEL;
  const tn = small ? g.ksize : 16;
  const tm = channelTile(g.coutG, g.groups, small ? 8 : 2);
  const ci = small ? (g.ksize <= 4 ? Math.min(2, g.cinG) : 1) : Math.min(4, g.cinG);
  const tapBlocks = ceilDiv(g.ksize, tn);
  const threads = tapBlocks * ceilDiv(g.cinG, ci) * ceilDiv(g.cout, tm);
  const elements = g.cout * g.cinG * g.ksize;
  let chunks = Math.min(ceilDiv(WEIGHT_GRAD_TARGET_THREADS, threads), ceilDiv(g.tout, MIN_CHUNK), Math.floor(MAX_PARTIAL_BYTES / (4 * elements)));
  chunks = Math.max(1, chunks);
  const chunk = ceilDiv(g.tout, chunks);
  chunks = ceilDiv(g.tout, chunk);
  const direct = chunks === 1 && gy.dtype === 'f32';
  const partial = direct ? dw : Tensor.empty(rt, [chunks, elements], 'f32', 'conv1d.grad_w.partial');
  rt.dispatch(conv1dKernel, 'conv1dBackwardWeight', { p: uniforms(g, { chunk, tapBlocks, count: chunks }), x, dy: gy, partial }, grid1d(threads * chunks, WG), { cost: { flops: 2 * g.batch * g.cout * g.cinG * g.ksize * g.tout },
    defines: { T: gy.dtype, WG, TM: tm, TN: tn, CI: ci, ...fixedDefines(g) },
  });
  if (!direct) {
    rt.dispatch(conv1dKernel, 'sumPartials', { p: uniforms(g, { n: elements, count: chunks }), parts: partial, sum: dw }, grid1d(elements, WG), { cost: { bytes: 4 * elements * chunks + dw.byteLength },
      defines: { T: gy.dtype, WG },
    });
    partial.dispose();
  }
  return dw;
}

function conv1dBackwardBias(rt: Runtime, g: Geometry, gy: Tensor): Tensor {
  const db = Tensor.empty(rt, [g.cout], gy.dtype, 'conv1d.grad_bias');
  rt.dispatch(conv1dKernel, 'conv1dBackwardBias', { p: uniforms(g), dy: gy, sum: db }, [g.cout], { defines: { T: gy.dtype, WG }, cost: { bytes: gy.byteLength + db.byteLength } });
  return db;
}

// ---- implicit GEMM on the subgroup kernels (conv1dSubgroup, conv1dWeightGradSubgroup in kernels/conv1d.wgsl) ----

/** longest stride the subgroup kernels take (their per-lane input windows are 3*stride + 4 and 7*stride + 4 long) */
const SUBGROUP_MAX_STRIDE = 8;

const roundUp = (n: number, m: number) => m * ceilDiv(n, m);

/**
 * Padded copy of `src` viewed as `rows` rows of `len`: rows of `pitch` (a multiple of 4) holding each source row at
 * offset `left`, zeros elsewhere (see padRows).
 */
function padRows(rt: Runtime, g: Geometry, src: Tensor, rows: number, len: number, left: number, pitch: number, label: string): Tensor {
  if (pitch % 4 !== 0) throw new Error(`conv1d: padded row pitch ${pitch} must be a multiple of 4`);
  const n = rows * pitch;
  const dst = Tensor.empty(rt, [n], src.dtype, label);
  const p = { ...uniforms(g, { n, chunk: pitch, count: rows }), tin: len, padding: left };
  rt.dispatch(conv1dKernel, 'padRows', { p, padSrc: src, padDst: dst }, grid1d(n / 4, WG), { defines: { T: src.dtype, WG }, cost: { bytes: src.byteLength + dst.byteLength } });
  return dst;
}

interface ImplicitGemm {
  /** padded input (padRows), rows of `pitch` */
  xp: Tensor;
  w: Tensor;
  bias: Tensor | null;
  y: Tensor;
  batch: number;
  /** output rows (channels) in all, split evenly over the groups */
  rows: number;
  groups: number;
  /** input channels per group and in all */
  inG: number;
  inTotal: number;
  pitch: number;
  /** output columns computed per row */
  cols: number;
  ksize: number;
  stride: number;
  /** column c, tap k reads xp[c*stride + shift + k] */
  shift: number;
  /** weight addressing (see the kernel's ConvGemm) */
  wGroupStride: number;
  wRowStride: number;
  wChanStride: number;
  wBase: number;
  reverse: boolean;
  /** output row length; column c is stored at time c * outStride + outOffset */
  yRowLen: number;
  outStride: number;
  outOffset: number;
}

/**
 * Step shape of conv1dSubgroup for a kernel of `taps` taps (see the kernel's header): KB taps x CS channels per step,
 * KP = taps per (row, channel) in the weight layout (padded so that every step's weights are one aligned vec4).
 */
export function subgroupStep(taps: number, stride: number, inG: number) {
  const kb = Math.min(taps, 4);
  const cs = taps <= 2 ? Math.min(4 / taps, inG) : 1;
  const kp = taps <= 2 ? taps : roundUp(taps, 4);
  return { KB: kb, CS: cs, KP: kp, NW: 3 * stride + kb, tapBlocks: ceilDiv(taps, kb) };
}

/** Row pitch of the padded input for conv1dSubgroup: every window of every column tile lies inside the row. */
function gemmPitch(left: number, len: number, cols: number, stride: number, taps: number, maxShift: number, inG: number): number {
  const st = subgroupStep(taps, stride, inG);
  return roundUp(Math.max(left + len, roundUp(cols, 32) * stride + maxShift + st.tapBlocks * st.KB + st.NW + 4), 4);
}

function checkGrid(rt: Runtime, grid: [number, number, number]): void {
  const max = rt.limits.maxComputeWorkgroupsPerDimension;
  if (grid.some((n) => n > max)) throw new Error(`conv1d: grid [${grid}] exceeds the adapter's ${max} workgroups per dimension`);
}

function timeSteps(ts: number): 4 | 8 {
  if (ts !== 4 && ts !== 8) throw new Error(`conv1d: timeSteps must be 4 or 8, got ${ts}`);
  return ts;
}

function rowBlocks(rb: number, rowsG: number): number {
  if (!(Number.isInteger(rb) && rb >= 1 && rb <= 4)) throw new Error(`conv1d: rowBlocks must be 1..4, got ${rb}`);
  return Math.min(rb, ceilDiv(rowsG, 8));
}

function implicitGemm(rt: Runtime, a: ImplicitGemm, rbWanted: number): void {
  const rowsG = a.rows / a.groups;
  const rb = rowBlocks(rbWanted, rowsG);
  const { tapBlocks, KP, KB, CS, NW } = subgroupStep(a.ksize, a.stride, a.inG);
  if (a.reverse && KB !== 4) throw new Error('conv1d: reversed weights need 4 taps per step');
  // 16-byte weight loads: every step's first weight aligned (steps of CS channels x KB taps, or 4-tap blocks)
  // a step's CS channels x KB taps are read as one run: several channels per step need contiguous channels
  if (CS > 1 && a.wChanStride !== KP) throw new Error('conv1d: steps over several channels need contiguous weight channels');
  const vecW = [a.wBase, a.wGroupStride, a.wRowStride, CS * a.wChanStride].every((n) => n % 4 === 0);
  const ash = a.shift % 4;
  const defines: Defines = {
    T: a.xp.dtype, RB: `${rb}u`, KB: `${KB}u`, CS: `${CS}u`, SS: `${a.stride}u`, NW: `${NW}u`, ASH: `${ash}u`,
    NCH: `${ceilDiv(NW + ash, 4)}u`, VEC_W: String(vecW), MASK_W: String(a.inG % CS !== 0), REVERSE: String(a.reverse), ONE_TAP_BLOCK: String(tapBlocks === 1),
  };
  const grid: [number, number, number] = [ceilDiv(rowsG, 8 * rb) * a.groups, ceilDiv(a.cols, 32), a.batch];
  checkGrid(rt, grid);
  const cg = {
    rows: a.rows, rowsG, inG: a.inG, inTotal: a.inTotal, pitch: a.pitch, cols: a.cols, ksize: a.ksize, shift: a.shift,
    wGroupStride: a.wGroupStride, wRowStride: a.wRowStride, wChanStride: a.wChanStride, wBase: a.wBase, yRowLen: a.yRowLen, outStride: a.outStride, outOffset: a.outOffset,
    hasBias: a.bias ? 1 : 0, tapBlocks, kpad: KP, wLen: a.w.size,
  };
  rt.dispatch(conv1dSubgroupKernel, 'conv1dSubgroup', { cg, xv: a.xp, wv: a.w, ws: a.w, cbias: a.bias ?? a.w, cy: a.y }, grid, { defines, cost: { flops: 2 * a.batch * a.rows * a.inG * a.ksize * a.cols } });
}

/** Taps of stride phase r of the input gradient (at least one: a phase past the last tap runs on a zero tap). */
function phaseTaps(g: Geometry, r: number): number {
  return Math.max(1, ceilDiv(g.ksize - Math.min(r, g.ksize), g.stride));
}

/** Element offset of each stride phase's block in relayoutWeights' input-gradient layout, and the total size. */
function phaseBlocks(g: Geometry): { offsets: number[]; size: number } {
  const offsets: number[] = [];
  let size = 0;
  for (let r = 0; r < g.stride; r++) {
    offsets.push(size);
    size += g.cin * g.coutG * subgroupStep(phaseTaps(g, r), 1, g.coutG).KP;
  }
  return { offsets, size };
}

/** w relaid by relayoutWeights: forward (taps padded to KP), or every stride phase of the input gradient (phaseBlocks) */
function relayoutWeights(rt: Runtime, g: Geometry, w: Tensor, pass: 'forward' | 'grad-input', kp: number): Tensor {
  const n = pass === 'forward' ? g.cout * g.cinG * kp : phaseBlocks(g).size;
  const wt = Tensor.empty(rt, [n], w.dtype, pass === 'forward' ? 'conv1d.weights.padded' : 'conv1d.grad_x.weights');
  const p = { ...uniforms(g, { n, count: g.ksize, chunk: kp }), stride: pass === 'forward' ? 0 : g.stride };
  // forward: 4 elements per thread; input gradient: a thread per (input channel, 4 output channels), in tiles of 8
  // input x 32 output channels per 64 threads
  const threads = pass === 'forward' ? ceilDiv(n, 4) : ceilDiv(g.cin, 8) * ceilDiv(g.coutG, 32) * 64;
  rt.dispatch(conv1dKernel, 'relayoutWeights', { p, w, wt }, grid1d(threads, WG), { defines: { T: w.dtype, WG }, cost: { bytes: w.byteLength + wt.byteLength } });
  return wt;
}

/**
 * The subgroup kernels read padded copies of their inputs (rows realigned to 16 bytes): a copy that would not fit one
 * storage binding (a long clip the feature encoder's chunking sized to the unpadded tensor) sends the pass to the
 * direct kernels, which bind the tensors as they are.
 */
function paddedFits(rt: Runtime, rows: number, pitch: number, dtype: Tensor['dtype']): boolean {
  const bytes = rows * pitch * (dtype === 'f16' ? 2 : 4);
  return bytes <= rt.limits.maxStorageBufferBindingSize && bytes <= rt.limits.maxBufferSize;
}

/** Forward on the subgroup kernel: x padded (x[t] = xp[t + P]); weights whose taps need padding to KP relaid. */
function forwardSubgroup(rt: Runtime, g: Geometry, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor, rb: number, derived?: DerivedCache): void {
  const { KP } = subgroupStep(g.ksize, g.stride, g.cinG);
  const pitch = gemmPitch(g.padding, g.tin, g.tout, g.stride, g.ksize, 0, g.cinG);
  if (!paddedFits(rt, g.batch * g.cin, pitch, x.dtype)) return forwardDirect(rt, g, x, w, bias, y);
  const relaid = () => relayoutWeights(rt, g, w, 'forward', KP);
  const wp = KP === g.ksize ? w : derived ? derived.get(`conv1d.forward-weights#${w.id}.kp${KP}`, [w], relaid) : relaid();
  const xp = padRows(rt, g, x, g.batch * g.cin, g.tin, g.padding, pitch, 'conv1d.x.padded');
  implicitGemm(rt, {
    xp, w: wp, bias, y, batch: g.batch, rows: g.cout, groups: g.groups, inG: g.cinG, inTotal: g.cin, pitch,
    cols: g.tout, ksize: g.ksize, stride: g.stride, shift: 0, wGroupStride: g.coutG * g.cinG * KP, wRowStride: g.cinG * KP,
    wChanStride: KP, wBase: 0, reverse: false,
    yRowLen: g.tout, outStride: 1, outOffset: 0,
  }, rb);
  xp.dispose();
  if (wp !== w) wp.dispose();
}

/**
 * Input gradient, one implicit GEMM per stride phase r: input times t = q*S + r - P receive taps k = r + S*j from
 * dy[q - j], j < J_r = ceil((K - r) / S): a stride-1 convolution of dy (padding J_r - 1 - qmin) with the phase's taps
 * reversed (weights relaid for every phase by one dispatch, into per-phase blocks [Cin][CoutG * KP_r]). Each phase
 * contracts over its own taps only (K = 3, S = 2: 2 and 1, not 2 and 2 with a zero). Every t lies in exactly one
 * phase, so each dx element is written once.
 */
function backwardInputSubgroup(rt: Runtime, g: Geometry, gy: Tensor, w: Tensor, dx: Tensor, rb: number): boolean {
  const phases: { r: number; J: number; qmin: number; cols: number; pad: number }[] = [];
  for (let r = 0; r < g.stride; r++) {
    // a phase past the last tap (r >= K) still runs, on one zero tap: its dx entries must be written (zeros)
    const J = phaseTaps(g, r);
    const qmin = Math.max(0, Math.ceil((g.padding - r) / g.stride));
    const qmax = Math.floor((g.tin - 1 + g.padding - r) / g.stride);
    if (qmax >= qmin) phases.push({ r, J, qmin, cols: qmax - qmin + 1, pad: J - 1 - qmin });
  }
  // one padded dy for every phase: left padding at least the largest phase padding, each phase's shift the
  // difference. A window misaligned by shift % 4 can cost one more vec4 load per channel step, so of the 4 lefts
  // giving every shift mod 4 the one with the fewest loads wins (K = 3, S = 2: the 1-tap phase aligned).
  const minLeft = Math.max(0, ...phases.map((f) => f.pad));
  const loadsOf = (left: number) => phases.reduce((sum, f) => {
    const st = subgroupStep(f.J, 1, g.coutG);
    const chunks = ceilDiv(st.NW + ((left - f.pad) % 4), 4);
    return sum + ceilDiv(g.coutG, st.CS) * st.tapBlocks * (rb + st.CS * chunks);
  }, 0);
  let left = minLeft;
  for (let l = minLeft + 1; l < minLeft + 4; l++) if (loadsOf(l) < loadsOf(left)) left = l;
  const pitch = Math.max(...phases.map((f) => gemmPitch(left, g.tout, f.cols, 1, f.J, left - f.pad, g.coutG)));
  if (!paddedFits(rt, g.batch * g.cout, pitch, gy.dtype)) return false;
  const dyp = padRows(rt, g, gy, g.batch * g.cout, g.tout, left, pitch, 'conv1d.grad_x.dy.padded');
  // stride 1 with whole 4-tap blocks: w read in place (transposed, taps reversed); else every phase relaid at once
  const direct = g.stride === 1 && g.ksize % 4 === 0;
  const wt = direct ? w : relayoutWeights(rt, g, w, 'grad-input', 0);
  const { offsets } = phaseBlocks(g);
  for (const f of phases) {
    const { KP } = subgroupStep(f.J, 1, g.coutG);
    const addressing = direct
      ? { wGroupStride: g.coutG * g.cinG * g.ksize, wRowStride: g.ksize, wChanStride: g.cinG * g.ksize, wBase: 0, reverse: true }
      : { wGroupStride: g.cinG * g.coutG * KP, wRowStride: g.coutG * KP, wChanStride: KP, wBase: offsets[f.r], reverse: false };
    implicitGemm(rt, {
      xp: dyp, w: wt, bias: null, y: dx, batch: g.batch, rows: g.cin, groups: g.groups, inG: g.coutG, inTotal: g.cout,
      pitch, cols: f.cols, ksize: f.J, stride: 1, shift: left - f.pad, ...addressing,
      yRowLen: g.tin, outStride: g.stride, outOffset: f.qmin * g.stride + f.r - g.padding,
    }, rb);
  }
  if (wt !== w) wt.dispose();
  dyp.dispose();
  return true;
}

/**
 * Weight gradient on conv1dWeightGradSubgroup: rows = output channels, columns = (input channel, tap padded to KP),
 * contraction over (batch, time) inside each workgroup, from padded copies of x and dy; writes dw directly.
 */
function backwardWeightSubgroup(rt: Runtime, g: Geometry, gy: Tensor, x: Tensor, dw: Tensor, rbWanted: number, tsWanted: number): boolean {
  const rb = rowBlocks(rbWanted, g.coutG);
  const kb = g.ksize <= 2 ? g.ksize : 4;
  const kp = g.ksize <= 2 ? g.ksize : roundUp(g.ksize, 4);
  const ts = timeSteps(tsWanted);
  const nw = (ts - 1) * g.stride + kb;
  const dyPitch = roundUp(g.tout, 8);
  const pitch = roundUp(Math.max(g.padding + g.tin, dyPitch * g.stride + kp + nw + 4), 4);
  if (!paddedFits(rt, g.batch * g.cin, pitch, x.dtype) || !paddedFits(rt, g.batch * g.cout, dyPitch, gy.dtype)) return false;
  const grid: [number, number, number] = [ceilDiv(g.coutG, 8 * rb) * g.groups, ceilDiv(g.cinG * kp, 32), 1];
  checkGrid(rt, grid);
  const xp = padRows(rt, g, x, g.batch * g.cin, g.tin, g.padding, pitch, 'conv1d.grad_w.x.padded');
  const dyp = padRows(rt, g, gy, g.batch * g.cout, g.tout, 0, dyPitch, 'conv1d.grad_w.dy.padded');
  const wg = {
    rows: g.cout, rowsG: g.coutG, inG: g.cinG, inTotal: g.cin, pitch, tout: g.tout, dyPitch, batch: g.batch,
    ksize: g.ksize, kpad: kp,
  };
  const defines: Defines = { T: gy.dtype, RB: `${rb}u`, KB: `${kb}u`, CS: `${4 / kb}u`, SS: `${g.stride}u`, WT: `${ts}u`, WNW: `${nw}u`, WNCH: `${ceilDiv(nw, 4)}u`, WCOLS: `${g.ksize === 3 ? 3 : 4}u` };
  rt.dispatch(conv1dSubgroupKernel, 'conv1dWeightGradSubgroup', { wg, xv: xp, dyv: dyp, dwOut: dw }, grid, { defines, cost: { flops: 2 * g.batch * g.cout * g.cinG * g.ksize * g.tout } });
  xp.dispose();
  dyp.dispose();
  return true;
}

// ---- implicit GEMM on workgroup-memory tiles (conv1dTiled in kernels/conv1d.wgsl) ----

interface TiledGemm {
  x: Tensor;
  w: Tensor;
  bias: Tensor | null;
  y: Tensor;
  batch: number;
  rows: number;
  groups: number;
  inG: number;
  inTotal: number;
  tin: number;
  cols: number;
  taps: number;
  ksize: number;
  colStride: number;
  posOffset: number;
  tapDir: number;
  wGroupStride: number;
  wRowStride: number;
  wChanStride: number;
  tap0: number;
  tapStep: number;
  yRowLen: number;
  outStride: number;
  outOffset: number;
}

function tiledGemm(rt: Runtime, t: ConvTile, a: TiledGemm): void {
  const rowsG = a.rows / a.groups;
  const grid: [number, number, number] = [ceilDiv(a.cols, t.tgN * t.ttN), ceilDiv(rowsG, t.tgM * t.ttM) * a.groups, a.batch];
  checkGrid(rt, grid);
  const { x, w, bias, y, batch: _b, groups: _g, ...rest } = a;
  const ct = { ...rest, rowsG, hasBias: bias ? 1 : 0 };
  rt.dispatch(conv1dKernel, 'conv1dTiled', { ct, tx: x, tw: w, tbias: bias ?? w, ty: y }, grid, { cost: { flops: 2 * a.batch * a.rows * a.inG * a.taps * a.cols },
    defines: { T: x.dtype, TG_M: `${t.tgM}u`, TG_N: `${t.tgN}u`, TT_M: `${t.ttM}u`, TT_N: `${t.ttN}u`, TBK: `${t.bk}u` },
  });
}

/** Input gradient on conv1dTiled, one GEMM per stride phase (as backwardInputSubgroup, without relaid weights). */
function backwardInputTiled(rt: Runtime, g: Geometry, gy: Tensor, w: Tensor, dx: Tensor, tile: ConvTile): void {
  const J = ceilDiv(g.ksize, g.stride);
  for (let r = 0; r < g.stride; r++) {
    const qmin = Math.max(0, Math.ceil((g.padding - r) / g.stride));
    const qmax = Math.floor((g.tin - 1 + g.padding - r) / g.stride);
    if (qmax < qmin) continue;
    tiledGemm(rt, tile, {
      x: gy, w, bias: null, y: dx, batch: g.batch, rows: g.cin, groups: g.groups, inG: g.coutG, inTotal: g.cout, tin: g.tout,
      cols: qmax - qmin + 1, taps: J, ksize: g.ksize, colStride: 1, posOffset: qmin, tapDir: -1,
      wGroupStride: g.coutG * g.cinG * g.ksize, wRowStride: g.ksize, wChanStride: g.cinG * g.ksize, tap0: r, tapStep: g.stride,
      yRowLen: g.tin, outStride: g.stride, outOffset: qmin * g.stride + r - g.padding,
    });
  }
}
