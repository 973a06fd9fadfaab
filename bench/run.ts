// `npm run bench [-- --quick] [-- --only kernels,model,...]`: measures on whatever adapter Dawn finds, then writes
// bench/RESULTS.md and bench/results.json. Sections that cannot run (a peer not installed, too little memory) are
// reported as skipped with the reason, never silently dropped.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createNodeRuntime } from '../src/node/dawn.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { measureCopyBandwidth, measureFmaPeak, fmt, type Row } from './lib/harness.js';
import { benchGemm, benchConv, benchAttention, benchAttentionRelativeBias, benchLayerNorm, benchElementwise, benchAdamW, type Peaks } from './lib/kernels.js';
import { benchTfjs } from './lib/peers-tfjs.js';
import { benchOrt } from './lib/peers-ort.js';
import { benchTorch } from './lib/peers-torch.js';
import { benchModel, benchModelProfile } from './lib/model.js';
import { benchFidelity } from './lib/fidelity.js';
import { benchWhisper } from './lib/whisper.js';
import { benchQkv } from './lib/qkv.js';
import { withReadmeTable } from './lib/readme-table.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.find((a) => a.startsWith('--only='))?.slice(7);
const only = onlyArg ? new Set(onlyArg.split(',')) : null;
const outDir = args.find((a) => a.startsWith('--out='))?.slice(6) ?? path.join(root, 'bench');

/** A section's rows, and optionally Markdown of its own (e.g. the per-layer fidelity tables) appended to RESULTS.md. */
export type Section = (rt: Runtime, peaks: Peaks, quick: boolean) => Promise<Row[] | { rows: Row[]; markdown: string[] }>;

// sections are registered in order; later issues (model, peers) add theirs in bench/lib and list them here
const sections: [string, Section][] = [
  ['fidelity', benchFidelity],
  ['gemm', benchGemm],
  ['conv', benchConv],
  ['attention', benchAttention],
  ['attention-bias', benchAttentionRelativeBias],
  ['qkv', benchQkv],
  ['layernorm', benchLayerNorm],
  ['elementwise', benchElementwise],
  ['adamw', benchAdamW],
  ['model', benchModel],
  // only the model section's profiles (it profiles after its timed runs): skipped whenever 'model' runs too
  ['model-profile', benchModelProfile],
  ['whisper', benchWhisper],
  // peers, measured side by side in the same run (--torch installs PyTorch first if it is missing)
  ['tfjs', benchTfjs],
  ['ort', benchOrt],
  ['torch', benchTorch],
];

/** The Dawn busy-wait fix, measured: the same GEMM workload in two fresh processes, main thread niced or not. */
function niceComparison(): Row[] {
  const script = path.join(root, 'build/bench/nice-probe.mjs');
  if (!fs.existsSync(script)) return [];
  const run = (nice: string) => {
    const r = spawnSync(process.execPath, [script, quick ? '--quick' : ''], { encoding: 'utf8', env: { ...process.env, SER_NICE: nice }, timeout: 600000 });
    const m = (r.stdout || '').match(/SECONDS=([\d.eE+-]+)/);
    return m ? Number(m[1]) : NaN;
  };
  const plain = run('0');
  const niced = run('1');
  if (!Number.isFinite(plain) || !Number.isFinite(niced)) return [{ name: 'main thread niced vs not (GEMM loop)', unit: 'x', ours: NaN, note: 'probe failed' }];
  return [
    { name: 'GEMM loop, main thread at normal priority', unit: 's', ours: plain },
    { name: 'GEMM loop, main thread niced (default on CPU adapters)', unit: 's', ours: niced, peer: 'not-niced', peer_value: plain, speedup: plain / niced, note: 'speedup = normal / niced time' },
  ];
}

