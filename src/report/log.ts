// The training log: JSONL, one JSON object per line.
//   training lines:   {"step": 120, "epoch": 1.5, "loss": 1.23, "lr": 2.9e-5, ...}
//   evaluation lines: {"step": 200, "epoch": 2, "split": "valid", "loss": 1.1, "wa": 0.61, "ua": 0.55, ...}
// A line is an evaluation line when it has "split" (or "type": "eval"), or Hugging Face style "eval_*" keys
// ("eval_loss", "eval_wa", ...: read as split "eval"); any other line with a numeric "loss" is a training line.
// Blank lines are skipped; a line that is not a JSON object is counted (and named in the report), not fatal, so a
// log cut short by a crash still gives a report.

export interface TrainPoint {
  step: number;
  epoch?: number;
  loss: number;
  lr?: number;
  [key: string]: unknown;
}

export interface EvalPoint {
  step: number;
  epoch?: number;
  split: string;
  loss?: number;
  wa?: number;
  ua?: number;
  /** per-class recall (validation lines of the trainer) */
  recall?: Record<string, number>;
  [key: string]: unknown;
}

export interface ParsedLog {
  train: TrainPoint[];
  evals: EvalPoint[];
  /** 1-based numbers of lines that were not JSON objects */
  badLines: number[];
  /** other lines (e.g. {"event": "start", ...}) */
  other: Record<string, unknown>[];
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export function parseLog(text: string): ParsedLog {
  const out: ParsedLog = { train: [], evals: [], badLines: [], other: [] };
  const lines = text.split(/\r?\n/);
  let index = 0;
  lines.forEach((raw, i) => {
    const s = raw.trim();
    if (!s) return;
    let o: unknown;
    try {
      o = JSON.parse(s);
    } catch {
      out.badLines.push(i + 1);
      return;
    }
    if (!o || typeof o !== 'object' || Array.isArray(o)) {
      out.badLines.push(i + 1);
      return;
    }
    index++;
    const r = o as Record<string, unknown>;
    const step = num(r.step) ?? num(r.global_step) ?? index;
    const epoch = num(r.epoch);
    const hfEval = Object.keys(r).some((k) => k.startsWith('eval_'));
    if (typeof r.split === 'string' || r.type === 'eval' || hfEval) {
      const e: EvalPoint = { ...r, step, epoch, split: typeof r.split === 'string' ? r.split : 'eval' };
      if (hfEval) for (const [k, v] of Object.entries(r)) if (k.startsWith('eval_')) e[k.slice(5)] = v;
      e.loss = num(e.loss);
      e.wa = num(e.wa) ?? num(e.accuracy);
      e.ua = num(e.ua) ?? num(e.balanced_accuracy);
      out.evals.push(e);
    } else if (num(r.loss) !== undefined) {
      out.train.push({ ...r, step, epoch, loss: num(r.loss)!, lr: num(r.lr) ?? num(r.learning_rate) });
    } else out.other.push(r);
  });
  return out;
}

/** Exponential moving average (as TensorBoard's smoothing), bias-corrected at the start. */
export function smooth(values: readonly number[], weight = 0.9): number[] {
  const out: number[] = [];
  let acc = 0;
  let norm = 0;
  for (const v of values) {
    if (!Number.isFinite(v)) {
      out.push(NaN);
      continue;
    }
    acc = weight * acc + (1 - weight) * v;
    norm = weight * norm + (1 - weight);
    out.push(acc / norm);
  }
  return out;
}
