// Report: JSONL log parsing, the SVG figures (well-formed, the right number of marks, escaped text), and the HTML
// report being self-contained (no external asset) with playable embedded clips and a correct error analysis.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { parseLog, smooth } from '../src/report/log.js';
import { heatmap, linePlot } from '../src/report/svg.js';
import { base64, buildReport, wavDataUri, type PredictionRecord } from '../src/report/html.js';
import { computeMetrics } from '../src/metrics.js';
import { decodeWav } from '../src/audio/wav.js';
import { mulberry32 } from '../src/data/random.js';

/** Tag balance of an XML/HTML fragment (void HTML elements and self-closing tags allowed). */
function assertBalanced(markup: string, what: string): void {
  const voids = new Set(['meta', 'br', 'img', 'input', 'link', 'hr', '!doctype']);
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z!][a-zA-Z0-9-]*)([^>]*?)(\/?)>/g;
  for (let m = re.exec(markup); m; m = re.exec(markup)) {
    const [, close, name, , self] = m;
    const n = name.toLowerCase();
    if (self || voids.has(n)) continue;
    if (close) {
      const top = stack.pop();
      assert.is(top, n, `${what}: </${n}> closes <${top}>`);
    } else stack.push(n);
  }
  assert.equal(stack, [], `${what}: unclosed ${stack.join(', ')}`);
}

const LOG = [
  '{"event":"start","model":"tiny"}',
  ...Array.from({ length: 30 }, (_, i) => JSON.stringify({ step: i + 1, epoch: (i + 1) / 10, loss: 1.6 * Math.exp(-i / 12) + 0.05 * Math.sin(i), lr: 1e-4 * Math.min(1, (i + 1) / 5) })),
  '{"step":10,"epoch":1,"split":"valid","loss":1.2,"wa":0.45,"ua":0.4}',
  '{"step":20,"epoch":2,"split":"valid","loss":0.9,"wa":0.6,"ua":0.52}',
  '{"step":30,"epoch":3,"eval_loss":0.8,"eval_wa":0.66,"eval_ua":0.6}',
  'not json {',
  '',
  '{"step":30,"epoch":3,"split":"test","wa":0.64,"ua":0.58}',
].join('\n');

test('JSONL log: training lines, evaluation lines (split or eval_ keys), bad lines counted', () => {
  const log = parseLog(LOG);
  assert.is(log.train.length, 30);
  assert.is(log.train[4].lr, 1e-4);
  assert.equal(log.evals.map((e) => [e.split, e.step, e.wa]), [
    ['valid', 10, 0.45],
    ['valid', 20, 0.6],
    ['eval', 30, 0.66],
    ['test', 30, 0.64],
  ]);
  assert.is(log.evals[2].loss, 0.8);
  assert.equal(log.badLines, [35]);
  assert.equal(log.other, [{ event: 'start', model: 'tiny' }]);
  const s = smooth([1, 1, 1, 4]);
  assert.equal(s.slice(0, 3), [1, 1, 1]);
  assert.ok(s[3] > 1 && s[3] < 4);
});

