// attention(): forward and gradients against plain softmax attention in float64, for both kernel paths (subgroup
// kernels where the adapter has a fixed subgroup size, workgroup-memory kernels everywhere), plus finite differences.
// With dropout on the probabilities, the reference rebuilds the kernels' hashed mask in JS (the hash of
// activation.wgsl, reimplemented here independently) and applies it to explicit probabilities.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, maxAbs, finiteDifference, probeIndices, packQkv, unpackQkv, attentionTilePairs, withAttentionTiles } from './helpers.js';
import { attention, attentionPacked, attentionUsesSubgroups, setAttentionSubgroups } from '../src/ops/attention.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() needs
import { backward, checkpoint, manualSeed, nextRandom, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';
import type { Runtime } from '../src/runtime/runtime.js';

interface Case {
  B: number;
  T: number;
  H: number;
  D: number;
  /** real frames per batch element (keys past it are padding); null = no mask */
  lengths: number[] | null;
  scale?: number;
  /** dropout on the probabilities; the random stream is set to (seed, offset) right before the call */
  dropout?: { p: number; seed: number; offset: number };
}

interface Reference {
  out: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/** The dropout hash (PCG output permutation of an LCG step, twice), bit for bit as the kernels compute it. */
function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}
const randomBits = (seed: number, counter: number) => pcgHash((pcgHash(counter >>> 0) ^ pcgHash((seed ^ 0x9e3779b9) >>> 0)) >>> 0);

/** Dropout factor of probability (b, h, query i, key j): 0 (dropped) or 1/(1-p) (kept); 1 without dropout. */
function dropoutFactor(c: Case): (b: number, h: number, i: number, j: number) => number {
  if (!c.dropout) return () => 1;
  const { p, seed, offset } = c.dropout;
  const threshold = Math.min(0xffffffff, Math.round(p * 2 ** 32));
  const { H, T } = c;
  return (b, h, i, j) => (randomBits(seed, (offset + ((b * H + h) * T + i) * T + j) % 2 ** 32) >= threshold ? 1 / (1 - p) : 0);
}

/** Point the random stream at (seed, offset), where the next nextRandom() call will start. */
function seedStream(seed: number, offset: number): void {
  manualSeed(seed);
  if (offset) nextRandom(offset);
}

/** How many (query, real key) probabilities the reference's dropout mask zeroes, of how many. */
function droppedCount(c: Case): [number, number] {
  const z = dropoutFactor(c);
  let dropped = 0;
  let total = 0;
  for (let b = 0; b < c.B; b++) {
    const len = c.lengths ? c.lengths[b] : c.T;
    for (let h = 0; h < c.H; h++) for (let i = 0; i < c.T; i++) for (let j = 0; j < len; j++, total++) if (z(b, h, i, j) === 0) dropped++;
  }
  return [dropped, total];
}

/**
 * Plain softmax attention in float64 for the heads in `heads` (all by default), with the gradients of
 * loss = sum(out * w). Entries of other heads stay 0. With c.dropout: out_i = sum_j P_ij Z_ij v_j (Z the mask factor),
 * differentiated directly (not with the kernels' row-dot identity).
 */
function reference(c: Case, q: Float64Array, k: Float64Array, v: Float64Array, w: Float64Array, heads?: number[]): Reference {
  const { B, T, H, D } = c;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const n = B * T * H * D;
  const out = new Float64Array(n);
  const dq = new Float64Array(n);
  const dk = new Float64Array(n);
  const dv = new Float64Array(n);
  const at = (b: number, t: number, h: number) => ((b * T + t) * H + h) * D;
  const P = new Float64Array(T);
  const dP = new Float64Array(T);
  const Z = new Float64Array(T);
  const z = dropoutFactor(c);
  for (let b = 0; b < B; b++) {
    const len = c.lengths ? c.lengths[b] : T;
    for (const h of heads ?? [...Array(H).keys()]) {
      for (let i = 0; i < T; i++) {
        if (len === 0) continue; // no real key: output and gradients stay 0
        const qi = at(b, i, h);
        let m = -Infinity;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qi + d] * k[at(b, j, h) + d];
          P[j] = s * scale;
          m = Math.max(m, P[j]);
        }
        let l = 0;
        for (let j = 0; j < len; j++) l += P[j] = Math.exp(P[j] - m);
        for (let j = 0; j < len; j++) P[j] /= l;
        for (let j = 0; j < len; j++) Z[j] = z(b, h, i, j);
        for (let j = 0; j < len; j++) for (let d = 0; d < D; d++) out[qi + d] += P[j] * Z[j] * v[at(b, j, h) + d];
        // backward of out_i = sum_j P_ij Z_ij v_j with upstream w_i: dL/dP_ij = Z_ij (w_i . v_j), then the softmax's
        // dL/ds_ij = P_ij (dL/dP_ij - sum_k P_ik dL/dP_ik)
        let rowDot = 0;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += w[qi + d] * v[at(b, j, h) + d];
          dP[j] = Z[j] * s;
          rowDot += P[j] * dP[j];
        }
        for (let j = 0; j < len; j++) {
          const kj = at(b, j, h);
          const ds = P[j] * (dP[j] - rowDot) * scale;
          for (let d = 0; d < D; d++) {
            dv[kj + d] += P[j] * Z[j] * w[qi + d];
            dq[qi + d] += ds * k[kj + d];
            dk[kj + d] += ds * q[qi + d];
          }
        }
      }
    }
  }
  return { out, dq, dk, dv };
}

