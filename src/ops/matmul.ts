// matmul / linear: Y = act(op(A) op(B) + bias), batched, bias and activation fused into the GEMM's epilogue.
// Forward and backward sit side by side; the backward reuses the same GEMM kernels with transposes:
//   dZ = dY * act'(.)   (gelu: from the saved pre-activation z; tanh: from the output y, tanh' = 1 - y^2)
//   dA = dZ op(B)^T, dB = op(A)^T dZ (summed over batches when B is shared), dbias = column sums of dZ.
// Why save z for gelu instead of recomputing it: recomputing costs a whole extra GEMM in backward; z costs the same
// memory PyTorch's unfused Linear + GELU keeps (GELU saves its input), and is only written when a gradient is needed.
//
// GEMM strategy is a per-adapter choice (matmulConfig.strategy = 'auto'):
//   'subgroup'  CPU adapters with 8-wide subgroups (lavapipe): loads dominate there, so a subgroup of 8 lanes shares
//               each loaded row of A through constant-lane shuffles (see kernels/matmul.wgsl). Tile: 8*rowBlocks x 32.
//               lavapipe, 2 cores: ~57-64 GFLOP/s at 1024^3 and the wav2vec2 linear shapes (bench/gemm.ts).
//   'tiled'     everything else (real GPUs) and the portable fallback: workgroup-memory tiles (~7 GFLOP/s on lavapipe).
// With matmulConfig.strategy 'auto' the configuration (strategy, rowBlocks, tiled tile) of each shape class (M, N, K,
// batch bucketed; transposes, dtype, 4-alignment) comes from the autotuner (src/runtime/tune.ts): a cached or freshly
// timed winner among gemmCandidates(rt), else the hand-picked default above.
import source from '../../kernels/matmul.wgsl';
import { defineKernel, type Defines } from '../runtime/kernel.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor, numel } from '../tensor.js';
import { record, isGradEnabled, keep, autocastDtype } from '../autograd.js';
import { grid1d, ceilDiv } from './grid.js';
import { chooseConfig, bucket, type Candidate } from '../runtime/tune.js';
// backward() accumulates gradients with the elementwise kernels, which register themselves on import
import { cast } from './elementwise.js';

const SUBGROUP_MARKER = '// ==== SUBGROUP KERNEL ====';
const markerAt = source.indexOf(SUBGROUP_MARKER);
if (markerAt < 0) throw new Error('kernels/matmul.wgsl: subgroup kernel marker missing');
/** Portable part only: compiles on every adapter. */
export const matmulKernel = defineKernel('matmul', source.slice(0, markerAt));
/** Whole file with `enable subgroups;`: only compiled where the adapter has the feature. */
export const matmulSubgroupKernel = defineKernel('matmul_subgroup', `enable subgroups;\n${source}`);

export type Activation = 'none' | 'gelu' | 'tanh';
export type GemmStrategy = 'subgroup' | 'tiled';

export const matmulConfig = {
  /** 'auto' picks per adapter; tests and benches force one */
  strategy: 'auto' as 'auto' | GemmStrategy,
  /** subgroup kernel: 8-row blocks per tile (1..4); 4 measured best on lavapipe */
  rowBlocks: 4,
  /** tiled kernel: threads (wgM x wgN), outputs per thread (tptM x tptN), K slice (bk) */
  tiled: { wgM: 16, wgN: 16, tptM: 4, tptN: 4, bk: 16 } as TiledTile,
};

const ACT_CODE: Record<Activation, string> = { none: '0u', gelu: '1u', tanh: '2u' };
const WG1 = 256;

/** Whether the subgroup kernel can run here: it is written for subgroups of exactly 8 lanes. */
export function hasSubgroupGemm(rt: Runtime): boolean {
  if (!rt.hasSubgroups) return false;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  return info?.subgroupMinSize === 8 && info?.subgroupMaxSize === 8;
}

export interface TiledTile {
  wgM: number;
  wgN: number;
  tptM: number;
  tptN: number;
  bk: number;
}

/** One GEMM configuration: what the tuner chooses between. */
export interface GemmConfig {
  strategy: GemmStrategy;
  rowBlocks: number;
  tiled: TiledTile;
}

