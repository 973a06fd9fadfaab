// Data side: the three manifest kinds, label sets, seeded stratified and speaker-independent splits (and their files),
// batching (random by default, length-grouped as an option) with attention masks, crops and augmentation seeding.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeWav } from '../src/audio/wav.js';
import { zeroMeanUnitVar } from '../src/audio/normalize.js';
import { LabelSet, SHEMO_LABELS, labelCounts, selectLabels } from '../src/data/labels.js';
import { joinPath, parseCsvManifest, parseShemoManifest, speakerFromName, toCsvManifest, toShemoManifest, type DataItem } from '../src/data/manifest.js';
import { applySplits, makeSplits, speakerSplit, splitsFromJson, splitsToJson, stratifiedSplit } from '../src/data/split.js';
import { collate, cropClip, makeBatch, paddingFraction, planBatches, splitUnequalLengths } from '../src/data/batch.js';
import { deriveSeed, mulberry32, shuffleInPlace } from '../src/data/random.js';
import { ClipStore, loadDataset, loadOrMakeSplits, missingFiles, prepareDataset, readSplits } from '../src/node/audio-file.js';
import { spawnSync } from 'node:child_process';
import { decodeWav } from '../src/audio/wav.js';
import { readSentences, defaultSentencesFile, synthesizeDemoCorpus } from '../src/node/demo-corpus.js';

const EMOTIONS = ['anger', 'fear', 'happiness', 'neutral', 'sadness', 'surprise'];
const LETTER: Record<string, string> = { anger: 'A', fear: 'F', happiness: 'H', neutral: 'N', sadness: 'S', surprise: 'W' };

/** A ShEMO-shaped manifest: 60 speakers (F01.. / M01..) with skewed label counts like the real corpus. */
function syntheticShemo(seed = 1): Record<string, Record<string, string>> {
  const r = mulberry32(seed);
  const weights = [0.35, 0.01, 0.07, 0.38, 0.12, 0.07];
  const out: Record<string, Record<string, string>> = {};
  for (let s = 0; s < 60; s++) {
    const spk = `${s % 2 ? 'M' : 'F'}${String(Math.floor(s / 2) + 1).padStart(2, '0')}`;
    const n = 10 + Math.floor(r() * 60);
    const counters: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      let u = r();
      let e = 0;
      while (e < weights.length - 1 && u >= weights[e]) u -= weights[e++];
      const emo = EMOTIONS[e];
      counters[emo] = (counters[emo] ?? 0) + 1;
      const name = `${spk}${LETTER[emo]}${String(counters[emo]).padStart(2, '0')}`;
      out[`${name}.wav`] = { path: `shemo/${name}.wav`, gender: spk[0] === 'F' ? 'female' : 'male', speech_name: name, text_name: name, emotion: emo, transcript: 'سلام', ipa: 'salam' };
    }
  }
  return out;
}