/** The entries of head h (all batch elements and positions) of a [B, T, H*D] array. */
function headSlice(c: Case, x: ArrayLike<number>, h: number): Float64Array {
  const out = new Float64Array(c.B * c.T * c.D);
  for (let bt = 0; bt < c.B * c.T; bt++) for (let d = 0; d < c.D; d++) out[bt * c.D + d] = x[(bt * c.H + h) * c.D + d];
  return out;
}

function maskTensor(rt: Runtime, c: Case): Tensor | null {
  if (!c.lengths) return null;
  const m = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) for (let t = 0; t < c.T; t++) m[b * c.T + t] = t < c.lengths[b] ? 1 : 0;
  return Tensor.fromData(rt, m, [c.B, c.T], 'i32', 'key_mask');
}

const paths = ['subgroup', 'portable'] as const;
type Path = (typeof paths)[number];

/** Run fn with the given kernel path; false when the adapter cannot run it (the subgroup path without subgroups). */
async function onPath(path: Path, fn: () => Promise<void>): Promise<boolean> {
  const rt = await getRuntime();
  setAttentionSubgroups(path === 'subgroup');
  try {
    if (path === 'subgroup' && !attentionUsesSubgroups(rt)) return false;
    await fn();
    return true;
  } finally {
    setAttentionSubgroups(true);
  }
}

interface CheckOptions {
  fdProbes?: number;
  /** compare only these heads (long sequences: the f64 reference of every head would be slow) */
  heads?: number[];
  /** which inputs require grad (default all) */
  grads?: [boolean, boolean, boolean];
  /** q, k, v as one packed [B, T, 3*H*D] tensor through attentionPacked (the fused projection's output) */
  packed?: boolean;
}


