// SVG figures as strings (no DOM, so the same code runs in Node and browsers): line plots for loss / metric / lr
// curves and a heat map for the confusion matrix. Scales, "nice" ticks and tick labels come from d3-scale, paths from
// d3-shape (both pure functions over numbers); the markup around them is written here.
import { scaleLinear, scaleLog } from 'd3-scale';
import { line } from 'd3-shape';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export interface Series {
  name: string;
  /** [x, y] points; non-finite y are gaps */
  points: [number, number][];
  color?: string;
  dashed?: boolean;
  /** draw a dot at each point (default: when there are at most 40 points) */
  markers?: boolean;
  width?: number;
}

export interface LinePlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** fixed y range, e.g. [0, 1] for accuracies */
  yDomain?: [number, number];
  logY?: boolean;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

let plotCount = 0; // unique clip-path ids within one document

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, ''));

/** A line plot with axes, ticks, grid and a legend. */
export function linePlot(series: readonly Series[], opts: LinePlotOptions = {}): string {
  const W = opts.width ?? 760;
  const H = opts.height ?? 320;
  // the legend sits right of the plot area, so it never hides data
  const legendW = series.length ? Math.max(...series.map((s) => s.name.length)) * 6.2 + 40 : 0;
  const m = { top: opts.title ? 30 : 12, right: 16 + legendW, bottom: 44, left: 62 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!opts.logY || y > 0)));
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" font-family="system-ui, sans-serif" font-size="11">`];
  if (opts.title) parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${escapeXml(opts.title)}</text>`);
  if (all.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return parts.join('');
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  let [y0, y1] = opts.yDomain ?? [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (y0 === y1) [y0, y1] = opts.logY ? [y0 / 2, y1 * 2] : [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const x = scaleLinear().domain([x0, x1]).range([m.left, m.left + pw]).nice();
  const y = (opts.logY ? scaleLog().domain([y0, y1]) : scaleLinear().domain([y0, y1])).range([m.top + ph, m.top]);
  if (!opts.yDomain) y.nice();
  // grid and ticks
  const xt = x.ticks(Math.max(2, Math.floor(pw / 80)));
  const yt = opts.logY ? y.ticks(5) : y.ticks(Math.max(2, Math.floor(ph / 40)));
  const xf = x.tickFormat(xt.length);
  const yf = opts.logY ? (v: number) => fmt(v) : y.tickFormat(yt.length);
  parts.push('<g stroke="#e5e5e5">');
  for (const t of xt) parts.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${m.top}" y2="${m.top + ph}"/>`);
  for (const t of yt) parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}"/>`);
  parts.push('</g>');
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  parts.push('<g fill="#333">');
  for (const t of xt) parts.push(`<text x="${x(t).toFixed(1)}" y="${m.top + ph + 15}" text-anchor="middle">${escapeXml(xf(t))}</text>`);
  for (const t of yt) parts.push(`<text x="${m.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${escapeXml(yf(t))}</text>`);
  parts.push('</g>');
  if (opts.xLabel) parts.push(`<text x="${m.left + pw / 2}" y="${H - 8}" text-anchor="middle" fill="#333">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#333">${escapeXml(opts.yLabel)}</text>`);
  // series (clipped to the plot area)
  const clip = `plot-clip-${++plotCount}`;
  parts.push(`<defs><clipPath id="${clip}"><rect x="${m.left - 4}" y="${m.top - 4}" width="${pw + 8}" height="${ph + 8}"/></clipPath></defs><g clip-path="url(#${clip})">`);
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.filter(([px]) => Number.isFinite(px));
    const path = line<[number, number]>()
      .defined(([, py]) => Number.isFinite(py) && (!opts.logY || py > 0))
      .x(([px]) => x(px))
      .y(([, py]) => y(py))
      .digits(1)(pts);
    if (path) parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="${s.width ?? 1.6}"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    if (s.markers ?? pts.length <= 40) {
      for (const [px, py] of pts) if (Number.isFinite(py) && (!opts.logY || py > 0)) parts.push(`<circle cx="${x(px).toFixed(1)}" cy="${y(py).toFixed(1)}" r="2.6" fill="${color}"><title>${escapeXml(`${s.name}: ${fmt(px)}, ${fmt(py)}`)}</title></circle>`);
    }
  });
  parts.push('</g>');
  // legend
  const lx = m.left + pw + 12;
  parts.push(`<g><rect x="${lx}" y="${m.top}" width="${legendW - 16}" height="${series.length * 16 + 6}" fill="#fff" stroke="#ccc"/>`);
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const ly = m.top + 14 + i * 16;
    parts.push(`<line x1="${lx + 6}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/><text x="${lx + 30}" y="${ly}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</g></svg>');
  return parts.join('');
}

export interface HeatmapOptions {
  title?: string;
  /** axis names (default "true" / "predicted") */
  rowLabel?: string;
  colLabel?: string;
  /** colour by the row-normalized value (recall per true class; default) or by the raw count */
  normalize?: 'row' | 'none';
  cell?: number;
}

/** A confusion-matrix heat map: rows = true class, columns = predicted; each cell shows the count and row %. */
export function heatmap(matrix: readonly (readonly number[])[], labels: readonly string[], opts: HeatmapOptions = {}): string {
  const k = labels.length;
  const cell = opts.cell ?? Math.max(44, Math.min(72, Math.floor(480 / Math.max(1, k))));
  const labelW = Math.max(...labels.map((l) => l.length)) * 6.5 + 16;
  const m = { top: (opts.title ? 30 : 8) + labelW, left: labelW + 22, right: 12, bottom: 26 };
  const W = m.left + k * cell + m.right;
  const H = m.top + k * cell + m.bottom;
  const rowSums = matrix.map((r) => r.reduce((s, v) => s + v, 0));
  const maxCount = Math.max(1, ...matrix.flat());
  const value = (i: number, j: number) => (opts.normalize === 'none' ? matrix[i][j] / maxCount : rowSums[i] ? matrix[i][j] / rowSums[i] : 0);
  const color = scaleLinear<string>().domain([0, 1]).range(['#f7fbff', '#08306b']);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" font-family="system-ui, sans-serif" font-size="11">`];
  if (opts.title) parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${escapeXml(opts.title)}</text>`);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = value(i, j);
      const cx = m.left + j * cell;
      const cy = m.top + i * cell;
      const pct = rowSums[i] ? `${((100 * matrix[i][j]) / rowSums[i]).toFixed(0)}%` : '';
      const ink = v > 0.5 ? '#fff' : '#111';
      parts.push(`<rect x="${cx}" y="${cy}" width="${cell}" height="${cell}" fill="${color(v)}" stroke="#fff"><title>${escapeXml(`true ${labels[i]}, predicted ${labels[j]}: ${matrix[i][j]} (${pct || '0%'} of ${labels[i]})`)}</title></rect>`);
      parts.push(`<text x="${cx + cell / 2}" y="${cy + cell / 2 - 1}" text-anchor="middle" fill="${ink}" font-size="12" font-weight="${i === j ? 700 : 400}">${matrix[i][j]}</text>`);
      if (pct) parts.push(`<text x="${cx + cell / 2}" y="${cy + cell / 2 + 12}" text-anchor="middle" fill="${ink}" font-size="9">${pct}</text>`);
    }
    parts.push(`<text x="${m.left - 6}" y="${m.top + i * cell + cell / 2 + 4}" text-anchor="end">${escapeXml(labels[i])}</text>`);
    const tx = m.left + i * cell + cell / 2 + 4;
    parts.push(`<text transform="translate(${tx} ${m.top - 6}) rotate(-90)">${escapeXml(labels[i])}</text>`);
  }
  parts.push(`<text transform="translate(12 ${m.top + (k * cell) / 2}) rotate(-90)" text-anchor="middle" fill="#333">${escapeXml(opts.rowLabel ?? 'true')}</text>`);
  parts.push(`<text x="${m.left + (k * cell) / 2}" y="${H - 8}" text-anchor="middle" fill="#333">${escapeXml(opts.colLabel ?? 'predicted')}</text>`);
  parts.push('</svg>');
  return parts.join('');
}
