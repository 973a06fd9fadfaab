import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close } from './helpers.js';
import { AdamW, clipGradNorm, gradNorm } from '../src/ops/optim.js';
import type { Tensor } from '../src/tensor.js';

const sizes = [1237, 7 * 13, 1]; // odd sizes, one scalar

/** torch.optim.AdamW (single-tensor, amsgrad off) in f64 */
class AdamW64 {
  m: Float64Array[];
  v: Float64Array[];
  steps: number[];
  constructor(
    public p: Float64Array[],
    public lr: number,
    public b1 = 0.9,
    public b2 = 0.999,
    public eps = 1e-8,
    public wd = 0.01,
  ) {
    this.m = p.map((x) => new Float64Array(x.length));
    this.v = p.map((x) => new Float64Array(x.length));
    this.steps = p.map(() => 0);
  }
  step(grads: (Float64Array | null)[]): void {
    grads.forEach((g, k) => {
      if (!g) return;
      const t = ++this.steps[k];
      const [p, m, v] = [this.p[k], this.m[k], this.v[k]];
      const stepSize = this.lr / (1 - this.b1 ** t);
      const bc2Sqrt = Math.sqrt(1 - this.b2 ** t);
      for (let i = 0; i < p.length; i++) {
        p[i] *= 1 - this.lr * this.wd;
        m[i] = this.b1 * m[i] + (1 - this.b1) * g[i];
        v[i] = this.b2 * v[i] + (1 - this.b2) * g[i] * g[i];
        p[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + this.eps);
      }
    });
  }
}

function setGrads(rt: Awaited<ReturnType<typeof getRuntime>>, params: Tensor[], grads: (Float64Array | null)[]): void {
  params.forEach((p, k) => {
    p.grad?.dispose();
    p.grad = grads[k] ? upload(rt, grads[k]!, [...p.shape]) : null;
  });
}

test('AdamW matches an f64 AdamW over 6 steps (lr change, a skipped parameter, weight decay)', async () => {
  const rt = await getRuntime();
  // odd sizes (adamwStep4 plus the scalar tail), one scalar, 3 (tail only), 4 and 2048 (vec4 only)
  const sizes = [1237, 7 * 13, 1, 3, 4, 2048];
  const init = sizes.map((n, k) => randn(n, 1 + k));
  const params = init.map((x, k) => upload(rt, x, k === 1 ? [7, 13] : [x.length], { requiresGrad: true }));
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.05 });
  const ref = new AdamW64(init.map((x) => Float64Array.from(x)), 1e-2, 0.9, 0.999, 1e-8, 0.05);
  for (let s = 0; s < 6; s++) {
    // step 2 has no gradient for parameter 0; gradients of very different scales across steps
    const grads = sizes.map((n, k) => (s === 2 && k === 0 ? null : randn(n, 100 * s + k, 10 ** (s - 3))));
    setGrads(rt, params, grads);
    if (s === 4) ref.lr = 3e-3;
    opt.step(s === 4 ? 3e-3 : undefined);
    ref.step(grads);
  }
  for (let k = 0; k < params.length; k++) {
    close(await params[k].read(), ref.p[k], 1e-5, `param ${k}`);
  }
  const st = await opt.exportState();
  assert.is(st.step, 6);
  assert.equal(st.paramSteps, [5, ...sizes.slice(1).map(() => 6)]);
  for (let k = 0; k < params.length; k++) {
    close(st.m[k]!, ref.m[k], 1e-5, `m ${k}`);
    close(st.v[k]!, ref.v[k], 1e-5, `v ${k}`);
  }
  opt.dispose();
});

