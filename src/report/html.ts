// A self-contained HTML report of a run: no external assets (figures are inline SVG, audio clips are base64 WAV data
// URIs, or relative paths for long clips), so the file can be mailed or opened offline.
//   - run information (any key/value pairs the caller passes: dataset, split sizes, model, hyper-parameters)
//   - training loss (raw and smoothed), learning rate and gradient norm against the step, from the JSONL log (log.ts)
//   - evaluation curves: loss, WA and UA of each evaluated split against the step, the kept checkpoint marked, and
//     the validation recall of every class over time
//   - dataset statistics per split (clips per class, hours, speakers)
//   - per evaluated split: WA / UA / macro-F1, the per-class table and the confusion matrix as a heat map
//   - per-speaker accuracy of the predictions (speaker-independent splits)
//   - error analysis: the most confident wrong and right predictions with their class probabilities and a player
import { encodeWav } from '../audio/wav.js';
import { macroF1, type Metrics, type RegressionMetrics } from '../metrics.js';
import { parseLog, smooth, type ParsedLog } from './log.js';
import { escapeXml as esc, heatmap, linePlot, PALETTE, type Series } from './svg.js';

export interface PredictionRecord {
  id: string;
  /** true label: its id or its name */
  label: number | string;
  /** class probabilities in label-id order */
  probs: ArrayLike<number>;
  /** the clip: samples to embed (short clips), or a path/URL relative to the report */
  audio?: { samples: Float32Array; sampleRate: number } | { src: string } | null;
  speaker?: string;
  transcript?: string;
}

export interface ReportInput {
  title?: string;
  labels: readonly string[];
  /** JSONL text or an already parsed log */
  log?: string | ParsedLog | null;
  /** final evaluations, e.g. [{ name: 'test', metrics }] */
  evaluations?: { name: string; metrics: Metrics | RegressionMetrics }[];
  /** predictions with probabilities (usually the test split) for the error analysis */
  predictions?: PredictionRecord[];
  /** run information shown as a table (values are shown as text; objects as JSON) */
  info?: Record<string, unknown>;
  /** paragraphs of plain text shown under the title */
  notes?: string[];
  /** per split: clips per class, seconds of audio, speakers */
  datasets?: Record<string, { n: number; labels: Record<string, number>; seconds?: number; speakers: string[] }>;
  /** the step whose model was kept (best validation metric), marked on the curves */
  keptStep?: number | null;
  /** clips left out (unreadable, too short, missing), per split */
  skipped?: SkippedRecord[];
  /** entries per error-analysis list (default 8) */
  errorExamples?: number;
  /** clips longer than this are embedded cut to this length unless they come as a src (default 6 s) */
  embedMaxSeconds?: number;
}

/** Clips of one split that could not be used, and why. */
export interface SkippedRecord {
  split: string;
  /** clips the split had before skipping */
  total: number;
  clips: { file: string; reason: string }[];
}

const MAX_SKIPPED_ROWS = 200;

function skippedSection(records: SkippedRecord[]): string {
  const any = records.some((r) => r.clips.length > 0);
  const summary = records.map((r) => `${esc(r.split)}: ${r.clips.length} of ${r.total}`).join(', ');
  if (!any) return `<section><h2>Skipped clips</h2><p class="muted">None (${summary}).</p></section>`;
  const rows: string[] = [];
  for (const r of records) for (const c of r.clips) rows.push(`<tr><td>${esc(r.split)}</td><td><code>${esc(c.file)}</code></td><td>${esc(c.reason)}</td></tr>`);
  const more = rows.length > MAX_SKIPPED_ROWS ? `<p class="muted">${rows.length - MAX_SKIPPED_ROWS} more in metrics.json.</p>` : '';
  return `<section><h2>Skipped clips</h2><p>${summary}.</p><table><tr><th>split</th><th>file</th><th>reason</th></tr>${rows.slice(0, MAX_SKIPPED_ROWS).join('')}</table>${more}</section>`;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Base64 without Buffer/btoa, so it runs anywhere. */
export function base64(bytes: Uint8Array): string {
  const out: string[] = [];
  let chunk = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i];
    const b = i + 1 < bytes.length ? bytes[i + 1] : 0;
    const c = i + 2 < bytes.length ? bytes[i + 2] : 0;
    chunk += BASE64[a >> 2] + BASE64[((a & 3) << 4) | (b >> 4)] + (i + 1 < bytes.length ? BASE64[((b & 15) << 2) | (c >> 6)] : '=') + (i + 2 < bytes.length ? BASE64[c & 63] : '=');
    if (chunk.length > 8192) {
      out.push(chunk);
      chunk = '';
    }
  }
  out.push(chunk);
  return out.join('');
}