test('SVG figures: line plot and confusion heat map are well formed, with escaped text', () => {
  const svg = linePlot(
    [
      { name: 'a <&> b', points: [[0, 1], [1, 0.5], [2, NaN], [3, 0.2]] },
      { name: 'c', points: [[0, 0.3], [3, 0.9]], dashed: true },
    ],
    { title: 'T & U', xLabel: 'step', yLabel: 'loss' },
  );
  assertBalanced(svg, 'line plot');
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.match(svg, /a &lt;&amp;&gt; b/);
  assert.match(svg, /T &amp; U/);
  assert.is((svg.match(/<circle /g) ?? []).length, 5, 'one marker per finite point');
  assert.is((svg.match(/<path d="M/g) ?? []).length, 2);
  assert.match(svg, /stroke-dasharray/);
  assertBalanced(linePlot([], { title: 'empty' }), 'empty plot');
  const hm = heatmap(
    [
      [5, 1],
      [0, 4],
    ],
    ['anger', 'neutral'],
    { title: 'cm' },
  );
  assertBalanced(hm, 'heat map');
  assert.is((hm.match(/<rect /g) ?? []).length, 4);
  assert.match(hm, />83%</);
  assert.match(hm, />100%</);
  assert.match(hm, /true anger, predicted neutral: 1 \(17% of anger\)/);
});

test('HTML report: self-contained, curves, evaluations, error analysis with embedded audio', () => {
  const labels = ['anger', 'happiness', 'neutral', 'sadness', 'surprise'];
  const r = mulberry32(3);
  const preds: PredictionRecord[] = [];
  for (let i = 0; i < 40; i++) {
    const label = i % 5;
    const logits = labels.map((_, j) => (j === label ? 1.5 : 0) + 2 * r());
    const z = logits.reduce((s, v) => s + Math.exp(v), 0);
    const samples = Float32Array.from({ length: 1600 }, (_, t) => 0.3 * Math.sin((t * (i + 1)) / 50));
    // clip 7: a confidently wrong prediction whose audio is a relative path (a long clip, not embedded)
    const probs = i === 7 ? [0.97, 0.01, 0.01, 0.005, 0.005] : logits.map((v) => Math.exp(v) / z);
    preds.push({ id: `F0${i % 3}X${i}`, label, probs, audio: i === 7 ? { src: 'clips/long clip.wav' } : { samples, sampleRate: 16000 }, speaker: `F0${i % 3}`, transcript: 'سلام <دنیا>' });
  }
  const argmax = (p: ArrayLike<number>) => Array.from(p).indexOf(Math.max(...Array.from(p)));
  const metrics = computeMetrics(
    preds.map((p) => p.label as number),
    preds.map((p) => argmax(p.probs)),
    labels,
  );
  const html = buildReport({ title: 'Demo <run>', labels, log: LOG, evaluations: [{ name: 'test', metrics }], predictions: preds, info: { dataset: 'demo', seed: 1, opts: { lr: 1e-4 } }, notes: ['a & b'], errorExamples: 5 });
  assertBalanced(html.replace(/<style>[\s\S]*?<\/style>/, ''), 'report');
  // self-contained: the only URLs are the SVG namespace; no scripts, stylesheets or images from elsewhere
  const urls = html.match(/(?:src|href)="(?!data:)[^"]*"/g) ?? [];
  assert.equal(urls, ['src="clips/long clip.wav"'], 'only the long clip is a (relative) path');
  assert.not.match(html, /<script|<link|@import|url\(http/);
  assert.equal([...new Set(html.match(/https?:\/\/[^"' )]+/g))], ['http://www.w3.org/2000/svg']);
  assert.match(html, /<title>Demo &lt;run&gt;<\/title>/);
  assert.match(html, /سلام &lt;دنیا&gt;/);
  assert.match(html, /WA <b>/);
  assert.match(html, /Evaluation accuracy/);
  assert.match(html, /Learning rate/);
  assert.match(html, /1 log line\(s\) were not JSON objects and were skipped \(line 35\)/);
  // error analysis: 5 wrong (most confident first) and 5 right
  const wrongSection = html.slice(html.indexOf('Most confident wrong'), html.indexOf('Most confident right'));
  const shownWrong = [...wrongSection.matchAll(/<tr><td><code>([^<]+)<\/code>/g)].map((m) => m[1]);
  const expected = preds
    .filter((p) => argmax(p.probs) !== p.label)
    .sort((a, b) => Math.max(...Array.from(b.probs)) - Math.max(...Array.from(a.probs)))
    .slice(0, 5)
    .map((p) => p.id);
  assert.equal(shownWrong, expected);
  // embedded clips decode back to the samples (16-bit)
  const uri = html.match(/src="data:audio\/wav;base64,([^"]+)"/)![1];
  const wav = decodeWav(new Uint8Array(Buffer.from(uri, 'base64')), 'embedded');
  assert.is(wav.sampleRate, 16000);
  assert.is(wav.channels[0].length, 1600);
  assert.is(base64(Uint8Array.from([1, 2, 3, 4, 5])), Buffer.from([1, 2, 3, 4, 5]).toString('base64'));
  const long = wavDataUri(new Float32Array(16000 * 10), 16000);
  assert.ok(long.length > 400000);
  const cut = buildReport({ labels, predictions: [{ id: 'x', label: 0, probs: [0.9, 0.1, 0, 0, 0], audio: { samples: new Float32Array(16000 * 10), sampleRate: 16000 } }], embedMaxSeconds: 2 });
  assert.match(cut, /first 2 s/);
  assert.ok(cut.length < 100000, 'long clips are cut before embedding');
  fs.mkdirSync('build/test', { recursive: true });
  fs.writeFileSync('build/test/report-example.html', html);
});

test.run();
