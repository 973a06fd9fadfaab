// A small tape-free autograd: every op that has an input needing a gradient records a GraphNode holding its inputs,
// the tensors its backward needs (retained, so they outlive the forward scope) and a backward closure written next to
// the forward kernel call. backward() walks the graph in reverse topological order, accumulates into leaves' .grad,
// and releases each node's saved tensors as soon as its backward has run.
import type { Tensor } from './tensor.js';

/** Gradients of the inputs from the output's (owned by the engine after return; gradOut itself may be returned for one input). */
export type BackwardFn = (gradOut: Tensor, needs: boolean[]) => (Tensor | null)[];

export class GraphNode {
  /** profile sections open when the op ran forward (only while profiling): backward time is booked under them */
  sections: string[] | null = null;

  constructor(
    readonly op: string,
    readonly inputs: Tensor[],
    readonly saved: Tensor[],
    readonly backwardFn: BackwardFn,
  ) {}
}

/** Run fn inside the named sections, outermost first (a profile's section path is a handful of names deep). */
function inSections<R>(rt: Tensor['rt'], names: readonly string[], fn: () => R, from = 0): R {
  if (from >= names.length) return fn();
  return rt.section(names[from], () => inSections(rt, names, fn, from + 1));
}

interface GraphState {
  gradEnabled: boolean;
  scopes: Set<Tensor>[];
  /** dropout / SpecAugment random stream: seed and a counter advanced per call (replayed by checkpoint) */
  rngSeed: number;
  rngOffset: number;
  /** mixed precision: matmul-class ops run in this dtype (see autocast) */
  autocast: 'f16' | null;
  /** accumulate b into a (a += b); set by ops/elementwise to avoid an import cycle at load time */
  accumulate: ((a: Tensor, b: Tensor) => void) | null;
  ones: ((like: Tensor) => Tensor) | null;
  /** a fresh copy of t */
  copy: ((t: Tensor) => Tensor) | null;
}

const state: GraphState = { gradEnabled: true, scopes: [], rngSeed: 0, rngOffset: 0, autocast: null, accumulate: null, ones: null, copy: null };

export function registerGradHelpers(accumulate: (a: Tensor, b: Tensor) => void, ones: (like: Tensor) => Tensor, copy: (t: Tensor) => Tensor): void {
  state.accumulate = accumulate;
  state.ones = ones;
  state.copy = copy;
}

export function isGradEnabled(): boolean {
  return state.gradEnabled;
}

/** Run fn without recording anything for backward (evaluation, frozen parts, optimizer steps). */
export function noGrad<T>(fn: () => T): T {
  const prev = state.gradEnabled;
  state.gradEnabled = false;
  try {
    return fn();
  } finally {
    state.gradEnabled = prev;
  }
}

/**
 * Mixed precision, as PyTorch's autocast: inside fn, linear layers (the bulk of a transformer's FLOPs) cast their f32
 * inputs and weights to f16, multiply in f16 storage with f32 accumulation and cast the result back to f32; layer
 * norm, softmax/attention, reductions and the loss stay f32. Gradients flow back through the casts, so f32 master
 * weights receive f32 gradients. Pair it with loss scaling (the trainer's --fp16) so small gradients do not flush
 * to zero in f16. `null` turns it off inside fn.
 */
export function autocast<T>(fn: () => T, dtype: 'f16' | null = 'f16'): T {
  const prev = state.autocast;
  state.autocast = dtype;
  try {
    return fn();
  } finally {
    state.autocast = prev;
  }
}

/** The dtype matmul-class ops compute in under autocast, or null outside it. */
export function autocastDtype(): 'f16' | null {
  return state.autocast;
}

export function withGrad<T>(fn: () => T): T {
  const prev = state.gradEnabled;
  state.gradEnabled = true;
  try {
    return fn();
  } finally {
    state.gradEnabled = prev;
  }
}

export function trackTensor(t: Tensor): void {
  const s = state.scopes[state.scopes.length - 1];
  if (s) s.add(t);
}

/** Remove tensors from the current scope so they survive it (parameters, gradients, results). */
export function keep<T extends Tensor | Tensor[]>(t: T): T {
  const list = Array.isArray(t) ? t : [t];
  for (const s of state.scopes) for (const x of list) s.delete(x);
  return t;
}

/**
 * Dispose every tensor created inside fn except those it returns (a Tensor, an array, or an object of tensors).
 * Tensors still saved by autograd nodes keep their buffers until backward has used them.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  state.scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    state.scopes.pop();
  }
  const keepSet = new Set<Tensor>();
  collectTensors(result, keepSet);
  const parent = state.scopes[state.scopes.length - 1];
  for (const t of scope) {
    if (keepSet.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

function collectTensors(v: unknown, out: Set<Tensor>): void {
  if (!v || typeof v !== 'object') return;
  if ('gpu' in (v as object) && 'shape' in (v as object)) {
    out.add(v as Tensor);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collectTensors(x, out);
  else if (v instanceof Map) for (const x of v.values()) collectTensors(x, out);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v as object)) collectTensors(x, out);
}

/**
 * Attach a backward to an op's output. Nothing is recorded (and nothing saved) when grad mode is off or no input
 * needs a gradient, which is what makes frozen sub-graphs free.
 */
