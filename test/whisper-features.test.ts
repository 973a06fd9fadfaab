// Whisper's log-mel feature extractor: against the shared fixture made by the real Hugging Face WhisperFeatureExtractor
// (window, mel filter bank and input_features from the fixture's raw waveforms), and self-made checks that can fail:
// the FFT against a direct DFT, the filter bank against the independent librosa-style formula of older transformers,
// the exact log-mel of pure on-bin tones (the Hann window's spectrum is known in closed form), where off-bin tones
// land, padding and truncation, the 128-bin variant, and hostile preprocessor configs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { FFT } from '../src/model/whisper/fft.js';
import {
  WhisperFeatureExtractor,
  melFilterBank,
  melFilterEdgesHz,
  parseWhisperFeatureExtractorConfig,
  periodicHann,
} from '../src/model/whisper/features.js';
import { openTensorFile } from '../src/node/modeldir.js';
import type { TensorEntry } from '../src/io/source.js';
import { rng } from './helpers.js';

const SHARED = '../shared/fixtures/whisper_tiny_cls';
const haveShared = fs.existsSync(path.join(SHARED, 'reference.safetensors'));
const sharedTest = haveShared ? test : test.skip;

async function readF64(e: TensorEntry): Promise<Float64Array> {
  if (e.dtype !== 'F64') return Float64Array.from(await e.read());
  const raw = await e.readRaw();
  const copy = raw.slice();
  return new Float64Array(copy.buffer, 0, raw.byteLength / 8);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length, 'lengths');
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

sharedTest('fixture: window, mel filters and input_features (from the raw waveforms) match Hugging Face', async () => {
  const fx = WhisperFeatureExtractor.fromJson(fs.readFileSync(path.join(SHARED, 'preprocessor_config.json'), 'utf8'), 'preprocessor_config.json');
  assert.equal(fx.config.warnings, []);
  const src = await openTensorFile(path.join(SHARED, 'reference.safetensors'));
  try {
    const get = (n: string) => {
      const e = src.entries.get(n);
      if (!e) throw new Error(`reference.safetensors lacks ${n}`);
      return e;
    };
    const window = await readF64(get('feature_extractor.window'));
    const windowErr = maxAbsDiff(fx.window, window);
    assert.ok(windowErr < 1e-15, `window max abs diff ${windowErr}`);
    const filters = await readF64(get('feature_extractor.mel_filters'));
    assert.equal([...get('feature_extractor.mel_filters').shape], [201, 80]);
    const filterErr = maxAbsDiff(fx.melFilters, filters) / maxAbs(filters);
    assert.ok(filterErr < 1e-12, `mel filters max rel diff ${filterErr}`);

    const ref = await readF64(get('input_features'));
    assert.equal([...get('input_features').shape], [2, 80, 3000]);
    const lengths = await readF64(get('input_lengths'));
    const waves = [await get('raw_waveform.0').read(), await get('raw_waveform.1').read()];
    assert.equal(waves.map((w) => w.length), [...lengths]);
    const t0 = performance.now();
    const { data, shape } = fx.batch(waves);
    const ms = performance.now() - t0;
    assert.equal(shape, [2, 80, 3000]);
    const err = maxAbsDiff(data, ref);
    assert.ok(err <= 1e-5, `input_features max abs diff ${err}`);
    // the manifest's facts about the padding: constant from frame ceil((len + 200) / 160), value (max - 8 + 4) / 4
    for (let b = 0; b < 2; b++) {
      const clip = data.subarray(b * 240000, (b + 1) * 240000);
      let max = -Infinity;
      let min = Infinity;
      for (const v of clip) {
        max = Math.max(max, v);
        min = Math.min(min, v);
      }
      assert.ok(Math.abs(max - 2 - min) < 1e-6, `clip ${b}: min ${min} = max ${max} - 2`);
      const first = Math.ceil((waves[b].length + 200) / 160);
      for (let m = 0; m < 80; m++) {
        assert.is(clip[m * 3000 + first], min);
        assert.is(clip[m * 3000 + 2999], min);
      }
      let someAbove = false;
      for (let m = 0; m < 80; m++) someAbove ||= clip[m * 3000 + first - 1] > min;
      assert.ok(someAbove, `clip ${b}: frame ${first - 1} still sees audio`);
    }
    console.log(`fixture input_features: max abs diff ${err.toExponential(2)} (2 clips, ${ms.toFixed(0)} ms); mel filters rel ${filterErr.toExponential(2)}`);
  } finally {
    await src.close();
  }
});

