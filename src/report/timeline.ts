// Emotion over time: a timeline (windows with their class probabilities, or regression outputs) as an inline SVG line
// plot, one line per label at each window's centre, and as a self-contained HTML page for `ser predict --window
// --html`. The web demo draws the same SVG under its result.
import { escapeXml as esc, linePlot, PALETTE, type Series } from './svg.js';

export interface TimelinePoint {
  /** seconds from the clip's start */
  start: number;
  end: number;
  /** probability (or regression output) by label */
  values: Record<string, number>;
}

/** One line per label over the window centres; probabilities on [0, 1], regression outputs on their own range. */
export function timelineSvg(points: readonly TimelinePoint[], opts: { title?: string; probabilities?: boolean } = {}): string {
  const labels = [...new Set(points.flatMap((p) => Object.keys(p.values)))];
  const series: Series[] = labels.map((label, i) => ({
    name: label,
    points: points.map((p) => [(p.start + p.end) / 2, p.values[label] ?? Number.NaN] as [number, number]),
    color: PALETTE[i % PALETTE.length],
  }));
  const probabilities = opts.probabilities ?? true;
  return linePlot(series, { title: opts.title ?? 'Emotion over time', xLabel: 'time (s, window centre)', yLabel: probabilities ? 'probability' : 'output', ...(probabilities ? { yDomain: [0, 1] as [number, number] } : {}) });
}

/** A standalone page with one timeline per file. */
export function timelineHtml(files: readonly { file: string; points: readonly TimelinePoint[]; probabilities: boolean }[], title = 'Emotion over time'): string {
  const figures = files.map((f) => `<section><h2>${esc(f.file)}</h2><figure>${timelineSvg(f.points, { title: `${f.points.length} window(s)`, probabilities: f.probabilities })}</figure></section>`);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}figure{margin:0}</style></head><body><h1>${esc(title)}</h1>${figures.join('')}</body></html>\n`;
}
