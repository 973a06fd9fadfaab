// AdamW (PyTorch semantics) and global gradient-norm clipping, both in place on the GPU with no host round trip.
// No autograd: these run between backward() and the next forward.
import source from '../../kernels/optim.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import type { Bindings } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { keep } from '../autograd.js';
import { grid1d } from './grid.js';
import { full } from './elementwise.js';
import { reducePass, reduceToScalar, REDUCE_CHUNK } from './reduce.js';

export const optimKernel = defineKernel('optim', source);
const WG = 256;

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** decoupled weight decay (PyTorch's AdamW default 0.01) */
  weightDecay?: number;
}

/** Checkpointable optimizer state. m / v are null for parameters that never had a gradient (state is lazy, as in PyTorch). */
export interface AdamWState {
  /** step() calls so far */
  step: number;
  /** per-parameter step counts (bias correction): a parameter skipped for lack of a gradient does not advance */
  paramSteps: number[];
  m: (Float32Array | null)[];
  v: (Float32Array | null)[];
}

/**
 * Gradient clipping (and mixed-precision unscaling) applied inside AdamW.step: each gradient is multiplied by
 * (1 / gradScale) * min(1, maxNorm / (norm + 1e-6)) as the update reads it, exactly what clipGradNorm would have
 * stored, without that extra pass over every gradient. `norm` is gradNorm()'s [1] result (read on the GPU: the host
 * never waits); maxNorm = 0 with a gradScale only unscales.
 */
export interface GradClip {
  norm: Tensor;
  maxNorm: number;
  gradScale?: number;
}

function checkGradScale(op: string, gradScale: number): void {
  if (!(gradScale > 0) || !Number.isFinite(gradScale)) throw new Error(`${op}: gradScale must be a positive number, got ${gradScale}`);
}

/** Validated clip settings as the kernels take them (ClipParams.maxNorm, invScale). */
function clipSettings(op: string, maxNorm: number, gradScale: number | undefined): { maxNorm: number; invScale: number } {
  const scale = gradScale ?? 1;
  checkGradScale(op, scale);
  const unscaleOnly = maxNorm === 0 && gradScale !== undefined;
  if (!unscaleOnly && (!(maxNorm > 0) || !Number.isFinite(maxNorm))) throw new Error(`${op}: maxNorm must be a positive number, got ${maxNorm}`);
  return { maxNorm, invScale: 1 / scale };
}

function checkF32(op: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new Error(`${op}: ${t.label} is ${t.dtype}; only f32 parameters are supported`);
}