test('FFT: equals a direct float64 DFT for power-of-two and other lengths', () => {
  for (const n of [1, 2, 3, 7, 16, 64, 100, 400, 401, 1000]) {
    const r = rng(n);
    const xr = Float64Array.from({ length: n }, () => r() - 0.5);
    const xi = Float64Array.from({ length: n }, () => r() - 0.5);
    const re = xr.slice();
    const im = xi.slice();
    new FFT(n).forward(re, im);
    let err = 0;
    let scale = 0;
    for (let k = 0; k < n; k++) {
      let sr = 0;
      let si = 0;
      for (let j = 0; j < n; j++) {
        const a = (-2 * Math.PI * ((j * k) % n)) / n;
        sr += xr[j] * Math.cos(a) - xi[j] * Math.sin(a);
        si += xr[j] * Math.sin(a) + xi[j] * Math.cos(a);
      }
      err = Math.max(err, Math.abs(re[k] - sr), Math.abs(im[k] - si));
      scale = Math.max(scale, Math.abs(sr), Math.abs(si));
    }
    assert.ok(err <= 1e-13 * Math.max(scale, 1), `n=${n}: max abs err ${err} (scale ${scale})`);
  }
  assert.throws(() => new FFT(0), /length 0/);
});

/** The filter bank as older transformers/librosa wrote it: mel points from 0 to 45.245640471924965 (= mel(8000 Hz)),
 * linear part f = 200/3 mel, log part 1000 exp(ln(6.4)/27 (mel - 15)), ramps against rfftfreq, Slaney enorm. */
function librosaStyleBank(nMels: number, nFft: number, sr: number): Float64Array {
  const bins = 1 + Math.floor(nFft / 2);
  const fftfreqs = Array.from({ length: bins }, (_, k) => (k * sr) / nFft);
  const maxMel = 45.245640471924965;
  const fSp = 200 / 3;
  const minLogMel = 1000 / fSp;
  const logstep = Math.log(6.4) / 27;
  const melF = Array.from({ length: nMels + 2 }, (_, i) => {
    const mel = (maxMel * i) / (nMels + 1);
    return mel >= minLogMel ? 1000 * Math.exp(logstep * (mel - minLogMel)) : fSp * mel;
  });
  const out = new Float64Array(bins * nMels);
  for (let i = 0; i < nMels; i++) {
    const enorm = 2 / (melF[i + 2] - melF[i]);
    for (let k = 0; k < bins; k++) {
      const lower = -(melF[i] - fftfreqs[k]) / (melF[i + 1] - melF[i]);
      const upper = (melF[i + 2] - fftfreqs[k]) / (melF[i + 2] - melF[i + 1]);
      out[k * nMels + i] = Math.max(0, Math.min(lower, upper)) * enorm;
    }
  }
  return out;
}

test('mel filter bank: equals the independent librosa-style formula (80 and 128 bins), no empty filter, unit-ish area', () => {
  for (const mels of [80, 128]) {
    const ours = melFilterBank(201, mels, 16000);
    const ref = librosaStyleBank(mels, 400, 16000);
    const err = maxAbsDiff(ours, ref) / maxAbs(ref);
    assert.ok(err < 1e-12, `${mels} bins: rel diff ${err}`);
    const edges = melFilterEdgesHz(mels);
    assert.ok(Math.abs(edges[0]) < 1e-12 && Math.abs(edges[mels + 1] - 8000) < 1e-9, 'edges span 0..8000 Hz');
    for (let m = 0; m < mels; m++) {
      let sum = 0;
      for (let k = 0; k < 201; k++) {
        const w = ours[k * mels + m];
        assert.ok(w >= 0);
        // weights are zero outside the filter's support (edge m, edge m+2)
        if (k * 40 <= edges[m] || k * 40 >= edges[m + 2]) assert.is(w, 0, `filter ${m} bin ${k}`);
        sum += w * 40; // Hz per bin
      }
      assert.ok(sum > 0, `filter ${m} of ${mels} is empty`);
      // Slaney normalisation: a triangle of height 2/(width) has area 1; sampling at 40 Hz keeps it near 1 for wide ones
      if (edges[m + 2] - edges[m] > 400) assert.ok(Math.abs(sum - 1) < 0.02, `filter ${m}: area ${sum}`);
    }
  }
});

/** The exact log-mel (before the clip-wide floor) of an on-bin tone A sin(2 pi k0 t / n + phase) in a full frame: the
 * periodic Hann window's DFT is n/2 at 0 and -n/4 at +-1, so |X[k0]|^2 = (A n / 4)^2 and |X[k0 +- 1]|^2 = (A n / 8)^2. */
