// Where the GPU time of one XLSR-large forward and one training step goes: shares per model section (the sections
// the model marks: feature_encoder, feature_projection, pos_conv_embed, encoder.layer.<l>, head; backward time is
// booked under the forward section it belongs to; the bench's training step adds 'optimizer'), the top kernels, and
// the roofline summary (Profile.roofline) against the GEMM rate and copy bandwidth measured in the same bench run.
import type { Runtime } from '../../src/runtime/runtime.js';
import { rooflineSummaryLine, type Profile, type RooflinePeaks } from '../../src/runtime/profile.js';
import { measureGemmGflops } from '../../src/runtime/peaks.js';
import type { Row } from './harness.js';
import type { Peaks } from './kernels.js';

export interface Roofs extends RooflinePeaks {
  /** where the GEMM rate came from (the bench row, or measured here when the gemm section did not run) */
  gemmSource: string;
}

/** The GEMM roof: the bench's own 'gemm 1024x1024x1024' figure when that section ran, else measured now the same way. */
export async function benchRoofs(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Roofs> {
  if (peaks.gemm1024 !== undefined) return { gemmGflops: peaks.gemm1024, copyGBps: peaks.copy, gemmSource: "the 'gemm 1024x1024x1024' row" };
  const gemm = await measureGemmGflops(rt, { reps: quick ? 3 : 5 });
  peaks.gemm1024 = gemm;
  return { gemmGflops: gemm, copyGBps: peaks.copy, gemmSource: 'a 1024^3 matmul measured here (gemm section not run)' };
}

interface Part {
  name: string;
  forwardMs: number;
  backwardMs: number;
}

/** the optimizer is neither forward nor backward: its time is shown as a total only */
const isOptimizer = (x: Part) => x.name.startsWith('optimizer');

const PARTS: [string, (s: string) => boolean][] = [
  ['feature encoder', (s) => s === 'feature_encoder'],
  ['feature projection', (s) => s === 'feature_projection'],
  ['positional conv embedding', (s) => s === 'pos_conv_embed'],
  ['transformer layers (all)', (s) => /^encoder\.layer\.\d+$/.test(s)],
  ['head (pooling, classifier, loss)', (s) => s === 'head'],
  ['optimizer (grad-norm clip, AdamW, zero grads)', (s) => s === 'optimizer'],
];

/**
 * GPU time per model part, forward and backward apart (a dispatch under 'backward' is backward time of the forward
 * section named after it), plus the slowest single transformer layer and what ran outside every part.
 */
export function modelParts(p: Profile): { parts: Part[]; slowestLayer: Part | null; other: Part; gpuMs: number } {
  const parts: Part[] = PARTS.map(([name]) => ({ name, forwardMs: 0, backwardMs: 0 }));
  const layers = new Map<string, Part>();
  const other: Part = { name: 'other (outside these sections)', forwardMs: 0, backwardMs: 0 };
  for (const d of p.dispatches) {
    const backwardTime = d.sections[0] === 'backward';
    let hit = -1;
    let layer: string | null = null;
    for (const s of d.sections) {
      const i = PARTS.findIndex(([, match]) => match(s));
      if (i >= 0) {
        hit = i;
        if (i === 3) layer = s;
        break;
      }
    }
    const into = hit >= 0 ? parts[hit] : other;
    if (backwardTime) into.backwardMs += d.durMs;
    else into.forwardMs += d.durMs;
    if (layer) {
      const l = layers.get(layer) ?? { name: layer, forwardMs: 0, backwardMs: 0 };
      if (backwardTime) l.backwardMs += d.durMs;
      else l.forwardMs += d.durMs;
      layers.set(layer, l);
    }
  }
  let slowestLayer: Part | null = null;
  for (const l of layers.values()) if (!slowestLayer || l.forwardMs + l.backwardMs > slowestLayer.forwardMs + slowestLayer.backwardMs) slowestLayer = l;
  return { parts, slowestLayer, other, gpuMs: p.gpuMs };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const ms = (x: number) => x.toFixed(1);

/**
 * Rows for results.json and Markdown for RESULTS.md: the part shares, the top kernels with their roofline class and
 * attained fraction, and the roofline summary. `title` names what was profiled (e.g. 'XLSR-large forward, 4 s').
 */
export function profileReport(title: string, p: Profile, roofs: Roofs, topKernels = 12): { rows: Row[]; markdown: string[] } {
  const { parts, slowestLayer, other, gpuMs } = modelParts(p);
  const r = p.roofline(roofs);
  const share = (x: number) => (gpuMs > 0 ? x / gpuMs : 0);
  const md: string[] = [
    `### Profile: ${title}`,
    '',
    `A warm run (not one of the timed runs), every dispatch timed (${p.method === 'timestamps' ? 'GPU timestamp queries' : 'submit + onSubmittedWorkDone per dispatch, coarse'}, each dispatch in its own pass): ` +
      `${p.dispatches.length} dispatches, GPU ${ms(gpuMs)} ms, wall ${ms(p.wallMs)} ms.`,
    '',
    '| part | forward ms | backward ms | total ms | share of GPU time |',
    '|---|---|---|---|---|',
  ];
  const line = (x: Part, note = '') =>
    `| ${x.name}${note} | ${isOptimizer(x) ? '-' : ms(x.forwardMs)} | ${isOptimizer(x) ? '-' : ms(x.backwardMs)} | ${ms(x.forwardMs + x.backwardMs)} | ${pct(share(x.forwardMs + x.backwardMs))} |`;
  for (const x of parts) {
    if (x.forwardMs + x.backwardMs === 0 && isOptimizer(x)) continue;
    md.push(line(x));
    if (x.name.startsWith('transformer') && slowestLayer) md.push(line(slowestLayer, ' (slowest layer, included above)'));
  }
  md.push(line(other));
  md.push(`| total | | | ${ms(gpuMs)} | 100% |`);
  md.push('');
  md.push(`Top kernels, with their roofline (GEMM-class against ${roofs.gemmGflops.toFixed(1)} GFLOP/s from ${roofs.gemmSource}, memory-bound against the ${roofs.copyGBps.toFixed(1)} GB/s copy bandwidth; attained = stated work / time):`);
  md.push('');
  md.push('| kernel | class | calls | total ms | share | attained | % of roof | ms below 50% |');
  md.push('|---|---|---|---|---|---|---|---|');
  for (const k of r.rows.slice(0, topKernels)) {
    const t = k.totalMs - k.unclassifiedMs;
    const rate = k.attained === null ? '' : k.class === 'gemm' ? `${(k.flops / Math.max(1e-12, t) / 1e6).toFixed(2)} GFLOP/s` : `${(k.bytes / Math.max(1e-12, t) / 1e6).toFixed(2)} GB/s`;
    md.push(`| ${k.kernel} | ${k.class} | ${k.calls} | ${ms(k.totalMs)} | ${pct(k.share)} | ${rate} | ${k.attained === null ? '-' : pct(k.attained)} | ${ms(k.belowMs)} |`);
  }
  if (r.rows.length > topKernels) md.push(`| ... ${r.rows.length - topKernels} more kernels | | | | | | | |`);
  md.push('');
  md.push(`Roofline: ${rooflineSummaryLine(r)}.`);
  md.push('');
  const s = r.summary;
  const rows: Row[] = [
    {
      name: `${title}: GPU time in dispatches below 50% of their roofline`,
      unit: '% of GPU time',
      ours: 100 * s.belowShare,
      note: `GEMM-class ${pct(s.gemmBelowShare)}, memory-bound ${pct(s.memoryBelowShare)}, unclassified ${pct(s.unclassifiedShare)}; roofs GEMM ${roofs.gemmGflops.toFixed(1)} GFLOP/s, copy ${roofs.copyGBps.toFixed(1)} GB/s; GPU ${ms(gpuMs)} ms in ${p.dispatches.length} dispatches`,
    },
    ...parts
      .filter((x) => x.forwardMs + x.backwardMs > 0)
      .map((x): Row => ({ name: `${title}: share of GPU time in ${x.name}`, unit: '%', ours: 100 * share(x.forwardMs + x.backwardMs), note: x.name.startsWith('transformer') && slowestLayer ? `slowest layer ${slowestLayer.name} ${pct(share(slowestLayer.forwardMs + slowestLayer.backwardMs))}` : undefined })),
  ];
  return { rows, markdown: md };
}