const tiledId = (t: TiledTile) => `tiled-${t.wgM}x${t.wgN}-${t.tptM}x${t.tptN}-k${t.bk}`;
export function gemmConfigId(c: GemmConfig): string {
  return c.strategy === 'subgroup' ? `sg-rb${c.rowBlocks}` : tiledId(c.tiled);
}

/** Tiled candidates: the default 64x64 tile, its shallower-K and smaller-register variants, and 32x32 / 64x32 tiles. */
export const TILED_CANDIDATES: readonly TiledTile[] = [
  { wgM: 16, wgN: 16, tptM: 4, tptN: 4, bk: 16 },
  { wgM: 16, wgN: 16, tptM: 4, tptN: 4, bk: 8 },
  { wgM: 16, wgN: 16, tptM: 2, tptN: 2, bk: 16 },
  { wgM: 8, wgN: 8, tptM: 4, tptN: 4, bk: 16 },
  { wgM: 8, wgN: 16, tptM: 4, tptN: 4, bk: 16 },
  { wgM: 16, wgN: 8, tptM: 4, tptN: 8, bk: 8 },
];

/** Every GEMM configuration any adapter may get (tests check each against the float64 reference). */
export function allGemmCandidates(): Candidate<GemmConfig>[] {
  const dflt = TILED_CANDIDATES[0];
  const sg = [1, 2, 3, 4].map((rb): GemmConfig => ({ strategy: 'subgroup', rowBlocks: rb, tiled: dflt }));
  const tiled = TILED_CANDIDATES.map((t): GemmConfig => ({ strategy: 'tiled', rowBlocks: 4, tiled: { ...t } }));
  return [...sg, ...tiled].map((config) => ({ id: gemmConfigId(config), config }));
}

/**
 * The candidates timed on this adapter: with 8-wide subgroups, rowBlocks 1..4 plus the default tiled GEMM (on CPU
 * adapters the tiled kernel is ~8x slower: one is enough to confirm it); otherwise the tiled set, whose tiles fit the
 * adapter's workgroup limits.
 */
export function gemmCandidates(rt: Runtime): Candidate<GemmConfig>[] {
  const all = allGemmCandidates();
  const fits = (t: TiledTile) =>
    t.wgM * t.wgN <= rt.limits.maxComputeInvocationsPerWorkgroup &&
    t.wgN <= rt.limits.maxComputeWorkgroupSizeX &&
    t.wgM <= rt.limits.maxComputeWorkgroupSizeY &&
    4 * t.bk * (t.wgM * t.tptM + t.wgN * t.tptN) <= rt.limits.maxComputeWorkgroupStorageSize;
  const tiled = all.filter((c) => c.config.strategy === 'tiled' && fits(c.config.tiled));
  if (!hasSubgroupGemm(rt)) return tiled;
  const sg = all.filter((c) => c.config.strategy === 'subgroup');
  return rt.adapter.isCPU ? [...sg, tiled[0]] : [...sg, ...tiled];
}

/** Today's hand-picked configuration (matmulConfig with the per-adapter strategy). */
export function defaultGemmConfig(rt: Runtime): GemmConfig {
  return { strategy: gemmStrategy(rt), rowBlocks: matmulConfig.rowBlocks, tiled: { ...matmulConfig.tiled } };
}

/** Shape class of a GEMM: dims bucketed to powers of two, transposes, dtype, and whether the vec4 paths apply. */
export function gemmShapeClass(g: Pick<GemmArgs, 'M' | 'N' | 'K' | 'batch' | 'transA' | 'transB'>, dtype: string): string {
  const aligned = g.M % 4 === 0 && g.N % 4 === 0 && g.K % 4 === 0;
  return `${dtype} ${g.transA ? 't' : 'n'}${g.transB ? 't' : 'n'} m${bucket(g.M)} n${bucket(g.N)} k${bucket(g.K)} b${bucket(g.batch)}${aligned ? ' a4' : ''}`;
}