test('ShEMO manifest: paths relative to the root, labels, speakers, genders; default label set drops fear', () => {
  const json = JSON.stringify({
    'F01A01.wav': { path: 'shemo/F01A01.wav', gender: 'female', speech_name: 'F01A01', text_name: 'F01A01', emotion: 'anger', transcript: 'دیگه نمی‌تونم', ipa: 'dige' },
    'M56F02.wav': { path: 'shemo/M56F02.wav', gender: 'male', speech_name: 'M56F02', text_name: 'M56F02', emotion: 'fear', transcript: 'x', ipa: 'x' },
    'M12W07.wav': { path: 'shemo/M12W07.wav', gender: 'male', speech_name: 'M12W07', text_name: 'M12W07', emotion: 'Surprise', transcript: 'y', ipa: 'y' },
  });
  const items = parseShemoManifest(json, { root: '/data/ShEMO/' });
  assert.equal(items[0], { id: 'F01A01', path: '/data/ShEMO/shemo/F01A01.wav', label: 'anger', speaker: 'F01', gender: 'female', transcript: 'دیگه نمی‌تونم' });
  assert.is(items[1].speaker, 'M56');
  assert.is(items[2].label, 'surprise');
  const set = new LabelSet(SHEMO_LABELS);
  assert.equal(set.labels, ['anger', 'happiness', 'neutral', 'sadness', 'surprise']);
  const { items: kept, dropped } = selectLabels(items, set);
  assert.equal(kept.map((it) => it.id), ['F01A01', 'M12W07']);
  assert.equal(dropped, { fear: 1 });
  // ids are positions in sorted order, whatever order the user wrote
  const mine = new LabelSet(['sadness', 'Anger', 'neutral']);
  assert.equal([mine.id('anger'), mine.id('neutral'), mine.id('sadness')], [0, 1, 2]);
  assert.equal(mine.toConfig().id2label, { 0: 'anger', 1: 'neutral', 2: 'sadness' });
  assert.throws(() => mine.id('fear'), /'fear' is not in the label set/);
  assert.throws(() => parseShemoManifest('{"a.wav": {"path": "a.wav"}}', { root: '.', name: 'm.json' }), /m\.json: entry 'a\.wav' has no "emotion"/);
  assert.throws(() => parseShemoManifest('[1,2', { root: '.', name: 'm.json' }), /m\.json: not valid JSON/);
  // round trip through the writer
  const again = parseShemoManifest(toShemoManifest(items, '/data/ShEMO'), { root: '/data/ShEMO' });
  assert.equal(again, items);
  assert.is(joinPath('/r', '/abs/x.wav'), '/abs/x.wav');
  assert.is(joinPath('https://h/d', 'a/b.wav'), 'https://h/d/a/b.wav');
  assert.is(speakerFromName('x/y/M07N12.wav'), 'M07');
});

test('the published Modified ShEMO manifest (when ../shared is present): 3000 items, 87 speakers, fear dropped', () => {
  const file = '../shared/data/modified_shemo.json';
  if (!fs.existsSync(file)) {
    console.log('  (../shared/data/modified_shemo.json not present: skipped)');
    return;
  }
  const items = parseShemoManifest(fs.readFileSync(file, 'utf8'), { root: '/data' });
  assert.is(items.length, 3000);
  assert.is(new Set(items.map((it) => it.speaker)).size, 87);
  const { items: kept, dropped } = selectLabels(items, new LabelSet(SHEMO_LABELS));
  assert.equal(dropped, { fear: 32 });
  assert.equal(labelCounts(kept), { anger: 1042, happiness: 203, neutral: 1160, sadness: 361, surprise: 202 });
  const s = makeSplits(kept, { method: 'speaker', seed: 3 });
  const sides = applySplits(kept, s);
  const spk = (xs: DataItem[]) => new Set(xs.map((it) => it.speaker));
  for (const a of ['train', 'valid', 'test'] as const) for (const b of ['train', 'valid', 'test'] as const) if (a < b) for (const x of spk(sides[a])) assert.not.ok(spk(sides[b]).has(x), `speaker ${x} in ${a} and ${b}`);
  const frac = sides.test.length / kept.length;
  assert.ok(Math.abs(frac - 0.2) < 0.02, `test fraction ${frac}`);
  console.log(`  ShEMO speaker split (seed 3): train ${sides.train.length}, valid ${sides.valid.length}, test ${sides.test.length} (${spk(sides.test).size} speakers); test labels ${JSON.stringify(labelCounts(sides.test))}`);
});

