// Classification metrics of speech-emotion recognition, in one JSON shape:
//   { "wa", "ua", "per_class": { label: { "precision", "recall", "f1", "support" } }, "confusion": [[...]], "labels" }
// WA (weighted accuracy) = plain accuracy; UA (unweighted accuracy) = macro-averaged recall over the classes that
// occur in the ground truth (sklearn's balanced_accuracy_score). confusion[i][j] counts items of true class i
// predicted as class j (sklearn's confusion_matrix convention). Precision / recall / F1 of a class with nothing
// predicted / no support are 0 (sklearn's zero_division=0).

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface Metrics {
  wa: number;
  ua: number;
  per_class: Record<string, ClassMetrics>;
  confusion: number[][];
  labels: string[];
}

/** Metrics from true and predicted label ids (0 .. labels.length - 1). */
export function computeMetrics(truth: ArrayLike<number>, pred: ArrayLike<number>, labels: readonly string[]): Metrics {
  if (truth.length !== pred.length) throw new Error(`metrics: ${truth.length} true labels but ${pred.length} predictions`);
  const k = labels.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < truth.length; i++) {
    const t = truth[i];
    const p = pred[i];
    if (!(Number.isInteger(t) && t >= 0 && t < k)) throw new Error(`metrics: true label id ${t} at ${i} outside 0..${k - 1}`);
    if (!(Number.isInteger(p) && p >= 0 && p < k)) throw new Error(`metrics: predicted label id ${p} at ${i} outside 0..${k - 1}`);
    confusion[t][p]++;
  }
  let correct = 0;
  let recallSum = 0;
  let present = 0;
  const per_class: Record<string, ClassMetrics> = {};
  for (let c = 0; c < k; c++) {
    const tp = confusion[c][c];
    correct += tp;
    let support = 0;
    let predicted = 0;
    for (let j = 0; j < k; j++) {
      support += confusion[c][j];
      predicted += confusion[j][c];
    }
    const precision = predicted > 0 ? tp / predicted : 0;
    const recall = support > 0 ? tp / support : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    per_class[labels[c]] = { precision, recall, f1, support };
    if (support > 0) {
      recallSum += recall;
      present++;
    }
  }
  return { wa: truth.length ? correct / truth.length : 0, ua: present ? recallSum / present : 0, per_class, confusion, labels: [...labels] };
}

