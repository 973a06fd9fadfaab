// Activations, elementwise over n values of any contiguous shape. One thread per element on a 2-D grid
// (i = x + y * width) so more than 65535 workgroups' worth of elements fit one dispatch.
//   geluForward:   y = 0.5 x (1 + erf(x / sqrt2)) = x Phi(x)                 (exact erf form, PyTorch default)
//   geluBackward:  gx = gy (Phi(x) + x phi(x)),  phi = exp(-x^2/2) / sqrt(2 pi)
//   tanhForward:   y = tanh x, from exp(-2|x|) (never overflows) and a series near 0 (no cancellation)
//   tanhBackward:  gx = gy (1 - y^2)                                          (y is the saved output)
//   dropoutApply:  y = keep(i) ? x / (1 - p) : 0, keep(i) = hash(seed, offset + i) >= p * 2^32.
//                  The mask is a pure function of (seed, offset + i), so the same entry applied to gy is the backward,
//                  and a checkpoint replaying the random stream regenerates it bit for bit. dropoutApply4: the same on
//                  4 elements per thread when n % 4 == 0.
// WGSL has no erf: Phi is computed from erfc on the non-negative side only (Numerical Recipes' Chebyshev fit,
// relative error < 1.2e-7 everywhere), so gelu keeps full relative accuracy in the far negative tail too.
// T is the storage type (f32, or f16 with shader-f16); arithmetic is f32. V / VF are the element and arithmetic types
// of one thread: T / f32, or vec4<T> / vec4f when n % 4 == 0 (then n counts vec4s: 4x fewer memory operations; the math
// is componentwise, the same per element). dropoutApply hashes element indices: it runs with V = T (dropoutApply4
// binds its own vec4 arrays).
alias T = f32;
alias V = T;
alias VF = f32;
const WG: u32 = 256u;

struct Sizes { n: u32 }
struct DropoutParams { n: u32, seed: u32, offset: u32, threshold: u32, scale: f32 }

@group(0) @binding(0) var<uniform> sizes: Sizes;
@group(0) @binding(1) var<uniform> dp: DropoutParams;
@group(0) @binding(2) var<storage, read> x: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;
@group(0) @binding(4) var<storage, read> gy: array<V>;
@group(0) @binding(5) var<storage, read_write> gx: array<V>;
@group(0) @binding(6) var<storage, read> yIn: array<V>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// ==== GELU math (src/ops/norm.ts appends this section to kernels/norm.wgsl with VF = f32, for its fused GELU) ====
const FRAC_1_SQRT2: f32 = 0.70710678118654752;
const FRAC_1_SQRT_2PI: f32 = 0.39894228040143268;

// erfc(z) for z >= 0, relative error < 1.2e-7 (Numerical Recipes erfcc)
fn erfcNonNeg(z: VF) -> VF {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
    t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(poly - z * z);
}

// Phi(x) = P(N(0,1) <= x) = 0.5 erfc(-x / sqrt2); the small tail is computed directly, the large side as 1 - tail
fn normalCdf(v: VF) -> VF {
  let tail = 0.5 * erfcNonNeg(abs(v) * FRAC_1_SQRT2);
  return select(1.0 - tail, tail, v < VF(0.0));
}

// GELU and its derivative: x Phi(x), Phi(x) + x phi(x)
fn geluOf(v: VF) -> VF { return v * normalCdf(v); }
fn geluGrad(v: VF) -> VF { return normalCdf(v) + v * FRAC_1_SQRT_2PI * exp(-0.5 * v * v); }
// ==== end GELU math

fn stableTanh(v: VF) -> VF {
  let a = abs(v);
  // Taylor series to x^9 below 0.25: next term < 1e-8 relative there, where (1 - e)/(1 + e) would cancel (both
  // forms computed, one selected per component)
  let s = v * v;
  let series = v * (1.0 + s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0 + s * (62.0 / 2835.0)))));
  let e = exp(-2.0 * a);
  return select(sign(v) * (1.0 - e) / (1.0 + e), series, a < VF(0.25));
}

@compute @workgroup_size(WG)
fn geluForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sizes.n) { return; }
  y[i] = V(geluOf(VF(x[i])));
}

@compute @workgroup_size(WG)
fn geluBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sizes.n) { return; }
  gx[i] = V(VF(gy[i]) * geluGrad(VF(x[i])));
}

@compute @workgroup_size(WG)
fn tanhForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sizes.n) { return; }
  y[i] = V(stableTanh(VF(x[i])));
}

@compute @workgroup_size(WG)
fn tanhBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sizes.n) { return; }
  let t = VF(yIn[i]);
  gx[i] = V(VF(gy[i]) * (1.0 - t * t));
}

// PCG output permutation of one LCG step: a good 32-bit integer hash (Jarzynski & Olano 2020)
fn pcgHash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// Counter-based: bits depend only on (seed, counter). Both hashes are bijections, so distinct counters of one seed
// never collide and each seed gives a different permutation.
fn randomBits(seed: u32, counter: u32) -> u32 {
  return pcgHash(pcgHash(counter) ^ pcgHash(seed ^ 0x9e3779b9u));
}

// dropoutApply on 4 consecutive elements per thread (n % 4 == 0): vec4 loads and stores, one hash per element as in
// dropoutApply (the same mask bit for bit), a quarter of the threads.
@group(0) @binding(7) var<storage, read> dropX4: array<vec4<T>>;
@group(0) @binding(8) var<storage, read_write> dropY4: array<vec4<T>>;

@compute @workgroup_size(WG)
fn dropoutApply4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = flat(gid, nwg);
  if (q >= dp.n / 4u) { return; }
  let c = dp.offset + 4u * q;
  let bits = vec4u(randomBits(dp.seed, c), randomBits(dp.seed, c + 1u), randomBits(dp.seed, c + 2u), randomBits(dp.seed, c + 3u));
  dropY4[q] = vec4<T>(select(vec4f(0.0), vec4f(dropX4[q]) * dp.scale, bits >= vec4u(dp.threshold)));
}

@compute @workgroup_size(WG)
fn dropoutApply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= dp.n) { return; }
  let keep = randomBits(dp.seed, dp.offset + i) >= dp.threshold;
  y[i] = V(select(VF(0.0), VF(x[i]) * dp.scale, keep)); // (VF: so the vec4 module compiles; only run on scalars)
}
