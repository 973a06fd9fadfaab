// Metrics against hand-worked examples (the numbers sklearn gives for the same inputs, worked out below) and against
// an independent per-class recount on random predictions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { argmaxRows, computeMetrics, computeRegressionMetrics, concordanceCorrelation, formatMetrics, formatRegressionMetrics, macroF1 } from '../src/metrics.js';
import { mulberry32 } from '../src/data/random.js';

const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

test('a worked example: WA, UA, per-class precision/recall/F1/support, confusion', () => {
  const labels = ['anger', 'neutral', 'sadness'];
  const truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
  const pred = [0, 0, 0, 1, 1, 1, 0, 2, 1, 1];
  const m = computeMetrics(truth, pred, labels);
  // confusion rows = truth, columns = prediction
  assert.equal(m.confusion, [
    [3, 1, 0],
    [1, 2, 0],
    [0, 2, 1],
  ]);
  near(m.wa, 6 / 10, 'WA');
  near(m.ua, (3 / 4 + 2 / 3 + 1 / 3) / 3, 'UA');
  near(m.per_class.anger.precision, 3 / 4, 'P anger');
  near(m.per_class.neutral.precision, 2 / 5, 'P neutral');
  near(m.per_class.sadness.precision, 1, 'P sadness');
  near(m.per_class.neutral.f1, (2 * (2 / 5) * (2 / 3)) / (2 / 5 + 2 / 3), 'F1 neutral');
  assert.equal([m.per_class.anger.support, m.per_class.neutral.support, m.per_class.sadness.support], [4, 3, 3]);
  assert.equal(m.labels, labels);
  assert.equal(Object.keys(JSON.parse(JSON.stringify(m))).sort(), ['confusion', 'labels', 'per_class', 'ua', 'wa']);
  assert.equal(Object.keys(m.per_class.anger).sort(), ['f1', 'precision', 'recall', 'support']);
  assert.match(formatMetrics(m), /WA 60\.00%  UA 58\.33%/);
});

test('edge cases: a class never predicted, a class absent from the truth, bad ids', () => {
  const m = computeMetrics([0, 0, 1], [0, 0, 0], ['a', 'b', 'c']);
  assert.equal(m.per_class.b, { precision: 0, recall: 0, f1: 0, support: 1 });
  assert.equal(m.per_class.c, { precision: 0, recall: 0, f1: 0, support: 0 });
  near(m.ua, 0.5, 'UA averages over classes present in the truth (balanced accuracy)');
  near(macroF1(m), (0.8 + 0) / 2, 'macro F1 over present classes');
  assert.throws(() => computeMetrics([0], [3], ['a', 'b']), /predicted label id 3/);
  assert.throws(() => computeMetrics([0, 1], [0], ['a', 'b']), /2 true labels but 1 predictions/);
  const empty = computeMetrics([], [], ['a', 'b']);
  assert.is(empty.wa, 0);
});

test('random predictions: every number matches an independent recount', () => {
  const r = mulberry32(5);
  const k = 5;
  const n = 997;
  const truth = Array.from({ length: n }, () => Math.floor(r() * k));
  const scores = Float32Array.from({ length: n * k }, () => r());
  const pred = Array.from(argmaxRows(scores, k));
  for (let i = 0; i < 20; i++) {
    const row = Array.from(scores.subarray(i * k, i * k + k));
    assert.is(pred[i], row.indexOf(Math.max(...row)));
  }
  const labels = ['anger', 'happiness', 'neutral', 'sadness', 'surprise'];
  const m = computeMetrics(truth, pred, labels);
  let correct = 0;
  for (let i = 0; i < n; i++) if (truth[i] === pred[i]) correct++;
  near(m.wa, correct / n, 'WA');
  let ua = 0;
  for (let c = 0; c < k; c++) {
    const idx = truth.map((t, i) => (t === c ? i : -1)).filter((i) => i >= 0);
    const tp = idx.filter((i) => pred[i] === c).length;
    const predicted = pred.filter((p) => p === c).length;
    near(m.per_class[labels[c]].recall, tp / idx.length, `recall ${c}`);
    near(m.per_class[labels[c]].precision, tp / predicted, `precision ${c}`);
    assert.is(m.per_class[labels[c]].support, idx.length);
    ua += tp / idx.length / k;
  }
  near(m.ua, ua, 'UA');
  assert.is(m.confusion.flat().reduce((s, v) => s + v, 0), n);
});

test('regression metrics: CCC, Pearson, MSE, MAE per target against hand-computed values', () => {
  // target a: y = 2x (perfect correlation, not concordance): mx 3, my 6, vx 2, vy 8, cov 4 -> CCC 8 / 19
  // target b: identical series -> CCC 1, MSE 0
  const x = [1, 2, 3, 4, 5];
  const truth: number[] = [];
  const pred: number[] = [];
  for (const v of x) {
    pred.push(v, v / 10);
    truth.push(2 * v, v / 10);
  }
  const m = computeRegressionMetrics(truth, pred, ['a', 'b']);
  near(m.per_target.a.ccc, 8 / 19, 'CCC a');
  near(m.per_target.a.pearson, 1, 'Pearson a');
  near(m.per_target.a.mse, (1 + 4 + 9 + 16 + 25) / 5, 'MSE a');
  near(m.per_target.a.mae, 3, 'MAE a');
  near(m.per_target.b.ccc, 1, 'CCC b');
  near(m.per_target.b.mse, 0, 'MSE b');
  near(m.ccc, (8 / 19 + 1) / 2, 'mean CCC');
  assert.is(m.per_target.a.count, 5);
  // anti-concordant: CCC -1
  near(concordanceCorrelation([1, 2, 3], [3, 2, 1]), -1, 'CCC -1');
  assert.throws(() => computeRegressionMetrics([1, 2, 3], [1, 2], ['a']), /3 true values/);
  assert.match(formatRegressionMetrics(m), /CCC 0\.7105/);
});

test.run();
