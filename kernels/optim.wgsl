// Optimizer kernels, in place on the GPU, one thread per element (2-D grid: i = x + y * width).
//   adamwStep: torch.optim.AdamW (single-tensor path, amsgrad off) for parameter p with gradient g:
//                p *= decay                                   decay = 1 - lr * weightDecay (decoupled weight decay)
//                m = m + (1 - beta1) (g - m)                  (PyTorch's lerp)
//                v = beta2 v + (1 - beta2) g^2
//                p -= stepSize * m / (sqrt(v) / bc2Sqrt + eps)   stepSize = lr / (1 - beta1^t), bc2Sqrt = sqrt(1 - beta2^t)
//              The host computes the lr- and step-dependent terms in f64 each step and passes them as uniforms, so
//              a learning-rate schedule never rebuilds a pipeline. 1 - beta comes from the host too: f32(0.999)
//              subtracted from 1 on the GPU would be 1.3e-5 off.
//   adamwStep4: the same on vec4 for the first n4 * 4 elements (4x fewer memory operations); adamwStep then does the
//              last n % 4 from `offset` on.
//   adamwStepClipped(4): the same with g = grad * clipCoefficient() (clipScale's factor, below): gradient clipping and
//              mixed-precision unscaling inside the update, instead of a clipScale pass that reads and writes every
//              gradient once more. The scaled g is the value clipScale would have stored, so the update is the same.
//   clipScale: g *= invScale * min(1, maxNorm / (norm[0] + 1e-6)), with the global norm read from the GPU: the host
//              never waits (torch.nn.utils.clip_grad_norm_ semantics; the global norm comes from reduce.wgsl's
//              partialSums). invScale = 1 / loss scale unscales mixed-precision gradients in the same pass, and then
//              norm[0] is already the unscaled norm; maxNorm = 0 means unscale only.
//   zeroFill:  gradInOut = 0 (zeroGrad without freeing the buffers)
//   clipScale4 / zeroFill4: the same on vec4 over the first n4 * 4 elements (cp.n counts vec4s); the scalar entries
//              then do the last n % 4 from cp.offset on.
const WG: u32 = 256u;

struct AdamParams { n: u32, offset: u32, decay: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32, eps: f32, stepSize: f32, bc2Sqrt: f32 }
struct ClipParams { n: u32, offset: u32, maxNorm: f32, invScale: f32 }

@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<uniform> cp: ClipParams;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> gradInOut: array<f32>;
@group(0) @binding(7) var<storage, read> norm: array<f32>;
@group(0) @binding(8) var<storage, read_write> param4: array<vec4f>;
@group(0) @binding(9) var<storage, read> grad4: array<vec4f>;
@group(0) @binding(10) var<storage, read_write> m4: array<vec4f>;
@group(0) @binding(11) var<storage, read_write> v4: array<vec4f>;
@group(0) @binding(12) var<storage, read_write> gradInOut4: array<vec4f>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

fn adamwUpdate(i: u32, g: f32) {
  let p = param[i] * ap.decay;
  let mi = m[i] + ap.oneMinusBeta1 * (g - m[i]);
  let vi = ap.beta2 * v[i] + ap.oneMinusBeta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = p - ap.stepSize * mi / (sqrt(vi) / ap.bc2Sqrt + ap.eps);
}

fn adamwUpdate4(i: u32, g: vec4f) {
  let p = param4[i] * ap.decay;
  let m0 = m4[i];
  let mi = m0 + ap.oneMinusBeta1 * (g - m0);
  let vi = ap.beta2 * v4[i] + ap.oneMinusBeta2 * g * g;
  m4[i] = mi;
  v4[i] = vi;
  param4[i] = p - ap.stepSize * mi / (sqrt(vi) / ap.bc2Sqrt + ap.eps);
}

@compute @workgroup_size(WG)
fn adamwStep(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg) + ap.offset;
  if (i < ap.n) { adamwUpdate(i, grad[i]); }
}

// ap.n counts vec4s here
@compute @workgroup_size(WG)
fn adamwStep4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < ap.n) { adamwUpdate4(i, grad4[i]); }
}

@compute @workgroup_size(WG)
fn adamwStepClipped(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg) + ap.offset;
  if (i < ap.n) { adamwUpdate(i, grad[i] * clipCoefficient()); }
}

@compute @workgroup_size(WG)
fn adamwStepClipped4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < ap.n) { adamwUpdate4(i, grad4[i] * clipCoefficient()); }
}

@compute @workgroup_size(WG)
fn clipScale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg) + cp.offset;
  if (i >= cp.n) { return; }
  gradInOut[i] = gradInOut[i] * clipCoefficient();
}

fn clipCoefficient() -> f32 {
  var coef = cp.invScale;
  if (cp.maxNorm > 0.0) { coef = coef * min(1.0, cp.maxNorm / (norm[0] + 1e-6)); }
  return coef;
}

@compute @workgroup_size(WG)
fn clipScale4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n) { return; }
  gradInOut4[i] = gradInOut4[i] * clipCoefficient();
}

@compute @workgroup_size(WG)
fn zeroFill4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < cp.n) { gradInOut4[i] = vec4f(0.0); }
}

@compute @workgroup_size(WG)
fn zeroFill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg) + cp.offset;
  if (i < cp.n) { gradInOut[i] = 0.0; }
}