test('CSV / TSV manifests: quoting, BOM, CRLF, common column names, speaker column, clear errors', () => {
  const csv = '\uFEFFfile,emotion,speaker\r\n"clips/a,1.wav",Anger,s1\r\nclips/b.wav,neutral,s2\r\n\r\n';
  const items = parseCsvManifest(csv, { root: '/d' });
  assert.equal(items, [
    { id: 'clips/a,1', path: '/d/clips/a,1.wav', label: 'anger', speaker: 's1' },
    { id: 'clips/b', path: '/d/clips/b.wav', label: 'neutral', speaker: 's2' },
  ]);
  const tsv = 'path\tlabel\nF03H01.wav\thappiness\nM04S02.flac\tsadness\n';
  const t = parseCsvManifest(tsv, { root: 'data', delimiter: '\t' });
  assert.equal(t.map((it) => [it.path, it.label, it.speaker]), [
    ['data/F03H01.wav', 'happiness', 'F03'],
    ['data/M04S02.flac', 'sadness', 'M04'],
  ]);
  assert.equal(parseCsvManifest(tsv, { root: 'data' }), t, 'delimiter detected');
  assert.equal(parseCsvManifest(toCsvManifest(items, '/d'), { root: '/d' }), items, 'writer round trip');
  assert.throws(() => parseCsvManifest('wav,mood\na.wav,x\n', { root: '.', name: 'm.csv' }), /m\.csv: no label column \(looked for label, emotion.*columns: wav, mood\)/);
  assert.equal(parseCsvManifest('wav,mood\na.wav,X\n', { root: '.', labelColumn: 'mood' })[0].label, 'x');
  assert.throws(() => parseCsvManifest('path,label\na.wav,anger\nb.wav,\n', { root: '.', name: 'm.csv' }), /m\.csv: row 3 \(b\.wav\) has an empty 'label'/);
  assert.throws(() => parseCsvManifest('path,label\na.wav,anger\na.wav,sadness\n', { root: '.', name: 'm.csv' }), /duplicate item id 'a'/);
});

test('CSV manifest with numeric target columns (regression): targets in column order, no label needed, bad numbers named', () => {
  const csv = 'path,arousal,dominance,valence\na.wav,0.7,0.4,0.3\nb.wav,-0.25,1e-1,0.5\n';
  const items = parseCsvManifest(csv, { root: '/d', targetColumns: ['arousal', 'dominance', 'valence'] });
  assert.equal(items.map((it) => it.targets), [[0.7, 0.4, 0.3], [-0.25, 0.1, 0.5]]);
  assert.equal(items.map((it) => it.label), ['', '']);
  assert.throws(() => parseCsvManifest('path,arousal\na.wav,high\n', { root: '.', name: 'r.csv', targetColumns: ['arousal'] }), /r\.csv: row 2 \(a\.wav\) has 'arousal' = "high", not a number/);
  assert.throws(() => parseCsvManifest('path,arousal\na.wav,\n', { root: '.', name: 'r.csv', targetColumns: ['arousal'] }), /'arousal' = "", not a number/);
  assert.throws(() => parseCsvManifest('path,arousal\na.wav,1\n', { root: '.', name: 'r.csv', targetColumns: ['valence'] }), /r\.csv: no target column 'valence'/);
});

