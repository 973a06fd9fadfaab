// The README's benchmark table, generated from bench/results.json so that the two cannot drift apart: a full
// `npm run bench` rewrites the table between the markers below, and test/readme-bench.test.ts fails when README.md
// does not hold the table of the committed results.json.
// The README keeps the headline rows; RESULTS.md has all of them with spreads and notes. Left out here: the
// per-fixture fidelity rows (README has its own fidelity table), the per-section shares of the model profiles, and
// the q/k/v variants other than the packed+concat block at batch 4.
import { fmt, type Row } from './harness.js';

export const TABLE_START = '<!-- bench-table:start (generated from bench/results.json by npm run bench; do not edit) -->';
export const TABLE_END = '<!-- bench-table:end -->';

export function inReadme(row: Row): boolean {
  if (row.name.startsWith('fidelity ')) return false;
  if (row.name.includes(': share of GPU time in ')) return false;
  if (row.name.startsWith('q/k/v block') && !(row.name.includes('packed+concat') && row.name.includes('B=4'))) return false;
  return true;
}

/** What bench/run.ts writes to results.json (the parts the README shows). */
export interface BenchResults {
  adapter: { vendor: string; architecture: string; description: string };
  date: string;
  command: string;
  rows: Row[];
}

/** The line naming the run, and the Markdown table of the README's rows. */
export function readmeTable(results: BenchResults): string[] {
  const { adapter, rows } = results;
  return [
    `Measured by \`${results.command}\` on ${adapter.vendor} / ${adapter.architecture} / ${adapter.description}, ${results.date.slice(0, 10)}:`,
    '',
    '| name | unit | ours | peer | peer value | speedup (peer time / ours) | % of peak |',
    '|---|---|---|---|---|---|---|',
    ...rows.filter(inReadme).map((r) => `| ${r.name} | ${r.unit} | ${fmt(r.ours)} | ${r.peer ?? ''} | ${fmt(r.peer_value)} | ${fmt(r.speedup)} | ${r.peak_fraction !== undefined ? fmt(100 * r.peak_fraction) : ''} |`),
  ];
}

/** README text with the table between the markers replaced by the one for these results. */
export function withReadmeTable(readme: string, results: BenchResults): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md: the benchmark table markers (${TABLE_START} ... ${TABLE_END}) are missing`);
  return `${readme.slice(0, start + TABLE_START.length)}\n${readmeTable(results).join('\n')}\n${readme.slice(end)}`;
}