/** The configuration a GEMM dispatch uses: forced by matmulConfig.strategy, else tuned / cached / default. */
function gemmConfigFor(rt: Runtime, g: GemmArgs): GemmConfig {
  if (matmulConfig.strategy !== 'auto') return { strategy: gemmStrategy(rt), rowBlocks: matmulConfig.rowBlocks, tiled: { ...matmulConfig.tiled } };
  const def = defaultGemmConfig(rt);
  const candidates = gemmCandidates(rt);
  const defId = gemmConfigId(def);
  // a default that is not among the candidates (tests set other tiles) is used as is: nothing to tune against
  if (!candidates.some((c) => c.id === defId)) return def;
  const { M, N, K, batch, transA, transB } = g;
  const dtype = g.a.dtype;
  return chooseConfig(rt, 'gemm', gemmShapeClass(g, dtype), candidates, defId, () => ({
    shape: `${batch > 1 ? `${batch}x ` : ''}${M}x${K}${transA ? '^T' : ''} . ${K}x${N}${transB ? '^T' : ''} ${dtype}`,
    flops: 2 * M * N * K * batch,
    prepare: () => {
      const a = tuneInput(rt, [batch * M * K], dtype, 'tune.a');
      const b = tuneInput(rt, [batch * K * N], dtype, 'tune.b');
      const y = keep(Tensor.empty(rt, [batch * M * N], dtype, 'tune.y'));
      return {
        run: (config: GemmConfig) => gemmWith({ a, b, y, M, N, K, batch, strideA: M * K, strideB: K * N, transA, transB }, config),
        dispose: () => {
          for (const t of [a, b, y]) t.dispose();
        },
      };
    },
  }));
}

/** Tuning inputs (GEMM, conv1d, attention): values in [-0.5, 0.5) from a cheap LCG, kept out of tidy scopes; kernel speed does not depend on them. */
export function tuneInput(rt: Runtime, shape: readonly number[], dtype: Tensor['dtype'], label: string, seed = 12345): Tensor {
  const n = numel(shape);
  const d = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = (s >>> 8) / (1 << 24) - 0.5;
  }
  return keep(Tensor.fromData(rt, d, shape, dtype, label));
}

export function gemmStrategy(rt: Runtime): GemmStrategy {
  const s = matmulConfig.strategy;
  if (s === 'subgroup') {
    if (!hasSubgroupGemm(rt)) throw new Error("matmul: strategy 'subgroup' needs the 'subgroups' feature with 8-wide subgroups");
    return s;
  }
  if (s === 'tiled') return s;
  return rt.adapter.isCPU && hasSubgroupGemm(rt) ? 'subgroup' : 'tiled';
}

// A 4-byte tensor per runtime to fill the optional write-only binding (pre) when it is not used.
const dummies = new WeakMap<Runtime, Map<string, Tensor>>();
function dummy(rt: Runtime, dtype: Tensor['dtype']): Tensor {
  let m = dummies.get(rt);
  if (!m) dummies.set(rt, (m = new Map()));
  let t = m.get(dtype);
  if (!t || t.disposed) {
    t = keep(Tensor.empty(rt, [2], dtype, 'matmul.unused'));
    m.set(dtype, t);
  }
  return t;
}

export interface GemmArgs {
  a: Tensor;
  b: Tensor;
  y: Tensor;
  M: number;
  N: number;
  K: number;
  batch: number;
  /** elements between consecutive batches of a / b (0: shared by all batches) */
  strideA: number;
  strideB: number;
  transA: boolean;
  transB: boolean;
  bias?: Tensor | null;
  activation?: Activation;
  /** receives the pre-activation z */
  pre?: Tensor | null;
}

/**
 * One (batched) GEMM dispatch on raw buffers: y[b] = act(op(a[b]) op(b[b]) + bias). No autograd.
 * a is [M, K] per batch ([K, M] if transA), b is [K, N] ([N, K] if transB), y is [M, N] per batch.
 */
export function gemm(g: GemmArgs): void {
  if (g.M * g.N * g.batch === 0) return;
  gemmWith(g, gemmConfigFor(g.a.rt, g));
}