test('Node edge: loadDataset for ShEMO JSON, CSV and folder-per-label; ClipStore; missing files', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-data-'));
  try {
    const wav = (secs: number) => encodeWav(new Float32Array(Math.round(secs * 8000)).map((_, i) => 0.3 * Math.sin(i / 3)), 8000);
    fs.mkdirSync(path.join(dir, 'corpus/shemo'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'corpus/shemo/F01A01.wav'), wav(0.2));
    fs.writeFileSync(path.join(dir, 'corpus/shemo/M02N01.wav'), wav(0.3));
    fs.writeFileSync(path.join(dir, 'corpus/meta.json'), JSON.stringify({ 'F01A01.wav': { path: 'shemo/F01A01.wav', emotion: 'anger', gender: 'female' }, 'M02N01.wav': { path: 'shemo/M02N01.wav', emotion: 'neutral', gender: 'male' } }));
    const shemo = loadDataset({ source: path.join(dir, 'corpus/meta.json') });
    assert.is(shemo.kind, 'shemo');
    assert.equal(shemo.items.map((it) => it.path), [path.join(dir, 'corpus/shemo/F01A01.wav'), path.join(dir, 'corpus/shemo/M02N01.wav')]);
    assert.equal(missingFiles(shemo.items), []);
    const elsewhere = loadDataset({ source: path.join(dir, 'corpus/meta.json'), dataRoot: '/nowhere' });
    assert.is(missingFiles(elsewhere.items).length, 2);
    assert.throws(() => prepareDataset({ dataset: { source: path.join(dir, 'corpus/meta.json'), dataRoot: '/nowhere' }, labels: ['anger', 'neutral'] }), /2 of 2 audio files are missing, e\.g\. \/nowhere\/shemo\/F01A01\.wav/);
    assert.throws(() => prepareDataset({ dataset: { source: path.join(dir, 'corpus/meta.json') } }), /no items with label\(s\) happiness, sadness, surprise/);

    fs.writeFileSync(path.join(dir, 'corpus/list.tsv'), 'path\tlabel\nshemo/F01A01.wav\tanger\n');
    assert.is(loadDataset({ source: path.join(dir, 'corpus/list.tsv') }).items[0].path, path.join(dir, 'corpus/shemo/F01A01.wav'));

    for (const [label, f] of [['anger', 'F01A01.wav'], ['neutral', 'M02N01.wav'], ['neutral', 'sub/M03N02.wav']]) {
      fs.mkdirSync(path.dirname(path.join(dir, 'folders', label, f)), { recursive: true });
      fs.writeFileSync(path.join(dir, 'folders', label, f), wav(0.1));
    }
    fs.writeFileSync(path.join(dir, 'folders/neutral/notes.txt'), 'not audio');
    const folder = loadDataset({ source: path.join(dir, 'folders') });
    assert.is(folder.kind, 'folder');
    assert.equal(folder.items.map((it) => [it.id, it.label, it.speaker]), [
      ['anger/F01A01', 'anger', 'F01'],
      ['neutral/M02N01', 'neutral', 'M02'],
      ['neutral/sub/M03N02', 'neutral', 'M03'],
    ]);
    const store = new ClipStore({ maxBytes: 10000 });
    const a = await store.get(shemo.items[0].path);
    assert.is(a.length, 3200); // 0.2 s at 16 kHz
    assert.is(await store.get(shemo.items[0].path), a, 'cached');
    await store.get(shemo.items[1].path); // 4800 samples: evicts the first (19 kB > 10 kB)
    assert.ok(store.cachedBytes <= 4800 * 4);

    // split files: made once, then reused as they are
    const splitFile = path.join(dir, 'splits/split.json');
    const items = parseShemoManifest(syntheticShemo(), { root: dir });
    const first = loadOrMakeSplits(splitFile, items, { seed: 5, method: 'speaker' });
    assert.ok(first.created);
    assert.ok(fs.existsSync(path.join(dir, 'splits/split.csv')));
    const second = loadOrMakeSplits(splitFile, items, { seed: 999 });
    assert.not.ok(second.created);
    assert.equal(second.splits, first.splits);
    assert.equal(readSplits(splitFile), first.splits);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('stratified split: label proportions kept, seeded, independent of input order, disjoint and complete', () => {
  const items = selectLabels(parseShemoManifest(syntheticShemo(), { root: '' }), new LabelSet(SHEMO_LABELS)).items;
  const s = makeSplits(items, { seed: 11, testFraction: 0.2, validFraction: 0.1 });
  const all = [...s.train, ...s.valid, ...s.test];
  assert.is(all.length, items.length);
  assert.is(new Set(all).size, items.length, 'disjoint');
  const sides = applySplits(items, s);
  const total = labelCounts(items);
  const test = labelCounts(sides.test);
  const valid = labelCounts(sides.valid);
  for (const l of Object.keys(total)) {
    assert.ok(Math.abs(test[l] - 0.2 * total[l]) <= 1, `${l}: ${test[l]} of ${total[l]} in test`);
    assert.ok(Math.abs(valid[l] - 0.1 * (total[l] - test[l])) <= 1, `${l}: ${valid[l]} in valid`);
  }
  const shuffled = shuffleInPlace([...items], mulberry32(3));
  assert.equal(makeSplits(shuffled, { seed: 11 }), s, 'same split whatever the manifest order');
  assert.not.equal(makeSplits(items, { seed: 12 }).test, s.test, 'another seed, another split');
  // tiny classes still land on both sides
  const tiny: DataItem[] = [
    { id: 'a1', path: 'a1', label: 'a' },
    { id: 'a2', path: 'a2', label: 'a' },
    { id: 'b1', path: 'b1', label: 'b' },
    { id: 'b2', path: 'b2', label: 'b' },
    { id: 'b3', path: 'b3', label: 'b' },
  ];
  const [kept, held] = stratifiedSplit(tiny, 0.2, 1);
  assert.equal(held.map((it) => it.label).sort(), ['a', 'b']);
  assert.is(kept.length, 3);
  // JSON round trip; a split for another dataset is refused
  assert.equal(splitsFromJson(splitsToJson(s)), s);
  assert.throws(() => applySplits(items.slice(10), s), /which is not in the dataset/);
  assert.throws(() => splitsFromJson('{"train":["a"],"valid":["a"],"test":[]}', 's.json'), /s\.json: id 'a' appears in more than one side/);
  // hostile or damaged split files: one error naming the file, never a TypeError
  for (const bad of ['null', '[]', '7', '{"train":[1],"valid":[],"test":[]}', '{"train":"x","valid":[],"test":[]}', '[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]']) {
    assert.throws(() => splitsFromJson(bad, 's.json'), (e: Error) => !(e instanceof TypeError) && e.message.startsWith('s.json: '), bad);
  }
});

test('speaker-independent split: no speaker on two sides, sizes and labels near the targets', () => {
  const items = selectLabels(parseShemoManifest(syntheticShemo(2), { root: '' }), new LabelSet(SHEMO_LABELS)).items;
  const s = makeSplits(items, { seed: 4, method: 'speaker' });
  const sides = applySplits(items, s);
  const spk = (xs: DataItem[]) => new Set(xs.map((it) => it.speaker!));
  const tr = spk(sides.train);
  const va = spk(sides.valid);
  const te = spk(sides.test);
  for (const x of te) assert.not.ok(tr.has(x) || va.has(x), `test speaker ${x} elsewhere`);
  for (const x of va) assert.not.ok(tr.has(x), `valid speaker ${x} in train`);
  const frac = sides.test.length / items.length;
  assert.ok(Math.abs(frac - 0.2) < 0.03, `test fraction ${frac}`);
  const total = labelCounts(items);
  const test = labelCounts(sides.test);
  for (const l of Object.keys(total)) assert.ok(test[l] > 0 && Math.abs(test[l] / total[l] - 0.2) < 0.1, `${l}: ${test[l]} of ${total[l]}`);
  assert.equal(makeSplits(shuffleInPlace([...items], mulberry32(8)), { seed: 4, method: 'speaker' }), s);
  assert.throws(() => speakerSplit([{ id: 'x', path: 'x', label: 'a' }], 0.2, 1), /item 'x' has no speaker id/);
});

test('collate: per-clip normalization over real samples, zero padding, i32 attention mask', () => {
  const a = Float32Array.from({ length: 7 }, (_, i) => i * 0.1 + 1);
  const b = Float32Array.from({ length: 4 }, (_, i) => -i);
  const batch = collate([a, b], [2, 0], [10, 11], { padMultiple: 5 });
  assert.is(batch.B, 2);
  assert.is(batch.T, 10);
  assert.equal(batch.lengths, [7, 4]);
  assert.equal(Array.from(batch.labels), [2, 0]);
  assert.equal(Array.from(batch.mask ?? []), [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  assert.equal(Array.from(batch.input.subarray(0, 7)), Array.from(zeroMeanUnitVar(a)));
  assert.equal(Array.from(batch.input.subarray(10, 14)), Array.from(zeroMeanUnitVar(b)));
  assert.ok(batch.input.subarray(7, 10).every((v) => v === 0) && batch.input.subarray(14).every((v) => v === 0));
  assert.equal(Array.from(collate([a], [], [], { normalize: false }).input), Array.from(a));
});

test('training batches by default: a seeded random permutation per epoch (HF Trainer), lengths mixed', () => {
  const r = mulberry32(9);
  const lengths = Array.from({ length: 1003 }, () => Math.floor(8000 + r() * 150000));
  const plan = planBatches(lengths, { batchSize: 8, seed: 1, epoch: 0 });
  assert.equal(plan.flat().sort((x, y) => x - y), lengths.map((_, i) => i), 'every item once');
  assert.ok(plan.slice(0, -1).every((b) => b.length === 8) && plan[plan.length - 1].length === 1003 % 8, 'full batches in order, the rest last');
  assert.equal(planBatches(lengths, { batchSize: 8, seed: 1, epoch: 0 }), plan, 'deterministic for (seed, epoch): resume replays it');
  assert.not.equal(planBatches(lengths, { batchSize: 8, seed: 1, epoch: 1 }), plan, 'epochs differ');
  assert.not.equal(planBatches(lengths, { batchSize: 8, seed: 2, epoch: 0 }), plan, 'seeds differ');
  // exactly a seeded permutation cut into consecutive batches (RandomSampler + BatchSampler)
  const order = lengths.map((_, i) => i);
  shuffleInPlace(order, mulberry32(deriveSeed(1, 'permutation', 0)));
  assert.equal(plan.flat(), order);
  // not grouped by length: as much padding as random batches have
  const padding = paddingFraction(lengths, plan);
  console.log(`  padding, random batches: ${(100 * padding).toFixed(1)}%`);
  assert.ok(padding > 0.3, `random batches pad ${padding}`);
  assert.equal(planBatches(lengths, { batchSize: 8, dropLast: true, seed: 1 }).flat().length, 1000, 'dropLast');
});

test('--group-by-length batches: every item once, seeded per epoch, far less padding than random batches', () => {
  const r = mulberry32(9);
  const lengths = Array.from({ length: 1003 }, () => Math.floor(8000 + r() * 150000));
  const plan = planBatches(lengths, { batchSize: 8, seed: 1, epoch: 0, groupByLength: true });
  const seen = plan.flat().sort((x, y) => x - y);
  assert.equal(seen, lengths.map((_, i) => i));
  assert.ok(plan.every((b) => b.length >= 1 && b.length <= 8));
  assert.equal(planBatches(lengths, { batchSize: 8, seed: 1, epoch: 0, groupByLength: true }), plan, 'deterministic');
  assert.not.equal(planBatches(lengths, { batchSize: 8, seed: 1, epoch: 1, groupByLength: true }), plan, 'epochs differ');
  const bucketed = paddingFraction(lengths, plan);
  const random = paddingFraction(lengths, planBatches(lengths, { batchSize: 8, seed: 1, epoch: 0 }));
  console.log(`  padding: grouped by length ${(100 * bucketed).toFixed(1)}%, random batches ${(100 * random).toFixed(1)}%`);
  assert.ok(bucketed < 0.1 && random > 0.3, `bucketed ${bucketed} vs random ${random}`);
  // a cap on B*T, and crops counted at their cropped length (both modes)
  for (const groupByLength of [true, false]) {
    const capped = planBatches(lengths, { batchSize: 8, maxBatchSamples: 400000, seed: 2, groupByLength });
    for (const b of capped) assert.ok(b.length === 1 || Math.max(...b.map((i) => lengths[i])) * b.length <= 400000);
    assert.equal(capped.flat().sort((x, y) => x - y), lengths.map((_, i) => i));
  }
  const cropped = planBatches(lengths, { batchSize: 8, maxSamples: 48000, maxBatchSamples: 48000 * 4, groupByLength: true });
  for (const b of cropped) assert.ok(Math.max(...b.map((i) => Math.min(lengths[i], 48000))) * b.length <= 48000 * 4);
  assert.ok(cropped.some((b) => b.length === 4) && cropped.some((b) => b.length > 4), 'long clips 4 to a batch, short ones more');
  // evaluation: no shuffling, sorted by length; split where lengths change for padding-sensitive models
  const ev = planBatches(lengths, { batchSize: 16, shuffle: false });
  const flat = ev.flat();
  for (let i = 1; i < flat.length; i++) assert.ok(lengths[flat[i - 1]] <= lengths[flat[i]]);
  const same = [5, 5, 7, 7, 7, 9];
  const split = splitUnequalLengths(planBatches(same, { batchSize: 4, shuffle: false }), same);
  assert.equal(split, [[0, 1], [2, 3], [4], [5]]);
});

test('makeBatch: seeded random crops and augmentation in training only; evaluation crops from the start', async () => {
  const clips = [48000, 9000, 30000].map((n, k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * (0.01 + k * 0.003)) + 0.001 * i));
  const get = (i: number) => clips[i];
  const ids = (i: number) => `clip${i}`;
  const opts = { train: true, maxSamples: 16000, seed: 3, epoch: 0 };
  const b1 = await makeBatch([0, 1, 2], get, (i) => i, opts, ids);
  const b2 = await makeBatch([2, 0, 1], get, (i) => i, opts, ids);
  assert.equal(b1.lengths, [16000, 9000, 16000]);
  assert.equal(Array.from(b1.input.subarray(0, 16000)), Array.from(b2.input.subarray(16000, 32000)), 'a crop depends on the item, not its batch position');
  const b3 = await makeBatch([0], get, null, { ...opts, epoch: 1 }, ids);
  assert.not.equal(Array.from(b3.input.subarray(0, 100)), Array.from(b1.input.subarray(0, 100)), 'another epoch, another crop');
  const ev = await makeBatch([0], get, null, { train: false, maxSamples: 16000 });
  assert.equal(Array.from(ev.input), Array.from(zeroMeanUnitVar(clips[0].subarray(0, 16000))));
  assert.is(cropClip(clips[0], 1000, 'center').byteOffset, 23500 * 4);
  const aug = { speeds: [1.1], noiseSnrDb: [20, 20] as [number, number] };
  const withAug = await makeBatch([1], get, null, { train: true, seed: 3, augment: aug }, ids);
  assert.is(withAug.lengths[0], Math.ceil(9000 / 1.1), 'speed perturbation applied');
  const evalAug = await makeBatch([1], get, null, { train: false, augment: aug }, ids);
  assert.is(evalAug.lengths[0], 9000, 'no augmentation at evaluation');
});

/** Median F0 (Hz) of the voiced 40 ms frames, by autocorrelation (enough to see the prosody recipes). */
function medianPitch(x: Float32Array, rate: number): number {
  const fr = Math.round(0.04 * rate);
  let peak = 0;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  const f0: number[] = [];
  for (let s = 0; s + fr <= x.length; s += fr >> 1) {
    let e = 0;
    for (let i = 0; i < fr; i++) e += x[s + i] * x[s + i];
    if (Math.sqrt(e / fr) < 0.05 * peak) continue;
    let best = 0;
    let bestLag = 0;
    for (let lag = Math.floor(rate / 500); lag <= Math.floor(rate / 70); lag++) {
      let c = 0;
      for (let i = 0; i + lag < fr; i++) c += x[s + i] * x[s + i + lag];
      if (c > best) [best, bestLag] = [c, lag];
    }
    if (best > 0.3 * e && bestLag > 0) f0.push(rate / bestLag);
  }
  f0.sort((a, b) => a - b);
  return f0.length ? f0[f0.length >> 1] : NaN;
}

test('demo corpus: espeak-ng + sox, deterministic for a seed, ShEMO-style manifest, emotions differ in prosody', async () => {
  const have = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!have('espeak-ng') || !have('sox')) {
    console.log('  (espeak-ng or sox not installed: demo corpus test skipped; node tools/setup.mjs --demo installs them)');
    return;
  }
  const sentences = readSentences(defaultSentencesFile());
  assert.ok(sentences.length >= 40, `${sentences.length} demo sentences`);
  assert.ok(sentences.every((l) => /[\u0600-\u06ff]/.test(l) && l.split(/\s+/).length <= 6), 'short Persian sentences');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-demo-'));
  try {
    const opts = { seed: 7, speakers: 4, sentencesPerEmotion: 2 };
    const t0 = Date.now();
    const a = await synthesizeDemoCorpus(path.join(dir, 'a'), opts);
    const secs = (Date.now() - t0) / 1000;
    assert.is(a.items.length, 4 * 5 * 2);
    assert.not.ok(a.reused);
    const b = await synthesizeDemoCorpus(path.join(dir, 'b'), opts);
    for (let i = 0; i < a.items.length; i++) assert.ok(fs.readFileSync(a.items[i].path).equals(fs.readFileSync(b.items[i].path)), `${a.items[i].id} identical across runs`);
    const again = await synthesizeDemoCorpus(path.join(dir, 'a'), opts);
    assert.ok(again.reused, 'same options: reused');
    const other = await synthesizeDemoCorpus(path.join(dir, 'c'), { ...opts, seed: 8, speakers: 2, sentencesPerEmotion: 1 });
    assert.not.ok(fs.readFileSync(other.items[0].path).equals(fs.readFileSync(a.items[0].path)), 'another seed, other audio');

    const ds = loadDataset({ source: a.manifest });
    assert.is(ds.kind, 'shemo');
    assert.equal(ds.items.map((it) => it.id), a.items.map((it) => it.id));
    assert.equal([...new Set(ds.items.map((it) => it.speaker))], ['F01', 'M01', 'F02', 'M02']);
    assert.equal(labelCounts(ds.items), { anger: 8, happiness: 8, neutral: 8, sadness: 8, surprise: 8 });
    assert.ok(ds.items.every((it) => /^[FM]\d\d[AHNSW]\d\d$/.test(it.id) && it.transcript && it.gender));
    const split = makeSplits(ds.items, { method: 'speaker', testFraction: 0.25, validFraction: 0, seed: 1 });
    assert.is(new Set(applySplits(ds.items, split).test.map((it) => it.speaker)).size, 1);
    const prep = prepareDataset({ dataset: { source: a.manifest }, split: { method: 'speaker', testFraction: 0.25, validFraction: 0.34, seed: 2 }, splitFile: path.join(dir, 'split.json') });
    assert.equal(prep.labels.labels, ['anger', 'happiness', 'neutral', 'sadness', 'surprise']);
    assert.equal([prep.train.length, prep.valid.length, prep.test.length], [20, 10, 10]);
    assert.ok(prep.createdSplit && fs.existsSync(path.join(dir, 'split.csv')));
    assert.not.ok(prepareDataset({ dataset: { source: a.manifest }, splitFile: path.join(dir, 'split.json') }).createdSplit);

    const stats: Record<string, { dur: number[]; f0: number[] }> = {};
    for (const it of ds.items) {
      const w = decodeWav(new Uint8Array(fs.readFileSync(it.path)), it.path);
      assert.is(w.sampleRate, 16000);
      assert.is(w.channels.length, 1);
      const x = w.channels[0];
      const s = (stats[it.label] ??= { dur: [], f0: [] });
      s.dur.push(x.length / 16000);
      s.f0.push(medianPitch(x, 16000));
    }
    const mean = (v: number[]) => v.reduce((p, q) => p + q, 0) / v.length;
    const summary = Object.entries(stats).map(([l, s]) => `${l} ${mean(s.dur).toFixed(2)} s ${mean(s.f0).toFixed(0)} Hz`);
    console.log(`  demo corpus: ${a.items.length} clips in ${secs.toFixed(1)} s, ${(a.audioSeconds / a.items.length).toFixed(2)} s per clip; ${summary.join(', ')}`);
    for (const s of Object.values(stats)) assert.ok(s.dur.every((d) => d > 0.5 && d < 4.5), `clip durations ${s.dur}`);
    assert.ok(mean(stats.sadness.dur) > mean(stats.neutral.dur) && mean(stats.neutral.dur) > mean(stats.anger.dur), 'sadness slow, anger fast');
    assert.ok(mean(stats.happiness.f0) > mean(stats.neutral.f0) && mean(stats.neutral.f0) > mean(stats.sadness.f0), 'happiness high, sadness low pitch');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
