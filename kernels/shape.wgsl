// Shape and masking ops on contiguous row-major tensors.
//   transposeLast2:     x [batch, rows, cols] -> y [batch, cols, rows]. TILE x TILE tiles go through workgroup memory so
//                       both the load and the store walk contiguous memory; the batch loops over z (more than 65535
//                       fit). Its own backward.
//   transposeLast2Direct: the same map with one invocation per element of y and no workgroup memory, for CPU adapters
//                       (lavapipe): there a barrier costs every invocation a coroutine switch and loads run lane by
//                       lane whatever their addresses, so the tiles only cost (measured 0.3 GB/s tiled).
//   sliceLast:          y [R, len] = x[R, start : start + len]     (x [R, width])
//   sliceLastBackward:  gx [R, width] = gy inside the window, 0 outside (every element written: no separate fill)
//   maskRows:           y[r, c] = keep(r) ? x[r, c] : 0, keep(r) = (mask[r] != 0) != invert      (x [R = B*T, C])
//                       forward and backward of maskRows; with invert = 1 the x-gradient of replaceRows
//   replaceRows:        y[r, c] = mask[r] != 0 ? row[c] : x[r, c]
//   replaceRowsGradRow: grow[c] = sum over r with mask[r] != 0 of gy[r, c]: a WG_C x LANES workgroup per channel
//                       tile, lanes take interleaved rows in blocks (partial sums: error grows with R / BLOCK + BLOCK,
//                       not R), fixed-order combine, so it is deterministic.
//   maskColumns:        y[b, t, c] = mask[b, c] != 0 ? 0 : x[b, t, c]   (forward and backward)
//   copyBlock:          y[o, dstOff + t, j] = x[o, srcOff + t, j] for o < n / (len * inner), t < len, j < inner
//                       (x [outer, srcRows, inner], y [outer, dstRows, inner]): one dispatch per part of a concat
//                       (each writes its own block of y; together they cover y) and the backward of concat and of
//                       sliceAxis (a block of gy copied out, or into a zero-filled gx).
// T is the storage type (f32, or f16 with shader-f16); sums are f32.
alias T = f32;
const WG: u32 = 256u;
const TILE: u32 = 16u;
const WG_C: u32 = 64u;
const LANES: u32 = 4u;
const BLOCK: u32 = 32u;

struct TransposeParams { batch: u32, rows: u32, cols: u32 }
struct SliceParams { n: u32, width: u32, start: u32, len: u32 }
struct MaskParams { n: u32, rows: u32, frames: u32, channels: u32, invert: u32 }
struct CopyParams { n: u32, inner: u32, len: u32, srcRows: u32, srcOff: u32, dstRows: u32, dstOff: u32 }

@group(0) @binding(0) var<uniform> tp: TransposeParams;
@group(0) @binding(1) var<uniform> sp: SliceParams;
@group(0) @binding(2) var<uniform> mp: MaskParams;
@group(0) @binding(3) var<storage, read> x: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> mask: array<i32>;
@group(0) @binding(6) var<storage, read> row: array<T>;
@group(0) @binding(7) var<storage, read_write> grow: array<T>;
@group(0) @binding(8) var<uniform> cp: CopyParams;

var<workgroup> tile: array<array<T, TILE + 1u>, TILE>; // +1 column: the transposed read hits distinct banks
var<workgroup> laneSums: array<array<f32, WG_C>, LANES>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(TILE, TILE)
fn transposeLast2(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let rows = tp.rows;
  let cols = tp.cols;
  for (var b = wid.z; b < tp.batch; b += nwg.z) {
    let base = b * rows * cols;
    let r = wid.y * TILE + lid.y;
    let c = wid.x * TILE + lid.x;
    if (r < rows && c < cols) { tile[lid.y][lid.x] = x[base + r * cols + c]; }
    workgroupBarrier();
    // y row = a column of x, y column = a row of x
    let yr = wid.x * TILE + lid.y;
    let yc = wid.y * TILE + lid.x;
    if (yr < cols && yc < rows) { y[base + yr * rows + yc] = tile[lid.x][lid.y]; }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn transposeLast2Direct(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let plane = tp.rows * tp.cols;
  if (i >= tp.batch * plane) { return; }
  let b = i / plane;
  let k = i - b * plane;
  // y [cols, rows] of batch b: y[yr, yc] = x[yc, yr]
  let yr = k / tp.rows;
  let yc = k - yr * tp.rows;
  y[i] = x[b * plane + yc * tp.cols + yr];
}

@compute @workgroup_size(WG)
fn sliceLast(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sp.n) { return; }
  let r = i / sp.len;
  let j = i - r * sp.len;
  y[i] = x[r * sp.width + sp.start + j];
}

@compute @workgroup_size(WG)
fn sliceLastBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= sp.n) { return; }
  let r = i / sp.width;
  let j = i - r * sp.width;
  var v = T(0.0);
  if (j >= sp.start && j < sp.start + sp.len) { v = x[r * sp.len + j - sp.start]; }
  y[i] = v;
}

@compute @workgroup_size(WG)
fn maskRows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= mp.n) { return; }
  let keep = (mask[i / mp.channels] != 0) != (mp.invert != 0u);
  y[i] = select(T(0.0), x[i], keep);
}

@compute @workgroup_size(WG)
fn replaceRows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= mp.n) { return; }
  let r = i / mp.channels;
  y[i] = select(x[i], row[i - r * mp.channels], mask[r] != 0);
}

@compute @workgroup_size(WG_C, LANES)
fn replaceRowsGradRow(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let c = wid.x * WG_C + lid.x;
  var total = 0.0;
  if (c < mp.channels) {
    var r = lid.y;
    while (r < mp.rows) {
      var blockSum = 0.0;
      let end = min(mp.rows, r + LANES * BLOCK);
      while (r < end) {
        if (mask[r] != 0) { blockSum += f32(x[r * mp.channels + c]); }
        r += LANES;
      }
      total += blockSum;
    }
  }
  laneSums[lid.y][lid.x] = total;
  workgroupBarrier();
  if (lid.y == 0u && c < mp.channels) {
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += laneSums[l][lid.x]; }
    grow[c] = T(s);
  }
}

@compute @workgroup_size(WG)
fn maskColumns(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= mp.n) { return; }
  let c = i % mp.channels;
  let b = i / (mp.frames * mp.channels);
  y[i] = select(x[i], T(0.0), mask[b * mp.channels + c] != 0);
}

@compute @workgroup_size(WG)
fn copyBlock(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n) { return; }
  let span = cp.len * cp.inner;
  let o = i / span;
  let rem = i - o * span;
  let t = rem / cp.inner;
  let j = rem - t * cp.inner;
  y[(o * cp.dstRows + cp.dstOff + t) * cp.inner + j] = x[(o * cp.srcRows + cp.srcOff + t) * cp.inner + j];
}