/** gemm() with an explicit configuration (the tuner's timing runs; tests of every candidate). */
export function gemmWith(g: GemmArgs, config: GemmConfig): void {
  const { a, b, y, M, N, K, batch } = g;
  const rt = a.rt;
  const dtype = a.dtype;
  for (const t of [b, y, g.bias, g.pre]) {
    if (t && t.dtype !== dtype) throw new Error(`matmul: dtype mismatch (${a.label} is ${dtype}, ${t.label} is ${t.dtype})`);
  }
  if (dtype === 'i32') throw new Error('matmul: i32 tensors are not supported');
  if (M * N * batch === 0) return;
  const act = g.activation ?? 'none';
  const cost = { flops: 2 * M * N * K * batch };
  const defines: Defines = {
    T: dtype,
    TRANS_A: String(g.transA),
    TRANS_B: String(g.transB),
    HAS_BIAS: String(!!g.bias),
    SAVE_PRE: String(!!g.pre),
    ACT: ACT_CODE[act],
  };
  const bindings = {
    dims: { M, N, K, strideA: g.strideA, strideB: g.strideB, mBase: 0 },
    a,
    b,
    // unused bindings still need a buffer: a read-only alias of a, and a spare tensor for pre
    bias: g.bias ?? a,
    y,
    pre: g.pre ?? dummy(rt, dtype),
  };
  if (config.strategy === 'subgroup') {
    if (!hasSubgroupGemm(rt)) throw new Error("matmul: strategy 'subgroup' needs the 'subgroups' feature with 8-wide subgroups");
    const rb = config.rowBlocks;
    if (!(Number.isInteger(rb) && rb >= 1 && rb <= 4)) throw new Error(`matmul: rowBlocks must be 1..4, got ${rb}`);
    // 16-byte loads when every 4-aligned element index of the operand starts a row-aligned group of 4
    const vecA = (g.transA ? M : K) % 4 === 0 && g.strideA % 4 === 0;
    const vecB = (g.transB ? K : N) % 4 === 0 && g.strideB % 4 === 0;
    Object.assign(defines, {
      VEC_A: String(vecA),
      VEC_B: String(vecB),
      VA: vecA ? `vec4<${dtype}>` : dtype,
      VB: vecB ? `vec4<${dtype}>` : dtype,
      RB: `${rb}u`,
      K_TAIL: String(K % 4 !== 0),
      // keep the strided [K, N] B tile in cache and stream A's contiguous rows (measured: 1.3x for [800,1024]x[1024,4096])
      M_FASTEST: String(!g.transA && !g.transB),
    });
    const nTiles = ceilDiv(N, 32);
    const grid = (mTiles: number): [number, number, number] => (!g.transA && !g.transB ? [mTiles, nTiles, batch] : [nTiles, mTiles, batch]);
    // M not a multiple of the 8*rb-row tile (199 frames of a 4 s clip: 7 tiles of 32 compute 224 rows, 11% for
    // nothing): whole tiles first, then the last rows with just enough 8-row blocks, rows mBase.. of the same GEMM
    // (the same sums per element). The tail dispatch runs fewer rows per load, so only a waste over 10% is split off
    // (measured on lavapipe: ~5% faster at M = 199, no gain at M = 398, 4% waste).
    const whole = Math.floor(M / (8 * rb));
    const tailRows = M - whole * 8 * rb;
    const wasted = tailRows === 0 ? 0 : (8 * rb - tailRows) / ((whole + 1) * 8 * rb);
    if (whole === 0 || wasted <= 0.1) {
      rt.dispatch(matmulSubgroupKernel, 'matmul_subgroup', bindings, grid(ceilDiv(M, 8 * rb)), { defines, cost });
    } else {
      const mBase = whole * 8 * rb;
      rt.dispatch(matmulSubgroupKernel, 'matmul_subgroup', bindings, grid(whole), { defines, cost: { flops: 2 * mBase * N * K * batch } });
      rt.dispatch(matmulSubgroupKernel, 'matmul_subgroup', { ...bindings, dims: { ...bindings.dims, mBase } }, grid(1), {
        defines: { ...defines, RB: `${ceilDiv(tailRows, 8)}u` },
        cost: { flops: 2 * tailRows * N * K * batch },
      });
    }
  } else {
    const t = config.tiled;
    Object.assign(defines, { WG_M: `${t.wgM}u`, WG_N: `${t.wgN}u`, TPT_M: `${t.tptM}u`, TPT_N: `${t.tptN}u`, BK: `${t.bk}u` });
    rt.dispatch(matmulKernel, 'matmul_tiled', bindings, [ceilDiv(N, t.wgN * t.tptN), ceilDiv(M, t.wgM * t.tptM), batch], { defines, cost });
  }
}