function expectedToneLogMel(bank: Float64Array, mels: number, k0: number, amp: number, n: number): Float64Array {
  const power = new Map([
    [k0, ((amp * n) / 4) ** 2],
    [k0 - 1, ((amp * n) / 8) ** 2],
    [k0 + 1, ((amp * n) / 8) ** 2],
  ]);
  const out = new Float64Array(mels);
  for (let m = 0; m < mels; m++) {
    let s = 0;
    for (const [k, p] of power) s += bank[k * mels + m] * p;
    out[m] = Math.log10(Math.max(s, 1e-10));
  }
  return out;
}

for (const mels of [80, 128]) {
  test(`pure on-bin tones over 30 s (${mels} bins): every full frame equals the closed-form log-mel`, () => {
    const fx = WhisperFeatureExtractor.fromJson({ feature_size: mels });
    assert.is(fx.numFrames, 3000);
    for (const [k0, amp] of [[25, 0.5], [100, 0.1], [7, 0.8]] as const) {
      const hz = k0 * 40;
      const wave = Float32Array.from({ length: 480000 }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / 16000 + 0.3));
      // the f32 samples are not exactly the sine: compare with a tolerance that covers f32 rounding (~1e-7 relative)
      const { data, frames } = fx.logMel(wave);
      const expectedLog = expectedToneLogMel(fx.melFilters, mels, k0, amp, 400);
      let peak = -Infinity;
      for (const v of expectedLog) peak = Math.max(peak, v);
      // the clip-wide max (which sets the floor) can come from the two edge frames, where the reflect padding breaks
      // the sine and spreads its energy: take it from the output, and check it is the steady peak to within 1e-3
      let clipMax = -Infinity;
      for (const v of data) clipMax = Math.max(clipMax, v);
      const clipMaxLog = clipMax * 4 - 4;
      assert.ok(clipMaxLog >= peak - 1e-6 && clipMaxLog - peak < 1e-3, `${hz} Hz: clip max ${clipMaxLog} vs steady peak ${peak}`);
      let worst = 0;
      for (let t = 2; t < frames - 2; t += 37) {
        for (let m = 0; m < mels; m++) {
          const expected = (Math.max(expectedLog[m], clipMaxLog - 8) + 4) / 4;
          // bins the tone does not reach are at the floor; f32 rounding noise there sits far below it
          worst = Math.max(worst, Math.abs(data[m * frames + t] - expected));
        }
      }
      assert.ok(worst < 1e-6, `${hz} Hz: worst ${worst}`);
      console.log(`${mels} bins, ${hz} Hz: worst ${worst.toExponential(1)}, edge-frame max above steady peak by ${(clipMaxLog - peak).toExponential(1)} decades`);
      // the peak bin is the filter whose support is centred nearest the tone
      let arg = 0;
      for (let m = 1; m < mels; m++) if (data[m * frames + 1500] > data[arg * frames + 1500]) arg = m;
      const edges = melFilterEdgesHz(mels);
      assert.ok(edges[arg] < hz && hz < edges[arg + 2], `${hz} Hz peaked in filter ${arg} (${edges[arg]}..${edges[arg + 2]} Hz)`);
    }
  });
}

test('off-bin tones: the energy lands in the mel filter covering the frequency, and nowhere far', () => {
  const fx = new WhisperFeatureExtractor();
  const edges = melFilterEdgesHz(80);
  for (const hz of [217, 1234.5, 3017, 6543]) {
    const wave = Float32Array.from({ length: 32000 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * hz * i) / 16000));
    const { data, frames } = fx.logMel(wave);
    const t = 100; // well inside the 2 s tone
    let arg = 0;
    for (let m = 1; m < 80; m++) if (data[m * frames + t] > data[arg * frames + t]) arg = m;
    assert.ok(edges[arg] < hz && hz < edges[arg + 2], `${hz} Hz peaked in filter ${arg} (${edges[arg]}..${edges[arg + 2]} Hz)`);
    // Hann side lobes fall fast: filters whose support is 300 Hz and more away are >= 4 decades (1.0 after /4) lower
    for (let m = 0; m < 80; m++) {
      if (edges[m] > hz + 300 || edges[m + 2] < hz - 300) {
        assert.ok(data[m * frames + t] < data[arg * frames + t] - 1.0, `${hz} Hz: filter ${m} too loud`);
      }
    }
  }
});