export class AdamW {
  readonly params: Tensor[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  stepCount = 0;
  private paramSteps: number[];
  private m: (Tensor | null)[];
  private v: (Tensor | null)[];

  constructor(params: Tensor[], opts: AdamWOptions) {
    this.params = [...params];
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    const [b1, b2] = this.betas;
    if (!(this.lr >= 0) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(this.eps >= 0) || !(this.weightDecay >= 0)) {
      throw new Error(`AdamW: invalid options lr=${this.lr} betas=${this.betas} eps=${this.eps} weightDecay=${this.weightDecay}`);
    }
    for (const p of this.params) checkF32('AdamW', p);
    this.paramSteps = this.params.map(() => 0);
    this.m = this.params.map(() => null);
    this.v = this.params.map(() => null);
  }

  /**
   * One update of every parameter that has a gradient; `lr` (optional) replaces the learning rate from now on.
   * opts.clip clips (and unscales) the gradients inside the update (see GradClip); the gradients themselves are left
   * as they are.
   */
  step(lr?: number, opts: { clip?: GradClip } = {}): void {
    if (lr !== undefined) {
      if (!(lr >= 0)) throw new Error(`AdamW.step: invalid lr ${lr}`);
      this.lr = lr;
    }
    const clip = opts.clip;
    const cp = clip ? { ...clipSettings('AdamW.step', clip.maxNorm, clip.gradScale), n: 0, offset: 0 } : null;
    if (clip && (clip.norm.dtype !== 'f32' || clip.norm.size !== 1)) throw new Error(`AdamW.step: clip.norm must be f32 [1], got ${clip.norm.dtype} [${clip.norm.shape}]`);
    const clipBindings: Bindings = clip && cp ? { cp, norm: clip.norm } : {};
    const suffix = clip ? 'Clipped' : '';
    this.stepCount++;
    const [b1, b2] = this.betas;
    this.params.forEach((p, i) => {
      const g = p.grad;
      if (!g) return;
      if (g.size !== p.size) throw new Error(`AdamW: gradient of ${p.label} has ${g.size} elements, the parameter ${p.size}`);
      checkF32('AdamW', g);
      const [m, v] = this.stateOf(i);
      const t = ++this.paramSteps[i];
      const ap = {
        n: p.size,
        offset: 0,
        decay: 1 - this.lr * this.weightDecay,
        oneMinusBeta1: 1 - b1,
        beta2: b2,
        oneMinusBeta2: 1 - b2,
        eps: this.eps,
        stepSize: this.lr / (1 - b1 ** t),
        bc2Sqrt: Math.sqrt(1 - b2 ** t),
      };
      const n4 = Math.floor(p.size / 4);
      // cost: reads param, grad, m, v and writes param, m, v (7 f32 per element)
      if (n4 > 0) p.rt.dispatch(optimKernel, `adamwStep${suffix}4`, { ap: { ...ap, n: n4 }, param4: p, grad4: g, m4: m, v4: v, ...clipBindings }, grid1d(n4, WG), { cost: { bytes: 7 * 16 * n4 } });
      const tail = p.size - 4 * n4;
      if (tail > 0) p.rt.dispatch(optimKernel, `adamwStep${suffix}`, { ap: { ...ap, offset: 4 * n4 }, param: p, grad: g, m, v, ...clipBindings }, grid1d(tail, WG), { cost: { bytes: 7 * 4 * tail } });
    });
  }

  /** Drop every gradient (setToNone, PyTorch's default) or fill them with zeros. */
  zeroGrad(setToNone = true): void {
    for (const p of this.params) {
      if (!p.grad) continue;
      if (setToNone) {
        p.grad.dispose();
        p.grad = null;
      } else {
        checkF32('AdamW.zeroGrad', p.grad);
        inPlace(p.grad, 'zeroFill', { maxNorm: 0, invScale: 1 }, {});
      }
    }
  }

  private stateOf(i: number): [Tensor, Tensor] {
    const p = this.params[i];
    // moments outlive any tidy() scope step() runs in
    if (!this.m[i]) this.m[i] = keep(full(p, [p.size], 0, 'f32', `${p.label}.adam_m`));
    if (!this.v[i]) this.v[i] = keep(full(p, [p.size], 0, 'f32', `${p.label}.adam_v`));
    return [this.m[i]!, this.v[i]!];
  }

  async exportState(): Promise<AdamWState> {
    const read = async (t: Tensor | null) => (t ? ((await t.read()) as Float32Array) : null);
    return {
      step: this.stepCount,
      paramSteps: [...this.paramSteps],
      m: await Promise.all(this.m.map(read)),
      v: await Promise.all(this.v.map(read)),
    };
  }

  importState(state: AdamWState): void {
    const n = this.params.length;
    if (state.m.length !== n || state.v.length !== n || state.paramSteps.length !== n) {
      throw new Error(`AdamW.importState: state is for ${state.m.length} parameters, this optimizer has ${n}`);
    }
    this.params.forEach((p, i) => {
      const m = state.m[i];
      const v = state.v[i];
      if (!m !== !v) throw new Error(`AdamW.importState: parameter ${i} has only one of m / v`);
      if (!m || !v) {
        this.m[i]?.dispose();
        this.v[i]?.dispose();
        this.m[i] = this.v[i] = null;
      } else {
        if (m.length !== p.size || v.length !== p.size) throw new Error(`AdamW.importState: parameter ${i} (${p.label}) has ${p.size} elements, state ${m.length}/${v.length}`);
        const [tm, tv] = this.stateOf(i);
        tm.write(m);
        tv.write(v);
      }
      this.paramSteps[i] = state.paramSteps[i];
    });
    this.stepCount = state.step;
  }

  /** Free the moment buffers. */
  dispose(): void {
    for (const t of [...this.m, ...this.v]) t?.dispose();
    this.m = this.params.map(() => null);
    this.v = this.params.map(() => null);
  }
}

/** An in-place pass over g: the vec4 entry over the first floor(n / 4) * 4 elements, the scalar one over the rest. */
function inPlace(g: Tensor, entry: 'zeroFill' | 'clipScale', cp: { maxNorm: number; invScale: number }, extra: Record<string, Tensor>): void {
  const n4 = Math.floor(g.size / 4);
  // cost: zeroFill writes each f32 element once, clipScale reads and writes it
  const passes = entry === 'zeroFill' ? 1 : 2;
  if (n4 > 0) g.rt.dispatch(optimKernel, `${entry}4`, { cp: { ...cp, n: n4, offset: 0 }, gradInOut4: g, ...extra }, grid1d(n4, WG), { cost: { bytes: passes * 16 * n4 } });
  const tail = g.size - 4 * n4;
  if (tail > 0) g.rt.dispatch(optimKernel, entry, { cp: { ...cp, n: g.size, offset: 4 * n4 }, gradInOut: g, ...extra }, grid1d(tail, WG), { cost: { bytes: passes * 4 * tail } });
}

/**
 * Scale all gradients in place so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_:
 * coefficient min(1, maxNorm / (norm + 1e-6))). Everything happens on the GPU; returns the norm before clipping, [1].
 * Parameters without a gradient are skipped.
 *
 * Mixed precision: with opts.gradScale = S the gradients hold S * the true gradient (loss scaling); they are unscaled
 * in the same pass (as GradScaler.unscale_ then clip_grad_norm_), and the returned norm is the true one. It is
 * Infinity or NaN when a gradient overflowed, and then the step must be skipped. maxNorm = 0 with a gradScale
 * only unscales.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, opts: { gradScale?: number } = {}): Tensor {
  const { invScale } = clipSettings('clipGradNorm', maxNorm, opts.gradScale);
  const norm = gradNorm(params, opts, 'clipGradNorm');
  for (const p of params) if (p.grad) inPlace(p.grad, 'clipScale', { maxNorm, invScale }, { norm });
  return norm;
}

/**
 * The global L2 norm of all gradients, [1] on the GPU (divided by opts.gradScale: the true norm of loss-scaled
 * gradients; Infinity or NaN when one overflowed). Parameters without a gradient are skipped. With
 * AdamW.step(lr, { clip: { norm, maxNorm } }) it is clipGradNorm + step without the clipping pass.
 */
export function gradNorm(params: Tensor[], opts: { gradScale?: number } = {}, op = 'gradNorm'): Tensor {
  const gradScale = opts.gradScale ?? 1;
  checkGradScale(op, gradScale);
  if (params.length === 0) throw new Error(`${op}: no parameters`);
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) return full(params[0], [1], 0, 'f32', 'gradNorm');
  for (const g of grads) checkF32(op, g);
  const rt = grads[0].rt;
  // each gradient's sum of squares goes to its own slice of one buffer of partial sums, then one reduction over all
  const counts = grads.map((g) => Math.max(1, Math.ceil(g.size / REDUCE_CHUNK)));
  const partials = Tensor.empty(rt, [counts.reduce((a, b) => a + b, 0)], 'f32', 'gradNorm.partials');
  let offset = 0;
  grads.forEach((g, i) => {
    reducePass(g, partials, offset, { term: 'square' });
    offset += counts[i];
  });
  const invScale = 1 / gradScale;
  const norm = reduceToScalar(partials, { sqrt: true, scale: invScale * invScale });
  partials.dispose();
  norm.label = 'gradNorm';
  return norm;
}