// ---- backward helpers ----

/** Memory-bound helpers: `bytes` is the minimum read + written. */
function flatDispatch(entry: string, bindings: Record<string, Tensor>, flat: { n: number; cols: number; rows: number }, threads: number, defines: Defines, bytes: number): void {
  const rt = Object.values(bindings)[0].rt;
  rt.dispatch(matmulKernel, entry, { ...bindings, flat }, grid1d(threads, WG1), { defines, cost: { bytes } });
}

/** dZ = dY * act'(saved): saved is z (gelu) or y (tanh) */
function activationBackward(gy: Tensor, saved: Tensor, act: Activation): Tensor {
  const gz = Tensor.empty(gy.rt, gy.shape, gy.dtype, `matmul.${act}.grad`);
  const n = gy.size;
  const defines = { T: gy.dtype, ACT: ACT_CODE[act] };
  if (n % 4 === 0) flatDispatch('activation_backward4', { gradOut4: gy, saved4: saved, gradIn4: gz }, { n, cols: 0, rows: 0 }, n / 4, defines, 3 * gy.byteLength);
  else flatDispatch('activation_backward', { gradOut: gy, saved, gradIn: gz }, { n, cols: 0, rows: 0 }, n, defines, 3 * gy.byteLength);
  return gz;
}

/** column sums of src viewed as [rows, cols] -> [cols] */
function columnSums(src: Tensor, rows: number, cols: number, shape: readonly number[], label: string): Tensor {
  const dst = Tensor.empty(src.rt, shape, src.dtype, label);
  flatDispatch('bias_grad', { src, dst }, { n: cols, cols, rows }, cols, { T: src.dtype }, src.byteLength + dst.byteLength);
  return dst;
}

/** sum over the leading `batches` blocks of n elements -> n elements */
function sumBatches(src: Tensor, batches: number, shape: readonly number[], label: string): Tensor {
  const n = numel(shape);
  const dst = Tensor.empty(src.rt, shape, src.dtype, label);
  flatDispatch('sum_batches', { src, dst }, { n, cols: 0, rows: batches }, n, { T: src.dtype }, src.byteLength + dst.byteLength);
  return dst;
}

// ---- the recorded op ----

interface Problem {
  M: number;
  N: number;
  K: number;
  batch: number;
  /** b is 2-D and used by every batch (only left with batch > 1 when transA: otherwise batches fold into M) */
  sharedB: boolean;
  transA: boolean;
  transB: boolean;
}

function gemmOp(op: string, a: Tensor, b: Tensor, bias: Tensor | null, act: Activation, p: Problem, outShape: number[]): Tensor {
  const { M, N, K, batch, sharedB, transA, transB } = p;
  const rt = a.rt;
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) throw new Error(`${op}: bias must be [${N}], got [${bias.shape}]`);
  const inputs = bias ? [a, b, bias] : [a, b];
  const wantsGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const y = Tensor.empty(rt, outShape, a.dtype, op);
  const pre = wantsGrad && act === 'gelu' ? Tensor.empty(rt, outShape, a.dtype, `${op}.pre`) : null;
  const strideA = M * K;
  const strideB = sharedB ? 0 : K * N;
  gemm({ a, b, y, M, N, K, batch, strideA, strideB, transA, transB, bias, activation: act, pre });
  if (!wantsGrad) return y;
  const saved = [a, b, ...(act === 'gelu' ? [pre!] : act === 'tanh' ? [y] : [])];
  const out = record(op, y, inputs, saved, (gy, needs) => {
    const gz = act === 'none' ? gy : activationBackward(gy, act === 'gelu' ? pre! : y, act);
    const strideZ = M * N;
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (needs[0]) {
      // dA (stored like A) = dZ op(B)^T, or its transpose op(B) dZ^T when A is stored transposed
      ga = Tensor.empty(rt, a.shape, a.dtype, `${op}.grad_a`);
      if (!transA) gemm({ a: gz, b, y: ga, M, N: K, K: N, batch, strideA: strideZ, strideB, transA: false, transB: !transB });
      else gemm({ a: b, b: gz, y: ga, M: K, N: M, K: N, batch, strideA: strideB, strideB: strideZ, transA: transB, transB: true });
    }
    if (needs[1]) {
      // dB (stored like B) = op(A)^T dZ, or dZ^T op(A) when B is stored transposed; contraction over M
      const perBatch = sharedB && batch > 1;
      const target = perBatch ? Tensor.empty(rt, [batch, ...b.shape], b.dtype, `${op}.grad_b.batches`) : Tensor.empty(rt, b.shape, b.dtype, `${op}.grad_b`);
      if (!transB) gemm({ a, b: gz, y: target, M: K, N, K: M, batch, strideA, strideB: strideZ, transA: !transA, transB: false });
      else gemm({ a: gz, b: a, y: target, M: N, N: K, K: M, batch, strideA: strideZ, strideB: strideA, transA: true, transB: transA });
      if (perBatch) {
        gb = sumBatches(target, batch, b.shape, `${op}.grad_b`);
        target.dispose();
      } else gb = target;
    }
    const gbias = bias && needs[2] ? columnSums(gz, batch * M, N, bias.shape, `${op}.grad_bias`) : null;
    if (gz !== gy) gz.dispose();
    return bias ? [ga, gb, gbias] : [ga, gb];
  });
  // z is only the graph's now: freed once backward has used it
  pre?.dispose();
  return out;
}