/** Index of the largest value in each row of [n, k] scores (first on ties). */
export function argmaxRows(scores: ArrayLike<number>, k: number): Int32Array {
  const n = Math.floor(scores.length / k);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (scores[i * k + j] > scores[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/** Macro-averaged F1 (a common third number next to WA and UA). */
export function macroF1(m: Metrics): number {
  const present = m.labels.filter((l) => m.per_class[l].support > 0);
  return present.length ? present.reduce((s, l) => s + m.per_class[l].f1, 0) / present.length : 0;
}

/** A plain-text table for logs. */
export function formatMetrics(m: Metrics): string {
  const w = Math.max(9, ...m.labels.map((l) => l.length));
  const pct = (x: number) => (100 * x).toFixed(1).padStart(6);
  const lines = [`WA ${(100 * m.wa).toFixed(2)}%  UA ${(100 * m.ua).toFixed(2)}%  macro-F1 ${(100 * macroF1(m)).toFixed(2)}%`];
  lines.push(`${'label'.padEnd(w)}  prec.  recall     F1  support`);
  for (const l of m.labels) {
    const c = m.per_class[l];
    lines.push(`${l.padEnd(w)} ${pct(c.precision)} ${pct(c.recall)} ${pct(c.f1)} ${String(c.support).padStart(8)}`);
  }
  lines.push(`confusion (rows true, columns predicted): ${m.labels.join(' ')}`);
  for (let i = 0; i < m.labels.length; i++) lines.push(`${m.labels[i].padEnd(w)} ${m.confusion[i].map((v) => String(v).padStart(6)).join('')}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// regression (dimensional emotion: arousal, dominance, valence), in one JSON shape:
//   { "mse", "mae", "ccc" (mean over targets), "per_target": { name: { "mse", "mae", "ccc", "pearson", "count" } } }
// CCC (Lin's concordance correlation coefficient, the metric of the dimensional-SER literature and of audeering's
// models) = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), population (1/n) moments, in float64.

export interface TargetMetrics {
  mse: number;
  mae: number;
  ccc: number;
  pearson: number;
  count: number;
}

export interface RegressionMetrics {
  mse: number;
  mae: number;
  ccc: number;
  per_target: Record<string, TargetMetrics>;
  targets: string[];
}

/** Population (1/n) means, variances and covariance of two equal-length series, in float64. */
function moments(x: ArrayLike<number>, y: ArrayLike<number>): { mx: number; my: number; vx: number; vy: number; cov: number } {
  const n = x.length;
  if (n !== y.length) throw new Error(`regression metrics: ${n} values vs ${y.length}`);
  if (n === 0) return { mx: 0, my: 0, vx: 0, vy: 0, cov: 0 };
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let vx = 0;
  let vy = 0;
  let cov = 0;
  for (let i = 0; i < n; i++) {
    vx += (x[i] - mx) ** 2;
    vy += (y[i] - my) ** 2;
    cov += (x[i] - mx) * (y[i] - my);
  }
  return { mx, my, vx: vx / n, vy: vy / n, cov: cov / n };
}

/** Lin's concordance correlation coefficient (0 where it is undefined: both series constant and equal). */
export function concordanceCorrelation(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const m = moments(x, y);
  const den = m.vx + m.vy + (m.mx - m.my) ** 2;
  return den > 0 ? (2 * m.cov) / den : 0;
}

/** Metrics of predictions vs true targets, both [n, targets.length] row-major. */
export function computeRegressionMetrics(truth: ArrayLike<number>, pred: ArrayLike<number>, targets: readonly string[]): RegressionMetrics {
  const k = targets.length;
  if (k === 0 || truth.length !== pred.length || truth.length % k) throw new Error(`regression metrics: ${truth.length} true values, ${pred.length} predictions, ${k} targets`);
  const n = truth.length / k;
  const per_target: Record<string, TargetMetrics> = {};
  for (let j = 0; j < k; j++) {
    const x = Float64Array.from({ length: n }, (_, i) => pred[i * k + j]);
    const y = Float64Array.from({ length: n }, (_, i) => truth[i * k + j]);
    let se = 0;
    let ae = 0;
    for (let i = 0; i < n; i++) {
      se += (x[i] - y[i]) ** 2;
      ae += Math.abs(x[i] - y[i]);
    }
    const m = moments(x, y);
    const pearson = m.vx > 0 && m.vy > 0 ? m.cov / Math.sqrt(m.vx * m.vy) : 0;
    per_target[targets[j]] = { mse: n ? se / n : 0, mae: n ? ae / n : 0, ccc: concordanceCorrelation(x, y), pearson, count: n };
  }
  const mean = (f: (t: TargetMetrics) => number) => targets.reduce((a, t) => a + f(per_target[t]), 0) / k;
  return { mse: mean((t) => t.mse), mae: mean((t) => t.mae), ccc: mean((t) => t.ccc), per_target, targets: [...targets] };
}

export function formatRegressionMetrics(m: RegressionMetrics): string {
  const w = Math.max(9, ...m.targets.map((t) => t.length));
  const lines = [`CCC ${m.ccc.toFixed(4)}  MSE ${m.mse.toFixed(4)}  MAE ${m.mae.toFixed(4)} (means over ${m.targets.length} targets)`];
  lines.push(`${'target'.padEnd(w)}     CCC  Pearson      MSE      MAE    count`);
  for (const t of m.targets) {
    const r = m.per_target[t];
    lines.push(`${t.padEnd(w)} ${r.ccc.toFixed(4).padStart(7)} ${r.pearson.toFixed(4).padStart(8)} ${r.mse.toFixed(4).padStart(8)} ${r.mae.toFixed(4).padStart(8)} ${String(r.count).padStart(8)}`);
  }
  return lines.join('\n');
}
