import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices, rng } from './helpers.js';
import { crossEntropy, softmax } from '../src/ops/loss.js';
import { normSubgroupSize, setNormSubgroups } from '../src/ops/norm.js';
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';

function softmax64(x: ArrayLike<number>, rows: number, L: number): Float64Array {
  const p = new Float64Array(rows * L);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < L; j++) m = Math.max(m, x[r * L + j]);
    let s = 0;
    for (let j = 0; j < L; j++) s += Math.exp(x[r * L + j] - m);
    for (let j = 0; j < L; j++) p[r * L + j] = Math.exp(x[r * L + j] - m) / s;
  }
  return p;
}

function crossEntropy64(x: ArrayLike<number>, labels: Int32Array, B: number, L: number) {
  const p = softmax64(x, B, L);
  let loss = 0;
  for (let b = 0; b < B; b++) loss -= Math.log(p[b * L + labels[b]]);
  const grad = new Float64Array(B * L);
  for (let b = 0; b < B; b++) for (let j = 0; j < L; j++) grad[b * L + j] = (p[b * L + j] - (j === labels[b] ? 1 : 0)) / B;
  return { loss: loss / B, grad };
}

for (const [B, L] of [[13, 7], [5, 131]] as const) {
  test(`crossEntropy [${B}, ${L}]: mean loss and (softmax - onehot)/B gradient match f64; finite differences agree`, async () => {
    const rt = await getRuntime();
    const x = randn(B * L, B + L, 3);
    const r = rng(L);
    const labels = Int32Array.from({ length: B }, () => Math.floor(r() * L));
    const tx = upload(rt, x, [B, L], { requiresGrad: true });
    const tl = Tensor.fromData(rt, labels, [B], 'i32', 'labels');
    const loss = crossEntropy(tx, tl);
    assert.equal(loss.shape, [1]);
    const ref = crossEntropy64(x, labels, B, L);
    close(await loss.read(), [ref.loss], 1e-5, 'loss');
    backward(loss, upload(rt, [1.5], [1]));
    close(await tx.grad!.read(), Array.from(ref.grad, (v) => 1.5 * v), 1e-5, 'grad');
    await finiteDifference({
      what: 'crossEntropy grad',
      x,
      w: [1.5],
      analytic: await tx.grad!.read(),
      indices: [...probeIndices(B * L), labels[0], L + labels[1]],
      h: 0.1, // the loss is one f32 scalar: a small step would drown in its rounding
      forward: async (xs) => tidy(() => crossEntropy(upload(rt, xs, [B, L]), tl)).read(),
    });
  });
}

test('crossEntropy is stable for huge logits; a bad label gives NaN', async () => {
  const rt = await getRuntime();
  const x = [1000, -1000, 999, 0, 88, 90.5];
  const labels = Int32Array.from([2, 1]);
  const loss = await crossEntropy(upload(rt, x, [2, 3]), Tensor.fromData(rt, labels, [2], 'i32')).read();
  close(loss, [crossEntropy64(x, labels, 2, 3).loss], 1e-5, 'large-logit loss');
  const bad = await crossEntropy(upload(rt, x, [2, 3]), Tensor.fromData(rt, [0, 3], [2], 'i32')).read();
  assert.ok(Number.isNaN(bad[0]), 'label 3 of 3 classes is NaN');
  assert.throws(() => crossEntropy(upload(rt, x, [2, 3]), upload(rt, [0, 1], [2])), /labels must be i32/);
});

test('softmax over the last axis (L = 97 scalar rows, 1028, 4 and 200 vec4 rows; several rows per workgroup with a partial last one; 1000-scale logits), subgroup and portable', async () => {
  const rt = await getRuntime();
  const paths: [string, boolean][] = normSubgroupSize(rt) ? [['subgroup', true], ['portable', false]] : [['portable', false]];
  // rows per workgroup min(16, 4096 / L): 15 rows of 97 in one workgroup of 16; 7 rows of 1028 in 3 + 3 + 1; 111 rows
  // of 200 in 6 x 16 + 15
  const shapes = [[3, 5, 97], [3, 5, 1028], [3, 5, 4], [1, 7, 1028], [3, 37, 200]];
  for (const [A, R, L] of shapes) {
    for (const [path, allowed] of paths) {
      setNormSubgroups(allowed);
      try {
        const x = randn(A * R * L, 77 + L + R, 4);
        x[0] = 1000;
        x[1] = 995;
        const y = softmax(upload(rt, x, [A, R, L]));
        assert.equal(y.shape, [A, R, L]);
        const got = await y.read();
        close(got, softmax64(x, A * R, L), 1e-5, `softmax [${A}, ${R}, ${L}] (${path})`);
        let rowSum = 0;
        for (let j = 0; j < L; j++) rowSum += got[L * 4 + j];
        assert.ok(Math.abs(rowSum - 1) < 1e-5, `row sums to ${rowSum}`);
        y.dispose();
      } finally {
        setNormSubgroups(true);
      }
    }
  }
});

test.run();