export function record(op: string, out: Tensor, inputs: Tensor[], saved: Tensor[], backwardFn: BackwardFn, force = false): Tensor {
  if (!state.gradEnabled) return out;
  if (!force && !inputs.some((t) => t.requiresGrad)) return out;
  for (const t of saved) t.retain();
  out.requiresGrad = true;
  out.node = new GraphNode(op, inputs, saved, backwardFn);
  out.node.sections = out.rt.sectionStack();
  return out;
}

/** Seed for the GPU random stream (dropout, masks). */
export function manualSeed(seed: number): void {
  state.rngSeed = seed >>> 0;
  state.rngOffset = 0;
}

/** Reserve `count` random numbers; returns the seed and offset a kernel should hash. */
export function nextRandom(count: number): { seed: number; offset: number } {
  const r = { seed: state.rngSeed, offset: state.rngOffset };
  state.rngOffset = (state.rngOffset + Math.max(1, count)) >>> 0;
  return r;
}

/**
 * Backpropagate from `root` (a scalar unless gradOut is given). Leaves with requiresGrad accumulate into .grad;
 * intermediate gradients and saved tensors are freed as soon as they are used. The graph is consumed.
 */
export function backward(root: Tensor, gradOut?: Tensor): void {
  if (!root.node) throw new Error(`backward: tensor ${root.label} does not require grad (or its graph was already consumed)`);
  if (!state.accumulate || !state.ones) throw new Error('backward: gradient helpers are not registered (import ops)');
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  // iterative DFS post-order: deep transformer graphs would overflow a recursive walk
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node ? t.node.inputs : [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (c.node && !visited.has(c)) {
        visited.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  const seed = gradOut ?? state.ones(root);
  grads.set(root, seed);
  const prevGrad = state.gradEnabled;
  state.gradEnabled = false;
  try {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const node = t.node!;
      const g = grads.get(t);
      grads.delete(t);
      if (g) {
        const needs = node.inputs.map((x) => x.requiresGrad);
        const run = () => node.backwardFn(g, needs);
        const inGrads = node.sections?.length ? inSections(t.rt, node.sections, run) : run();
        // A backward may return its incoming gradient itself as one input's (an identity: add, residual sums),
        // handing it over instead of copying it. Only one input may own it (gradients are accumulated in place),
        // and the caller's gradOut is never handed over: those get copies.
        let handedOver = false;
        for (let i = 0; i < inGrads.length; i++) {
          if (inGrads[i] !== g) continue;
          if (g === gradOut || handedOver) inGrads[i] = state.copy!(g);
          else handedOver = true;
        }
        if (g !== gradOut && !handedOver) g.dispose();
        node.inputs.forEach((x, i) => {
          const gi = inGrads[i];
          if (!gi) return;
          if (!needs[i]) {
            gi.dispose();
            return;
          }
          if (!x.node) accumulateLeaf(x, gi);
          else {
            const prev = grads.get(x);
            if (prev) {
              state.accumulate!(prev, gi);
              gi.dispose();
            } else grads.set(x, gi);
          }
        });
      }
      for (const s of node.saved) s.releaseSaved();
      t.node = null;
    }
  } finally {
    state.gradEnabled = prevGrad;
    for (const g of grads.values()) if (g !== gradOut) g.dispose();
  }
}

function accumulateLeaf(x: Tensor, g: Tensor): void {
  if (x.grad) {
    state.accumulate!(x.grad, g);
    g.dispose();
  } else {
    // the shapes of a gradient and its leaf must agree; a view-shaped gradient is re-viewed
    x.grad = keep(g.shape.join() === x.shape.join() ? g : g.reshape(x.shape));
    if (x.grad !== g) g.dispose();
  }
}

/**
 * Gradient checkpointing: run `fn` without storing its intermediates; in backward, run it again with grad on and
 * backpropagate through the recomputation. Random streams are replayed so dropout masks match.
 * Parameters used inside fn receive their gradients directly.
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[]): Tensor {
  if (!state.gradEnabled) return fn(...inputs);
  const rng = { seed: state.rngSeed, offset: state.rngOffset };
  const cast = state.autocast; // the recomputation must run in the same precision as the forward
  const out = noGrad(() => tidy(() => fn(...inputs)));
  return record('checkpoint', out, inputs, inputs, (gradOut) => {
    const saveRng = { seed: state.rngSeed, offset: state.rngOffset };
    state.rngSeed = rng.seed;
    state.rngOffset = rng.offset;
    const detached = inputs.map((x) => {
      const d = x.detach();
      d.requiresGrad = x.requiresGrad;
      return d;
    });
    try {
      tidy(() => {
        const again = withGrad(() => autocast(() => fn(...detached), cast));
        if (again.node) backward(again, gradOut);
        return undefined;
      });
    } finally {
      state.rngSeed = saveRng.seed;
      state.rngOffset = saveRng.offset;
    }
    return detached.map((d) => {
      const g = d.grad;
      d.grad = null;
      d.dispose();
      return g;
    });
  }, true);
}
