// Random initialisation as Hugging Face's *PreTrainedModel._init_weights leaves a fresh model (what from_pretrained
// does to the parameters a checkpoint lacks, e.g. a new classification head). Each family states its rule per
// parameter (InitRule); this file draws the values from our seeded generator in state-dict order, so the values
// match HF's distributions, not its numbers, and a given seed always gives the same model.
import { seededRandom } from './specaugment.js';
import type { InitTensor } from './family.js';

export type { InitTensor };

export type InitRule =
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; lo: number; hi: number }
  | { kind: 'fill'; value: number }
  /** weight_norm(dim=2)'s g for the named v [O, I, K]: ||v|| over dims 0 and 1, shaped [1, 1, K] */
  | { kind: 'weightNormMagnitude'; of: string };

export interface InitOptions {
  seed?: number;
  /** initialise only these names (default: every parameter) */
  only?: (name: string) => boolean;
}

/** Fresh values for `shapes` (state-dict order) by `rule`; weight-norm magnitudes follow their v. */
export function initParameters(shapes: ReadonlyMap<string, readonly number[]>, rule: (name: string, shape: readonly number[]) => InitRule, opts: InitOptions = {}): Map<string, InitTensor> {
  const random = seededRandom(opts.seed ?? 0);
  const out = new Map<string, InitTensor>();
  const derived: [string, string][] = [];
  for (const [name, shape] of shapes) {
    if (opts.only && !opts.only(name)) continue;
    const r = rule(name, shape);
    if (r.kind === 'weightNormMagnitude') {
      derived.push([name, r.of]);
      continue;
    }
    out.set(name, { shape: [...shape], data: drawValues(r, shape.reduce((a, b) => a * b, 1), random) });
  }
  for (const [name, of] of derived) {
    const v = out.get(of);
    if (!v) throw new Error(`init: ${name} is derived from ${of}, which is not being initialised`);
    out.set(name, { shape: [...shapes.get(name)!], data: weightNormMagnitude(v.data, v.shape) });
  }
  // keep state-dict order (weight_g precedes weight_v there)
  const ordered = new Map<string, InitTensor>();
  for (const name of shapes.keys()) if (out.has(name)) ordered.set(name, out.get(name)!);
  return ordered;
}

function drawValues(r: Exclude<InitRule, { kind: 'weightNormMagnitude' }>, n: number, random: () => number): Float32Array {
  const out = new Float32Array(n);
  if (r.kind === 'fill') return out.fill(r.value);
  if (r.kind === 'uniform') {
    for (let i = 0; i < n; i++) out[i] = r.lo + (r.hi - r.lo) * random();
    return out;
  }
  for (let i = 0; i < n; i += 2) {
    // Box-Muller: two independent normals per pair of uniforms
    const u = Math.max(random(), 1e-12);
    const v = random();
    const rad = Math.sqrt(-2 * Math.log(u));
    out[i] = r.std * rad * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r.std * rad * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** weight_norm(dim=2)'s g for v [O, I, K]: g[k] = sqrt(sum over o, i of v[o, i, k]^2), shaped [1, 1, K]. */
export function weightNormMagnitude(v: Float32Array, shape: readonly number[]): Float32Array {
  const K = shape[2];
  const g = new Float64Array(K);
  for (let i = 0; i < v.length; i++) g[i % K] += v[i] * v[i];
  return Float32Array.from(g, Math.sqrt);
}

/** nn.Linear and LayerNorm names ending a parameter: the rule most families use for everything else. */
export function defaultRule(name: string, initializerRange: number): InitRule {
  if (/(^|\.)(layer_norm|final_layer_norm|self_attn_layer_norm)\.weight$/.test(name)) return { kind: 'fill', value: 1 };
  if (/(^|\.)(layer_norm|final_layer_norm|self_attn_layer_norm)\.bias$/.test(name)) return { kind: 'fill', value: 0 };
  if (name.endsWith('.weight')) return { kind: 'normal', std: initializerRange };
  if (name.endsWith('.bias')) return { kind: 'fill', value: 0 };
  throw new Error(`init: no rule for ${name}`);
}