/**
 * a [..., M, K] (or [..., K, M] if transA), b [..., K, N] (or [..., N, K] if transB), b either 2-D (shared by every
 * batch) or with a's batch dims. bias [N] is added, then the activation, inside the GEMM.
 */
export function matmul(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean; bias?: Tensor | null; activation?: Activation } = {}): Tensor {
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error(`matmul: operands must be at least 2-D, got [${a.shape}] and [${b.shape}]`);
  if (a.dtype !== b.dtype) throw new Error(`matmul: dtypes differ (${a.dtype} vs ${b.dtype})`);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== Kb) throw new Error(`matmul: inner dimensions differ: a [${a.shape}]${transA ? '^T' : ''} x b [${b.shape}]${transB ? '^T' : ''}`);
  const batchDims = a.shape.slice(0, -2);
  const sharedB = rb === 2;
  if (!sharedB && b.shape.slice(0, -2).join() !== batchDims.join()) {
    throw new Error(`matmul: b [${b.shape}] must be 2-D or have a's batch dims [${batchDims}]`);
  }
  const batch = numel(batchDims);
  const outShape = [...batchDims, M, N];
  // a shared B with row-major A is one GEMM over all batches' rows
  const p: Problem = sharedB && !transA ? { M: batch * M, N, K, batch: 1, sharedB: false, transA, transB } : { M, N, K, batch, sharedB, transA, transB };
  return gemmOp('matmul', a, b, opts.bias ?? null, opts.activation ?? 'none', p, outShape);
}

/** nn.Linear: x [..., in], weight [out, in], bias [out] -> [..., out], with the activation fused. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null, activation: Activation = 'none'): Tensor {
  if (weight.shape.length !== 2) throw new Error(`linear: weight must be [out, in], got [${weight.shape}]`);
  const [out, inF] = weight.shape;
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inF) throw new Error(`linear: x [${x.shape}] does not end in ${inF} (weight [${weight.shape}])`);
  const rows = x.size / inF;
  if (autocastDtype() === 'f16' && x.dtype === 'f32' && weight.dtype === 'f32') {
    // mixed precision: f16 operands, f32 accumulation inside the GEMM, result back in f32 for what follows
    const x16 = cast(x, 'f16');
    const w16 = cast(weight, 'f16');
    const b16 = bias ? cast(bias, 'f16') : null;
    const y16 = gemmOp('linear', x16, w16, b16, activation, { M: rows, N: out, K: inF, batch: 1, sharedB: false, transA: false, transB: true }, [...x.shape.slice(0, -1), out]);
    const y = cast(y16, 'f32');
    // the f16 copies live on only where backward saved them
    for (const t of [x16, w16, b16, y16]) t?.dispose();
    return y;
  }
  return gemmOp('linear', x, weight, bias ?? null, activation, { M: rows, N: out, K: inF, batch: 1, sharedB: false, transA: false, transB: true }, [...x.shape.slice(0, -1), out]);
}