test('AdamW with the clip inside the update (gradNorm + step({ clip })) equals clipGradNorm + step and an f64 reference; gradients untouched', async () => {
  const rt = await getRuntime();
  // vec4 body + scalar tail, tail only, vec4 only; parameter 1 has no gradient in step 1
  const sizes = [1237, 3, 2048];
  const cases: [number, number | undefined][] = [[0.5, undefined], [1e6, undefined], [0.5, 1024], [0, 256]];
  for (const [maxNorm, gradScale] of cases) {
    const what = `maxNorm ${maxNorm}, gradScale ${gradScale ?? 'none'}`;
    const init = sizes.map((n, k) => randn(n, 300 + k));
    const fused = init.map((x) => upload(rt, x, [x.length], { requiresGrad: true }));
    const separate = init.map((x) => upload(rt, x, [x.length], { requiresGrad: true }));
    const optFused = new AdamW(fused, { lr: 1e-2, weightDecay: 0.05 });
    const optSeparate = new AdamW(separate, { lr: 1e-2, weightDecay: 0.05 });
    const ref = new AdamW64(init.map((x) => Float64Array.from(x)), 1e-2, 0.9, 0.999, 1e-8, 0.05);
    const S = gradScale ?? 1;
    for (let s = 0; s < 3; s++) {
      const grads = sizes.map((n, k) => (s === 1 && k === 1 ? null : randn(n, 400 + 10 * s + k, S * 0.3)));
      setGrads(rt, fused, grads);
      setGrads(rt, separate, grads);
      // reference: unscale, then clip_grad_norm_'s coefficient over the gradients present
      let sq = 0;
      for (const g of grads) if (g) for (const x of g) sq += (x / S) ** 2;
      const coef = (maxNorm > 0 ? Math.min(1, maxNorm / (Math.sqrt(sq) + 1e-6)) : 1) / S;
      ref.step(grads.map((g) => (g ? g.map((x) => x * coef) : null)));
      clipGradNorm(separate, maxNorm, gradScale === undefined ? {} : { gradScale }).dispose();
      optSeparate.step();
      const norm = gradNorm(fused, gradScale === undefined ? {} : { gradScale });
      close(await norm.read(), [Math.sqrt(sq)], 1e-5, `${what}: gradNorm (the true norm)`);
      optFused.step(undefined, { clip: { norm, maxNorm, gradScale } });
      norm.dispose();
      // the fused step leaves the gradients as they were
      for (let k = 0; k < sizes.length; k++) if (grads[k]) close(await fused[k].grad!.read(), grads[k]!, 1e-6, `${what}: grad ${k} untouched`);
    }
    for (let k = 0; k < sizes.length; k++) {
      const [a, b] = [await fused[k].read(), await separate[k].read()];
      let differ = 0;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ++;
      assert.is(differ, 0, `${what}: param ${k}: ${differ} of ${a.length} values differ from clipGradNorm + step`);
      close(a, ref.p[k], 1e-5, `${what}: param ${k} vs f64`);
    }
    for (const t of [...fused, ...separate]) {
      t.grad?.dispose();
      t.dispose();
    }
    optFused.dispose();
    optSeparate.dispose();
  }
  const p = upload(rt, randn(5, 1), [5], { requiresGrad: true });
  p.grad = upload(rt, randn(5, 2), [5]);
  const opt = new AdamW([p], { lr: 1e-3 });
  const norm = gradNorm([p]);
  assert.throws(() => opt.step(undefined, { clip: { norm, maxNorm: -1 } }), /maxNorm must be a positive number/);
  assert.throws(() => opt.step(undefined, { clip: { norm: p, maxNorm: 1 } }), /clip.norm must be f32 \[1\]/);
  for (const t of [norm, p.grad, p]) t.dispose();
  opt.dispose();
});

test('AdamW exportState / importState resumes bit-identically; zeroGrad drops or zero-fills grads', async () => {
  const rt = await getRuntime();
  const init = sizes.map((n, k) => randn(n, 30 + k));
  const make = () => init.map((x) => upload(rt, x, [x.length], { requiresGrad: true }));
  const a = make();
  const optA = new AdamW(a, { lr: 5e-3 });
  const grads = (s: number) => sizes.map((n, k) => randn(n, 500 + 10 * s + k));
  for (let s = 0; s < 3; s++) {
    setGrads(rt, a, grads(s));
    optA.step();
  }
  const saved = await optA.exportState();
  const b = await Promise.all(a.map(async (p) => upload(rt, await p.read(), [p.size], { requiresGrad: true })));
  const optB = new AdamW(b, { lr: 5e-3 });
  optB.importState(saved);
  for (let s = 3; s < 5; s++) {
    setGrads(rt, a, grads(s));
    setGrads(rt, b, grads(s));
    optA.step();
    optB.step();
  }
  for (let k = 0; k < a.length; k++) close(await b[k].read(), await a[k].read(), 0, `resumed param ${k}`);

  optA.zeroGrad(false);
  for (const p of a) assert.ok((await p.grad!.read()).every((v) => v === 0), 'zero-filled');
  optA.zeroGrad();
  assert.ok(a.every((p) => p.grad === null), 'set to none');
  assert.throws(() => optB.importState({ ...saved, m: saved.m.slice(1) }), /state is for 2 parameters/);
  optA.dispose();
  optB.dispose();
});