async function check(c: Case, seed: number, path: Path, opts: CheckOptions = {}): Promise<void> {
  const rt = await getRuntime();
  const { B, T, H, D } = c;
  const n = B * T * H * D;
  const shape = [B, T, H * D];
  const grads = opts.grads ?? [true, true, true];
  const qd = randn(n, seed);
  const kd = randn(n, seed + 1);
  const vd = randn(n, seed + 2);
  const wd = randn(n, seed + 3);
  const ref = reference(c, qd, kd, vd, wd, opts.heads);
  const pick = (x: ArrayLike<number>): ArrayLike<number> => (opts.heads ? Float64Array.from(opts.heads.flatMap((h) => [...headSlice(c, x, h)])) : x);
  const mask = maskTensor(rt, c);
  const packed = opts.packed ?? false;
  const C = H * D;
  const packedShape = [B, T, 3 * C];
  const qkvData = packed ? packQkv(C, [qd, kd, vd]) : null;
  const qkv = qkvData ? upload(rt, qkvData, packedShape, { requiresGrad: true, label: 'qkv' }) : null;
  const q = qkv ?? upload(rt, qd, shape, { requiresGrad: grads[0], label: 'q' });
  const k = qkv ?? upload(rt, kd, shape, { requiresGrad: grads[1], label: 'k' });
  const v = qkv ?? upload(rt, vd, shape, { requiresGrad: grads[2], label: 'v' });
  const attnOpts = { heads: H, keyMask: mask, scale: c.scale, dropout: c.dropout?.p };
  const drop = c.dropout;
  if (drop) {
    // the mask must actually drop something, or the dropout tests would pass vacuously
    const [dropped, total] = droppedCount(c);
    assert.ok(dropped > 0 && dropped < total, `dropout p=${drop.p} dropped ${dropped} of ${total}`);
    seedStream(drop.seed, drop.offset);
  }
  const y = qkv ? attentionPacked(qkv, attnOpts) : attention(q, k, v, attnOpts);
  const what = `[${path}]${packed ? ' packed' : ''} B=${B} T=${T} H=${H} D=${D} lengths=${c.lengths ?? 'none'}${drop ? ` dropout=${drop.p}@${drop.offset}` : ''}`;
  close(pick(await y.read()), pick(ref.out), 1e-5, `${what}: forward`);
  const w = upload(rt, wd, shape, { label: 'grad_out' });
  backward(y, w);
  const inputs = { q, k, v };
  const refGrads = { q: ref.dq, k: ref.dk, v: ref.dv };
  const got: Partial<Record<'q' | 'k' | 'v', Float32Array>> = {};
  const packedGrad = qkv ? ((await qkv.grad!.read()) as Float32Array) : null;
  for (const name of ['q', 'k', 'v'] as const) {
    const t = inputs[name];
    if (!t.requiresGrad) {
      assert.is(t.grad, null, `${what}: d${name} computed though ${name} needs no gradient`);
      continue;
    }
    got[name] = packedGrad ? unpackQkv(C, packedGrad, ['q', 'k', 'v'].indexOf(name)) : ((await t.grad!.read()) as Float32Array);
    const expected = pick(refGrads[name]);
    if (Array.prototype.some.call(expected, (x: number) => x !== 0)) close(pick(got[name]!), expected, 1e-4, `${what}: d${name}`);
    else {
      // e.g. dq with a single key (its weight is 1 whatever q is): exactly 0 in f64, rounding noise here
      const err = maxAbs(pick(got[name]!), expected);
      assert.ok(err <= 1e-5, `${what}: d${name} should be 0, max |error| ${err}`);
    }
  }
  if (c.lengths) {
    // padded keys take no part: their dk and dv are exactly zero
    for (let b = 0; b < B; b++) {
      for (let t: number = c.lengths[b]; t < T; t++) {
        for (let e = 0; e < H * D; e++) {
          const i = (b * T + t) * H * D + e;
          for (const name of ['k', 'v'] as const) {
            if (got[name]) assert.ok(got[name]![i] === 0, `${what}: padded key b=${b} t=${t} has d${name}=${got[name]![i]}`);
          }
        }
      }
    }
  }
  if (opts.fdProbes && qkvData && packedGrad) {
    // the packed input as one tensor: probes anywhere in its q, k and v thirds
    await finiteDifference({
      what: `${what}: dqkv`,
      x: qkvData,
      w: wd,
      analytic: packedGrad,
      indices: probeIndices(3 * n, 3 * opts.fdProbes, seed + 11),
      forward: async (x) => {
        if (drop) seedStream(drop.seed, drop.offset);
        const out = tidy(() => attentionPacked(upload(rt, x, packedShape), attnOpts));
        const values = await out.read();
        out.dispose();
        return values;
      },
    });
  } else if (opts.fdProbes) {
    const data = { q: qd, k: kd, v: vd };
    for (const name of ['q', 'k', 'v'] as const) {
      if (!got[name]) continue;
      await finiteDifference({
        what: `${what}: d${name}`,
        x: data[name],
        w: wd,
        analytic: got[name]!,
        indices: probeIndices(n, opts.fdProbes, seed + 11),
        forward: async (x) => {
          const args = { ...data, [name]: x };
          if (drop) seedStream(drop.seed, drop.offset); // the same mask as the analytic gradient's
          const out = tidy(() => attention(upload(rt, args.q, shape), upload(rt, args.k, shape), upload(rt, args.v, shape), attnOpts));
          const values = await out.read();
          out.dispose();
          return values;
        },
      });
    }
  }
  for (const t of new Set([q, k, v, w, y, q.grad, k.grad, v.grad])) t?.dispose();
  mask?.dispose();
}

