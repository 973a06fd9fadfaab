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