/** A WAV data URI (16-bit PCM) of a clip, clipped to [-1, 1]. */
export function wavDataUri(samples: Float32Array, sampleRate: number): string {
  return `data:audio/wav;base64,${base64(encodeWav(samples, sampleRate, { sampleFormat: 16 }))}`;
}

const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}%`);

function infoTable(info: Record<string, unknown>): string {
  const rows = Object.entries(info).map(([k, v]) => {
    const text = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
    return `<tr><th>${esc(k)}</th><td>${esc(text ?? '')}</td></tr>`;
  });
  return `<table class="info">${rows.join('')}</table>`;
}

function curves(log: ParsedLog, keptStep?: number | null): string {
  const figs: string[] = [];
  if (log.train.length > 0) {
    const xs = log.train.map((p) => p.step);
    const loss = log.train.map((p) => p.loss);
    const series: Series[] = [{ name: 'training loss', points: xs.map((x, i) => [x, loss[i]]), color: '#9ecae1', width: 1, markers: false }];
    if (log.train.length >= 10) {
      const sm = smooth(loss);
      series.push({ name: 'smoothed (EMA 0.9)', points: xs.map((x, i) => [x, sm[i]] as [number, number]), color: PALETTE[0], markers: false });
    }
    const evalSplits = [...new Set(log.evals.filter((e) => e.loss !== undefined).map((e) => e.split))];
    evalSplits.forEach((s, i) => series.push({ name: `${s} loss`, points: log.evals.filter((e) => e.split === s && e.loss !== undefined).map((e) => [e.step, e.loss!]), color: PALETTE[(i + 1) % PALETTE.length], markers: true }));
    figs.push(linePlot(series, { title: 'Loss', xLabel: 'step', yLabel: 'cross-entropy' }));
    const lr = log.train.filter((p) => p.lr !== undefined).map((p) => [p.step, p.lr!] as [number, number]);
    if (lr.length > 0) figs.push(linePlot([{ name: 'learning rate', points: lr, color: PALETTE[3], markers: false }], { title: 'Learning rate', xLabel: 'step', yLabel: 'lr', height: 220 }));
    const gn = log.train.filter((p) => typeof p.grad_norm === 'number' && Number.isFinite(p.grad_norm)).map((p) => [p.step, p.grad_norm as number] as [number, number]);
    if (gn.length > 0) figs.push(linePlot([{ name: 'gradient norm (before clipping)', points: gn, color: PALETTE[4], markers: false }], { title: 'Gradient norm', xLabel: 'step', yLabel: '||g||', height: 220 }));
  }
  const metricSeries: Series[] = [];
  const splits = [...new Set(log.evals.map((e) => e.split))];
  splits.forEach((s, i) => {
    const es = log.evals.filter((e) => e.split === s);
    if (es.some((e) => e.wa !== undefined)) metricSeries.push({ name: `${s} WA`, points: es.filter((e) => e.wa !== undefined).map((e) => [e.step, e.wa!]), color: PALETTE[(2 * i) % PALETTE.length] });
    if (es.some((e) => e.ua !== undefined)) metricSeries.push({ name: `${s} UA`, points: es.filter((e) => e.ua !== undefined).map((e) => [e.step, e.ua!]), color: PALETTE[(2 * i + 1) % PALETTE.length], dashed: true });
  });
  if (keptStep !== null && keptStep !== undefined) {
    const kept = log.evals.find((e) => e.split === 'valid' && e.step === keptStep);
    const y = kept?.ua ?? kept?.wa;
    if (y !== undefined) metricSeries.push({ name: `kept checkpoint (step ${keptStep})`, points: [[keptStep, y]], color: '#000000', markers: true });
  }
  if (metricSeries.length > 0) figs.push(linePlot(metricSeries, { title: 'Evaluation accuracy', xLabel: 'step', yLabel: 'WA / UA', yDomain: [0, 1] }));
  // per-class recall on the validation split over time: which emotions the model learns, and when
  const withRecall = log.evals.filter((e) => e.split === 'valid' && e.recall && typeof e.recall === 'object');
  if (withRecall.length > 0) {
    const names = Object.keys(withRecall[0].recall as Record<string, number>);
    const series: Series[] = names.map((name, i) => ({
      name,
      points: withRecall.map((e) => [e.step, (e.recall as Record<string, number>)[name]] as [number, number]).filter(([, v]) => typeof v === 'number' && Number.isFinite(v)),
      color: PALETTE[i % PALETTE.length],
    }));
    figs.push(linePlot(series, { title: 'Validation recall per class', xLabel: 'step', yLabel: 'recall', yDomain: [0, 1] }));
  }
  if (figs.length === 0) return '<p class="muted">The log has no training or evaluation lines.</p>';
  return figs.map((f) => `<figure>${f}</figure>`).join('');
}

function evaluation(name: string, m: Metrics): string {
  const rows = m.labels.map((l) => {
    const c = m.per_class[l];
    return `<tr><th>${esc(l)}</th><td>${pct(c.precision)}</td><td>${pct(c.recall)}</td><td>${pct(c.f1)}</td><td>${c.support}</td></tr>`;
  });
  const n = m.confusion.flat().reduce((s, v) => s + v, 0);
  return `<section><h2>Evaluation: ${esc(name)}</h2>