test('clipGradNorm: global norm on the GPU, PyTorch coefficient, parameters without grad skipped', async () => {
  const rt = await getRuntime();
  // vec4 + scalar tail, a parameter without grad, vec4 only (64), tail only (3)
  const n = [5001, 33, 1, 2049, 64, 3];
  const has = [0, 1, 3, 4, 5];
  const gs = n.map((k, i) => randn(k, 70 + i, 0.3));
  const params = n.map((k) => upload(rt, new Float64Array(k), [k], { requiresGrad: true }));
  setGrads(rt, params, gs.map((g, i) => (i === 2 ? null : g)));
  let sq = 0;
  for (const i of has) for (const v of gs[i]) sq += v * v;
  const ref = Math.sqrt(sq);
  const maxNorm = ref / 3;
  const norm = clipGradNorm(params, maxNorm);
  assert.ok(!(norm instanceof Promise), 'synchronous: nothing is read back to the host');
  close(await norm.read(), [ref], 1e-6, 'global norm');
  const coef = Math.min(1, maxNorm / (ref + 1e-6));
  for (const i of has) close(await params[i].grad!.read(), Array.from(gs[i], (v) => v * coef), 1e-6, `clipped grad ${i}`);
  assert.is(params[2].grad, null);
  // below the threshold the gradients are left as they are (coefficient clamped to 1)
  const again = clipGradNorm(params, 1e6);
  close(await again.read(), [maxNorm], 1e-5, 'norm after clipping is maxNorm');
  for (const i of has) close(await params[i].grad!.read(), Array.from(gs[i], (v) => v * coef), 1e-6, `unchanged grad ${i}`);
  assert.throws(() => clipGradNorm(params, 0), /maxNorm must be a positive number/);
});

test('clipGradNorm with a loss scale: unscales and clips in one pass, returns the true norm; overflow shows as non-finite', async () => {
  const rt = await getRuntime();
  const n = [3001, 17];
  const gs = n.map((k, i) => randn(k, 80 + i, 0.5));
  const S = 1024;
  const params = n.map((k) => upload(rt, new Float64Array(k), [k], { requiresGrad: true }));
  let sq = 0;
  for (const g of gs) for (const v of g) sq += v * v;
  const ref = Math.sqrt(sq);
  // clip to a third of the true norm
  setGrads(rt, params, gs.map((g) => g.map((v) => v * S)));
  const norm = clipGradNorm(params, ref / 3, { gradScale: S });
  close(await norm.read(), [ref], 1e-6, 'unscaled global norm');
  const coef = Math.min(1, ref / 3 / (ref + 1e-6));
  for (const i of [0, 1]) close(await params[i].grad!.read(), Array.from(gs[i], (v) => v * coef), 1e-6, `unscaled, clipped grad ${i}`);
  // maxNorm 0: unscale only
  setGrads(rt, params, gs.map((g) => g.map((v) => v * S)));
  close(await clipGradNorm(params, 0, { gradScale: S }).read(), [ref], 1e-6, 'norm, unscale only');
  for (const i of [0, 1]) close(await params[i].grad!.read(), gs[i], 1e-6, `unscaled grad ${i}`);
  // an overflowed gradient (inf) makes the norm non-finite, which is how the trainer knows to skip the step
  const bad = gs.map((g) => g.slice());
  bad[1][5] = Infinity;
  setGrads(rt, params, bad);
  const overflow = (await clipGradNorm(params, 1, { gradScale: S }).read())[0];
  assert.ok(!Number.isFinite(overflow), `norm with an inf gradient is ${overflow}`);
  assert.throws(() => clipGradNorm(params, 1, { gradScale: 0 }), /gradScale must be a positive number/);
});

test.run();