test('padding and truncation: 3000 frames for any length, a long clip is cut at 30 s, padding frames are the floor', () => {
  const fx = new WhisperFeatureExtractor();
  const r = rng(5);
  const noise = Float32Array.from({ length: 40 * 16000 }, () => r() - 0.5);
  for (const len of [1, 201, 400, 16000, 479999, 480000, 480001, 640000]) {
    const padded = fx.padOrTruncate(noise.subarray(0, len));
    assert.is(padded.length, 480000);
    assert.is(padded[Math.min(len, 480000) - 1], noise[Math.min(len, 480000) - 1]);
    if (len < 480000) assert.is(padded[len], 0);
    const { data, melBins, frames } = fx.logMel(noise.subarray(0, len));
    assert.is(melBins, 80);
    assert.is(frames, 3000);
    assert.is(data.length, 240000);
    assert.ok(data.every(Number.isFinite));
  }
  const cut = fx.logMel(noise).data;
  const first30 = fx.logMel(noise.subarray(0, 480000)).data;
  assert.equal(maxAbsDiff(cut, first30), 0, '40 s clip = its first 30 s');
  // a 1 s clip: floor from frame ceil((16000 + 200) / 160) = 102 on, not before
  const { data } = fx.logMel(noise.subarray(0, 16000));
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(Math.abs(min - (max - 2)) < 1e-12, 'floor = max - 8 before (x + 4) / 4');
  for (let m = 0; m < 80; m++) for (let t = 102; t < 3000; t++) assert.is(data[m * 3000 + t], min);
  assert.ok(data.subarray(0, 3000).slice(0, 102).some((v) => v > min));
  // a padding value other than 0 is what pads (HF pads with padding_value before the STFT)
  const fxPad = WhisperFeatureExtractor.fromJson({ padding_value: 0.25 });
  assert.is(fxPad.padOrTruncate([1, 2])[100], 0.25);
  assert.throws(() => fx.logMel([0, NaN]), /waveform: sample 1 is NaN/);
});

test('other sizes: chunk_length 2, hop 100, n_fft 512 (power of two) give HF frame counts; 128 bins', () => {
  const a = WhisperFeatureExtractor.fromJson({ chunk_length: 2, hop_length: 100, n_fft: 512, feature_size: 128 });
  // 1 + (32000 + 2*256 - 512) / 100 = 321 frames, last dropped
  assert.is(a.numFrames, 320);
  const wave = Float32Array.from({ length: 32000 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 1000 * i) / 16000));
  const { data, melBins, frames } = a.logMel(wave);
  assert.is(melBins, 128);
  assert.is(frames, 320);
  assert.is(data.length, 128 * 320);
  const edges = melFilterEdgesHz(128);
  let arg = 0;
  for (let m = 1; m < 128; m++) if (data[m * frames + 160] > data[arg * frames + 160]) arg = m;
  assert.ok(edges[arg] < 1000 && 1000 < edges[arg + 2], `1 kHz in filter ${arg}`);
});

test('preprocessor_config.json: HF defaults, and hostile values refused with the file and field named', () => {
  const d = parseWhisperFeatureExtractorConfig({}, 'p.json');
  assert.equal(
    [d.feature_size, d.sampling_rate, d.hop_length, d.chunk_length, d.n_fft, d.padding_value, d.n_samples, d.num_frames, d.return_attention_mask],
    [80, 16000, 160, 30, 400, 0, 480000, 3000, false],
  );
  assert.is(periodicHann(4)[2], 1);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ feature_size: 1e9 }, /p\.json: "feature_size" must be an integer in \[1, 512\]/],
    [{ feature_size: '80' }, /"feature_size"/],
    [{ n_fft: -1 }, /"n_fft"/],
    [{ n_fft: 1e7 }, /"n_fft"/],
    [{ hop_length: 0 }, /"hop_length"/],
    [{ hop_length: 1, feature_size: 512 }, /"hop_length" \(1\) with feature_size 512/],
    [{ chunk_length: 1e12 }, /"chunk_length"/],
    [{ chunk_length: 1.5 }, /"chunk_length"/],
    [{ sampling_rate: 1e9 }, /"sampling_rate"/],
    [{ n_fft: 40000, chunk_length: 1, sampling_rate: 16000 }, /"n_fft" \(40000\) needs more than n_fft\/2 samples/],
    [{ padding_side: 'left' }, /"padding_side"/],
    [{ padding_value: 'x' }, /"padding_value"/],
    [{ dither: 1e-5 }, /"dither"/],
    [{ feature_extractor_type: 'Wav2Vec2FeatureExtractor' }, /"feature_extractor_type"/],
  ];
  for (const [json, re] of bad) assert.throws(() => parseWhisperFeatureExtractorConfig(json, 'p.json'), re, JSON.stringify(json));
  assert.throws(() => parseWhisperFeatureExtractorConfig('{', 'p.json'), /p\.json: not valid JSON/);
  assert.throws(() => parseWhisperFeatureExtractorConfig([], 'p.json'), /p\.json: expected a JSON object/);
  const w = parseWhisperFeatureExtractorConfig({ n_samples: 123, nb_max_frames: 3000 }, 'p.json');
  assert.is(w.n_samples, 480000);
  assert.is(w.warnings.length, 1);
  assert.match(w.warnings[0], /"n_samples" is 123/);
});

test.run();