async function main(): Promise<void> {
  const rt = await createNodeRuntime();
  const started = new Date();
  console.log(`adapter: ${rt.adapter.vendor} ${rt.adapter.architecture} ${rt.adapter.description} (CPU adapter: ${rt.adapter.isCPU})`);
  const peaks: Peaks = { fma: await measureFmaPeak(rt, quick), copy: await measureCopyBandwidth(rt, quick) };
  console.log(`peak: FMA ${fmt(peaks.fma)} GFLOP/s, copy ${fmt(peaks.copy)} GB/s`);
  const rows: Row[] = [
    { name: 'FMA peak (12 chains/thread)', unit: 'GFLOP/s', ours: peaks.fma, command: 'npm run bench' },
    { name: 'copy bandwidth', unit: 'GB/s', ours: peaks.copy },
  ];
  const skipped: string[] = [];
  const markdown: string[] = [];
  for (const [name, fn] of sections) {
    if (only && !only.has(name)) continue;
    if (name === 'model-profile' && (!only || only.has('model'))) continue;
    const t0 = performance.now();
    try {
      const out = await fn(rt, peaks, quick);
      const r = Array.isArray(out) ? out : out.rows;
      if (!Array.isArray(out)) markdown.push(...out.markdown);
      rows.push(...r);
      for (const row of r) console.log(`  ${row.name}: ${fmt(row.ours)} ${row.unit}${row.peer ? ` | ${row.peer} ${fmt(row.peer_value)} | speedup ${fmt(row.speedup)}` : ''}${row.peak_fraction !== undefined ? ` | ${(100 * row.peak_fraction).toFixed(1)}% of peak` : ''}`);
    } catch (e) {
      skipped.push(`${name}: ${(e as Error).message}`);
      console.log(`  [${name}] skipped: ${(e as Error).message}`);
    }
    console.log(`[${name}] ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  rt.destroy();
  if (!only || only.has('nice')) rows.push(...niceComparison());
  write(rows, skipped, markdown, started, rt);
}

function write(rows: Row[], skipped: string[], markdown: string[], date: Date, rt: Runtime): void {
  const adapter = { vendor: rt.adapter.vendor, architecture: rt.adapter.architecture, description: rt.adapter.description };
  const cmd = `npm run bench${quick ? ' -- --quick' : ''}`;
  const json = { adapter, date: date.toISOString(), quick, command: cmd, rows, skipped };
  fs.mkdirSync(outDir, { recursive: true });
  const suffix = quick ? '.quick' : '';
  fs.writeFileSync(path.join(outDir, `results${suffix}.json`), JSON.stringify(json, null, 2) + '\n');
  const lines = [
    `# Benchmark results${quick ? ' (quick)' : ''}`,
    '',
    `- adapter: ${adapter.vendor} / ${adapter.architecture} / ${adapter.description}`,
    `- date: ${date.toISOString()}`,
    `- command: \`${cmd}\` (figures are medians over repetitions; spread is [slowest, fastest])`,
    '',
    '| name | unit | ours | spread | peer | peer value | speedup (peer time / ours) | % of peak | note |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.unit} | ${fmt(r.ours)} | ${r.spread ? `${fmt(r.spread[0])}-${fmt(r.spread[1])}` : ''} | ${r.peer ?? ''} | ${fmt(r.peer_value)} | ${fmt(r.speedup)} | ${r.peak_fraction !== undefined ? (100 * r.peak_fraction).toFixed(1) : ''} | ${(r.note ?? '').replace(/\|/g, '/')} |`),
    '',
    ...(skipped.length ? ['Skipped:', '', ...skipped.map((s) => `- ${s}`), ''] : []),
    ...markdown,
  ];
  fs.writeFileSync(path.join(outDir, `RESULTS${suffix}.md`), lines.join('\n'));
  console.log(`wrote ${path.join(outDir, `RESULTS${suffix}.md`)} and results${suffix}.json`);
  // a full run into bench/ also rewrites the README's table (test/readme-bench.test.ts keeps the two in step)
  if (!quick && !only && path.resolve(outDir) === path.join(root, 'bench')) {
    const readme = path.join(root, 'README.md');
    fs.writeFileSync(readme, withReadmeTable(fs.readFileSync(readme, 'utf8'), json));
    console.log(`updated the benchmark table in ${readme}`);
  }
  const bad = rows.filter((r) => !Number.isFinite(r.ours));
  if (bad.length) {
    console.error(`non-finite figures: ${bad.map((r) => r.name).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