// head dims 16, 24, 64, 5 only: every other D would compile another set of pipelines (seconds each on lavapipe)
for (const path of paths) {
  test(`[${path}] odd sizes with per-element padding (D=16, H=3, one element unpadded)`, async () => {
    await onPath(path, () => check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23] }, 100, path, { fdProbes: 3 }));
  });

  test(`[${path}] more than two blocks of queries and keys, D=24, uneven padding`, async () => {
    await onPath(path, () => check({ B: 3, T: 150, H: 3, D: 24, lengths: [131, 150, 9] }, 200, path, { fdProbes: 2 }));
  });

  test(`[${path}] D=64 at 2 heads, no mask, custom scale`, async () => {
    await onPath(path, () => check({ B: 1, T: 70, H: 2, D: 64, lengths: null, scale: 0.2 }, 300, path, { fdProbes: 2 }));
  });

  test(`[${path}] odd head dim (D=5), a single frame, gradients for some inputs only`, async () => {
    await onPath(path, async () => {
      await check({ B: 2, T: 1, H: 3, D: 5, lengths: [1, 1] }, 400, path);
      await check({ B: 1, T: 45, H: 1, D: 5, lengths: [44] }, 410, path, { grads: [false, true, false] });
      await check({ B: 2, T: 21, H: 2, D: 24, lengths: [21, 6] }, 420, path, { grads: [true, false, false] });
    });
  });

  test(`[${path}] packed q|k|v [B, T, 3C] (the fused projection): odd sizes, padding, dropout, D=5 and D=64, finite differences`, async () => {
    await onPath(path, async () => {
      await check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23] }, 900, path, { fdProbes: 3, packed: true });
      await check({ B: 3, T: 150, H: 3, D: 24, lengths: [131, 150, 9], dropout: { p: 0.1, seed: 5, offset: 11 } }, 910, path, { fdProbes: 2, packed: true });
      await check({ B: 2, T: 19, H: 2, D: 5, lengths: [0, 19] }, 920, path, { fdProbes: 2, packed: true });
      await check({ B: 1, T: 70, H: 2, D: 64, lengths: null, scale: 0.2 }, 930, path, { fdProbes: 2, packed: true });
    });
  });

  test(`[${path}] an element whose keys are all padding gives zeros, not NaN`, async () => {
    await onPath(path, () => check({ B: 2, T: 19, H: 2, D: 5, lengths: [0, 19] }, 500, path));
  });

  test(`[${path}] dropout p=0.25 on odd sizes with per-element padding (D=16, H=3)`, async () => {
    await onPath(path, () => check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23], dropout: { p: 0.25, seed: 7, offset: 0 } }, 700, path, { fdProbes: 3 }));
  });

  test(`[${path}] dropout p=0.1 over several blocks, D=24, counters wrapping past 2^32`, async () => {
    const dropout = { p: 0.1, seed: 12345, offset: 2 ** 32 - 20000 };
    await onPath(path, () => check({ B: 3, T: 150, H: 3, D: 24, lengths: [131, 150, 9], dropout }, 710, path, { fdProbes: 2 }));
  });

  test(`[${path}] dropout p=0.5: D=64 no mask custom scale; D=5 with an all-padding element; some gradients only`, async () => {
    await onPath(path, async () => {
      await check({ B: 1, T: 70, H: 2, D: 64, lengths: null, scale: 0.2, dropout: { p: 0.5, seed: 99, offset: 777 } }, 720, path, { fdProbes: 2 });
      await check({ B: 2, T: 19, H: 2, D: 5, lengths: [0, 19], dropout: { p: 0.5, seed: 3, offset: 5 } }, 730, path);
      await check({ B: 2, T: 21, H: 2, D: 24, lengths: [21, 6], dropout: { p: 0.3, seed: 4, offset: 0 } }, 740, path, { grads: [false, true, true] });
    });
  });

  test(`[${path}] dropout is deterministic per (seed, offset), and checkpoint() replays the same mask`, async () => {
    await onPath(path, async () => {
      const rt = await getRuntime();
      const c = { B: 2, T: 29, H: 2, D: 16 };
      const n = c.B * c.T * c.H * c.D;
      const shape = [c.B, c.T, c.H * c.D];
      const data = [randn(n, 800), randn(n, 801), randn(n, 802)];
      const wd = randn(n, 803);
      const mask = maskTensor(rt, { ...c, lengths: [29, 17] });
      const opts = { heads: c.H, keyMask: mask, dropout: 0.1 };
      /** output and dq, dk, dv with the stream at (seed, 0), attention called directly or through checkpoint() */
      const run = async (seed: number, viaCheckpoint: boolean): Promise<Float32Array[]> => {
        const [q, k, v] = data.map((x, i) => upload(rt, x, shape, { requiresGrad: true, label: 'qkv'[i] }));
        seedStream(seed, 0);
        const y = viaCheckpoint ? checkpoint((a, b, d) => attention(a, b, d, opts), [q, k, v]) : attention(q, k, v, opts);
        const w = upload(rt, wd, shape, { label: 'grad_out' });
        const outs = [(await y.read()) as Float32Array];
        backward(y, w);
        for (const t of [q, k, v]) outs.push((await t.grad!.read()) as Float32Array);
        for (const t of [q, k, v, w, y, q.grad, k.grad, v.grad]) t?.dispose();
        return outs;
      };
      const names = ['out', 'dq', 'dk', 'dv'];
      const first = await run(21, false);
      const again = await run(21, false);
      const replayed = await run(21, true);
      for (let i = 0; i < 4; i++) {
        assert.ok(first[i].every((x, e) => x === again[i][e]), `[${path}] ${names[i]} differs between two runs with the same seed`);
        assert.ok(first[i].every((x, e) => x === replayed[i][e]), `[${path}] ${names[i]} differs under checkpoint()`);
      }
      const other = await run(22, false);
      assert.ok(other[0].some((x, e) => x !== first[0][e]), `[${path}] another seed gave the same output`);
      mask?.dispose();
    });
  });

  test(`[${path}] dropout 0 is the plain path and draws no random numbers; p > 0 reserves B*H*T*T`, async () => {
    await onPath(path, async () => {
      const rt = await getRuntime();
      const [B, T, H, D] = [2, 13, 3, 5];
      const shape = [B, T, H * D];
      const n = B * T * H * D;
      const [q, k, v] = [0, 1, 2].map((i) => upload(rt, randn(n, 900 + i), shape));
      const read = async (y: Tensor): Promise<Float32Array> => {
        const values = (await y.read()) as Float32Array;
        y.dispose();
        return values;
      };
      seedStream(1, 0);
      const plain = await read(attention(q, k, v, { heads: H }));
      assert.is(nextRandom(1).offset, 0, 'attention without dropout drew random numbers');
      seedStream(1, 0);
      const zero = await read(attention(q, k, v, { heads: H, dropout: 0 }));
      assert.is(nextRandom(1).offset, 0, 'attention with dropout 0 drew random numbers');
      assert.ok(plain.every((x, i) => x === zero[i]), 'dropout 0 changed the output');
      seedStream(1, 0);
      const all = await read(attention(q, k, v, { heads: H, dropout: 1 }));
      assert.is(nextRandom(1).offset, B * H * T * T, 'attention with dropout should reserve B*H*T*T counters');
      assert.ok(all.every((x) => x === 0), 'dropout 1 should zero the output');
      for (const t of [q, k, v]) t.dispose();
    });
  });
}