<p class="headline"><span>WA <b>${pct(m.wa)}</b></span><span>UA <b>${pct(m.ua)}</b></span><span>macro-F1 <b>${pct(macroF1(m))}</b></span><span>${n} clips</span></p>
<div class="row"><table class="metrics"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>${rows.join('')}</table>
<figure>${heatmap(m.confusion, m.labels, { title: `Confusion matrix (${name}); colour = row share` })}</figure></div></section>`;
}

/** A regression evaluation: one table row per target (CCC, Pearson, MSE, MAE). */
function regressionEvaluation(name: string, m: RegressionMetrics): string {
  const f = (x: number) => x.toFixed(4);
  const rows = m.targets.map((t) => {
    const r = m.per_target[t];
    return `<tr><th>${esc(t)}</th><td>${f(r.ccc)}</td><td>${f(r.pearson)}</td><td>${f(r.mse)}</td><td>${f(r.mae)}</td><td>${r.count}</td></tr>`;
  });
  return `<section><h2>Evaluation: ${esc(name)}</h2>
<p class="headline"><span>CCC <b>${f(m.ccc)}</b></span><span>MSE <b>${f(m.mse)}</b></span><span>MAE <b>${f(m.mae)}</b></span><span>means over ${m.targets.length} targets</span></p>
<table class="metrics"><tr><th>target</th><th>CCC</th><th>Pearson</th><th>MSE</th><th>MAE</th><th>clips</th></tr>${rows.join('')}</table></section>`;
}

function probBars(probs: ArrayLike<number>, labels: readonly string[], truth: number, pred: number): string {
  const rows: string[] = [];
  for (let j = 0; j < labels.length; j++) {
    const p = probs[j];
    const cls = j === pred ? (j === truth ? 'ok' : 'bad') : j === truth ? 'truth' : '';
    rows.push(`<div class="bar ${cls}"><span class="l">${esc(labels[j])}</span><span class="b"><i style="width:${(100 * p).toFixed(1)}%"></i></span><span class="v">${(100 * p).toFixed(1)}%</span></div>`);
  }
  return rows.join('');
}

function audioTag(p: PredictionRecord, maxSeconds: number): string {
  const a = p.audio;
  if (!a) return '<span class="muted">no audio</span>';
  if ('src' in a) return `<audio controls preload="none" src="${esc(a.src)}"></audio>`;
  const max = Math.round(maxSeconds * a.sampleRate);
  const cut = a.samples.length > max;
  const clip = cut ? a.samples.subarray(0, max) : a.samples;
  return `<audio controls preload="none" src="${wavDataUri(clip, a.sampleRate)}"></audio>${cut ? `<span class="muted"> first ${maxSeconds} s</span>` : ''}`;
}

function errorAnalysis(preds: PredictionRecord[], labels: readonly string[], perList: number, maxSeconds: number): string {
  const rows = preds.map((p) => {
    const truth = typeof p.label === 'number' ? p.label : labels.indexOf(p.label);
    let pred = 0;
    for (let j = 1; j < labels.length; j++) if (p.probs[j] > p.probs[pred]) pred = j;
    return { p, truth, pred, conf: p.probs[pred] };
  });
  const byConf = (a: { conf: number; p: PredictionRecord }, b: { conf: number; p: PredictionRecord }) => b.conf - a.conf || (a.p.id < b.p.id ? -1 : 1);
  const wrong = rows.filter((r) => r.pred !== r.truth).sort(byConf).slice(0, perList);
  const right = rows.filter((r) => r.pred === r.truth).sort(byConf).slice(0, perList);
  const table = (title: string, list: typeof rows) =>
    `<h3>${esc(title)}</h3>${
      list.length === 0
        ? '<p class="muted">none</p>'
        : `<table class="examples"><tr><th>clip</th><th>true → predicted</th><th>class probabilities</th><th>listen</th></tr>${list
            .map(
              (r) =>
                `<tr><td><code>${esc(r.p.id)}</code>${r.p.speaker ? `<br><span class="muted">speaker ${esc(r.p.speaker)}</span>` : ''}${r.p.transcript ? `<br><span class="tr" dir="auto">${esc(r.p.transcript)}</span>` : ''}</td><td><b>${esc(labels[r.truth] ?? String(r.p.label))}</b> → <b>${esc(labels[r.pred])}</b><br>${(100 * r.conf).toFixed(1)}%</td><td class="probs">${probBars(r.p.probs, labels, r.truth, r.pred)}</td><td>${audioTag(r.p, maxSeconds)}</td></tr>`,
            )
            .join('')}</table>`
    }`;
  return `<section><h2>Error analysis</h2><p class="muted">${preds.length} predictions; the ${perList} most confident of each kind.</p>${table('Most confident wrong predictions', wrong)}${table('Most confident right predictions', right)}</section>`;
}

const CSS = `body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
table.info th{color:#555;font-weight:500;white-space:nowrap}table.metrics td{text-align:right}
figure{margin:12px 0;display:inline-block}.row{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}
.headline span{margin-right:24px;font-size:15px}.muted{color:#888;font-size:12px}code{font-size:12px}
.bar{display:flex;align-items:center;gap:6px;font-size:11px;line-height:14px}.bar .l{width:80px;text-align:right;color:#555}
.bar .b{width:120px;height:9px;background:#f0f0f0;display:inline-block}.bar .b i{display:block;height:100%;background:#9ecae1}
.bar.ok .b i{background:#2ca02c}.bar.bad .b i{background:#d62728}.bar.truth .l{font-weight:700;color:#222}.bar .v{width:44px;color:#555}
.tr{font-size:13px}audio{width:220px}`;

/** Build the report as one HTML string. */
function datasetSection(d: NonNullable<ReportInput['datasets']>, labels: readonly string[]): string {
  const splits = Object.keys(d);
  const head = `<tr><th>split</th><th>clips</th>${labels.map((l) => `<th>${esc(l)}</th>`).join('')}<th>hours</th><th>speakers</th></tr>`;
  const rows = splits.map((s) => {
    const x = d[s];
    const hours = x.seconds !== undefined ? (x.seconds / 3600).toFixed(2) : '';
    return `<tr><td>${esc(s)}</td><td>${x.n}</td>${labels.map((l) => `<td>${x.labels[l] ?? 0}</td>`).join('')}<td>${hours}</td><td>${x.speakers.length}</td></tr>`;
  });
  return `<section><h2>Data</h2><table class="info">${head}${rows.join('')}</table></section>`;
}

/** Accuracy of the predictions per speaker (a speaker-independent test set shows who the model fails on). */
function speakerSection(preds: PredictionRecord[], labels: readonly string[]): string {
  const by = new Map<string, { n: number; correct: number }>();
  for (const p of preds) {
    if (!p.speaker) continue;
    const truth = typeof p.label === 'number' ? p.label : labels.indexOf(p.label);
    let best = 0;
    for (let k = 1; k < p.probs.length; k++) if (p.probs[k] > p.probs[best]) best = k;
    const s = by.get(p.speaker) ?? { n: 0, correct: 0 };
    s.n++;
    if (best === truth) s.correct++;
    by.set(p.speaker, s);
  }
  const rows = [...by.entries()].sort((a, b) => a[1].correct / a[1].n - b[1].correct / b[1].n).map(([spk, s]) => `<tr><td>${esc(spk)}</td><td>${s.n}</td><td>${((100 * s.correct) / s.n).toFixed(1)}%</td></tr>`);
  return `<section><h2>Accuracy per speaker</h2><table class="info"><tr><th>speaker</th><th>clips</th><th>accuracy</th></tr>${rows.join('')}</table></section>`;
}

export function buildReport(input: ReportInput): string {
  const title = input.title ?? 'Speech emotion recognition report';
  const log = typeof input.log === 'string' ? parseLog(input.log) : input.log ?? null;
  const parts: string[] = [`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body>`];
  parts.push(`<h1>${esc(title)}</h1>`);
  for (const n of input.notes ?? []) parts.push(`<p>${esc(n)}</p>`);
  if (input.info && Object.keys(input.info).length > 0) parts.push(`<section><h2>Run</h2>${infoTable(input.info)}</section>`);
  if (log) {
    parts.push(`<section><h2>Training</h2>${curves(log, input.keptStep)}`);
    if (input.keptStep !== null && input.keptStep !== undefined) parts.push(`<p>The model kept is the one of step ${input.keptStep} (best validation metric; the test split never chose it).</p>`);
    if (log.badLines.length > 0) parts.push(`<p class="muted">${log.badLines.length} log line(s) were not JSON objects and were skipped (line ${log.badLines.slice(0, 10).join(', ')}${log.badLines.length > 10 ? ', …' : ''}).</p>`);
    parts.push('</section>');
  }
  if (input.datasets && Object.keys(input.datasets).length > 0) parts.push(datasetSection(input.datasets, input.labels));
  for (const e of input.evaluations ?? []) parts.push('ccc' in e.metrics ? regressionEvaluation(e.name, e.metrics) : evaluation(e.name, e.metrics));
  if (input.predictions && input.predictions.some((p) => p.speaker)) parts.push(speakerSection(input.predictions, input.labels));
  if (input.skipped) parts.push(skippedSection(input.skipped));
  if (input.predictions && input.predictions.length > 0) parts.push(errorAnalysis(input.predictions, input.labels, input.errorExamples ?? 8, input.embedMaxSeconds ?? 6));
  parts.push('</body></html>\n');
  return parts.join('\n');
}