// Every tile the autotuner may pick (the defaults run in every test above): several blocks with padding and dropout at
// D=16, the packed layout at D=64, an all-padding element at D=5, per path.
for (const path of paths) {
  for (const pair of attentionTilePairs(path).slice(1)) {
    test(`[${path}] tiles ${pair.name}: padding, dropout, packed, D=16, 64 and 5`, async () => {
      await onPath(path, () =>
        withAttentionTiles(pair, async () => {
          await check({ B: 3, T: 150, H: 2, D: 16, lengths: [131, 150, 9], dropout: { p: 0.25, seed: 8, offset: 3 } }, 1100, path, { fdProbes: 2 });
          await check({ B: 1, T: 70, H: 2, D: 64, lengths: null, scale: 0.2 }, 1110, path, { packed: true });
          await check({ B: 2, T: 19, H: 2, D: 5, lengths: [0, 19] }, 1120, path);
        }),
      );
    });
  }
}

test('16 heads x 64 at T=1500 with padding, default path (two heads checked against f64)', async () => {
  const rt = await getRuntime();
  const path = attentionUsesSubgroups(rt) ? 'subgroup' : 'portable';
  await check({ B: 1, T: 1500, H: 16, D: 64, lengths: [1431] }, 600, path, { heads: [0, 11] });
});

test('shape and mask errors are loud', async () => {
  const rt = await getRuntime();
  const x = Tensor.empty(rt, [1, 4, 6]);
  assert.throws(() => attention(x, x, x, { heads: 4 }), /do not split into 4 heads/);
  const y = Tensor.empty(rt, [1, 5, 6]);
  assert.throws(() => attention(x, y, x, { heads: 2 }), /differs from q/);
  const badMask = Tensor.empty(rt, [1, 4]);
  assert.throws(() => attention(x, x, x, { heads: 2, keyMask: badMask }), /keyMask must be i32/);
  for (const p of [-0.1, 1.5, NaN]) assert.throws(() => attention(x, x, x, { heads: 2, dropout: p }), /dropout must be in \[0, 1\]/);
  for (const t of [x, y, badMask]) t.dispose();
});

test.run();
