// Audio in: WAV decoding of every sample format (bytes written here), FLAC/MP3/Ogg Vorbis through the wasm decoders
// (tiny committed fixtures, made with sox and lamejs: a 440 Hz tone, left 0.6, right 0.2 amplitude), the resampler's
// pass-band flatness and stop-band suppression measured on tones, normalization against a float64 reference of
// Wav2Vec2FeatureExtractor's formula, and every bad-audio case raising an AudioError that names the file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AudioError, decodeAudio, decodeWav, encodeWav, mixToMono, prepareAudio, resample, Resampler, sniffFormat, validateSamples, zeroMeanUnitVar } from '../src/audio/index.js';
import { augment, addNoise, applyGain, speedPerturb } from '../src/audio/augment.js';
import { mulberry32 } from '../src/data/random.js';
import { readAudioFile } from '../src/node/audio-file.js';

const FIX = 'test/fixtures/audio';

function tone(freq: number, rate: number, n: number, amp = 0.5, phase = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate + phase);
  return x;
}

/** Amplitude of the component at `freq` by least squares on the middle 60% (edges carry the zero-padding transient). */
function amplitudeAt(y: Float32Array, freq: number, rate: number): number {
  const a = Math.floor(y.length * 0.2);
  const b = Math.floor(y.length * 0.8);
  let s = 0;
  let c = 0;
  let ss = 0;
  let cc = 0;
  let sc = 0;
  for (let i = a; i < b; i++) {
    const si = Math.sin((2 * Math.PI * freq * i) / rate);
    const ci = Math.cos((2 * Math.PI * freq * i) / rate);
    s += y[i] * si;
    c += y[i] * ci;
    ss += si * si;
    cc += ci * ci;
    sc += si * ci;
  }
  // solve the 2x2 normal equations [ss sc; sc cc] [p q]' = [s c]'
  const det = ss * cc - sc * sc;
  const p = (s * cc - c * sc) / det;
  const q = (c * ss - s * sc) / det;
  return Math.hypot(p, q);
}

function rmsMiddle(y: Float32Array): number {
  const a = Math.floor(y.length * 0.2);
  const b = Math.floor(y.length * 0.8);
  let s = 0;
  for (let i = a; i < b; i++) s += y[i] * y[i];
  return Math.sqrt(s / (b - a));
}

const db = (r: number) => 20 * Math.log10(r);

async function throwsAudioError(fn: () => unknown, file: string, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.instance(e, AudioError, `expected an AudioError, got ${String(e)}`);
    assert.ok((e as Error).message.startsWith(`${file}: `), `message names the file: ${(e as Error).message}`);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an AudioError for ${file} matching ${re}`);
}

test('WAV: every sample format decodes to the same samples, channels mix to mono', () => {
  const n = 997;
  const left = tone(440, 8000, n, 0.7);
  const right = tone(1000, 8000, n, 0.25);
  const formats = [8, 16, 24, 32, 'f32', 'f64'] as const;
  const quant: Record<string, number> = { 8: 1 / 128, 16: 1 / 32768, 24: 1 / 8388608, 32: 1 / 2147483648, f32: 1e-7, f64: 0 };
  for (const f of formats) {
    const bytes = encodeWav([left, right], 8000, { sampleFormat: f });
    const d = decodeWav(bytes, `x-${f}.wav`);
    assert.is(d.sampleRate, 8000);
    assert.is(d.channels.length, 2);
    assert.is(d.channels[0].length, n);
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(d.channels[0][i] - left[i]), Math.abs(d.channels[1][i] - right[i]));
    assert.ok(err <= quant[f] * 0.51 + 1e-9, `${f}: max error ${err} vs half a quantization step ${quant[f] / 2}`);
    const mono = mixToMono(d.channels);
    assert.ok(Math.abs(mono[123] - (d.channels[0][123] + d.channels[1][123]) / 2) < 1e-7, 'mono is the channel mean');
  }
  // 6 channels, exact 16-bit values, extreme codes
  const six = Array.from({ length: 6 }, (_, c) => Float32Array.from([-1, -0.5, 0, 0.5, (32767 - c) / 32768]));
  const d6 = decodeWav(encodeWav(six, 44100), 'six.wav');
  assert.is(d6.channels.length, 6);
  assert.equal(Array.from(d6.channels[5]), [-1, -0.5, 0, 0.5, 32762 / 32768]);
});

test('WAV: WAVE_FORMAT_EXTENSIBLE, big-endian RIFX, odd chunks, A-law/mu-law', () => {
  // extensible 24-bit stereo with a LIST chunk of odd length before data
  const frames = [0.5, -0.25, -1, 0.125];
  const body: number[] = [];
  for (const v of frames) {
    const q = Math.round(v * 8388608) | 0;
    const qq = Math.max(-8388608, Math.min(8388607, q));
    for (let c = 0; c < 2; c++) body.push(qq & 255, (qq >> 8) & 255, (qq >> 16) & 255);
  }
  const le32 = (v: number) => [v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255];
  const le16 = (v: number) => [v & 255, (v >> 8) & 255];
  const str = (s: string) => Array.from(s, (ch) => ch.charCodeAt(0));
  const guidTail = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
  const fmt = [...le16(0xfffe), ...le16(2), ...le32(48000), ...le32(48000 * 6), ...le16(6), ...le16(24), ...le16(22), ...le16(24), ...le32(3), ...le16(1), ...guidTail];
  const list = [...str('LIST'), ...le32(3), 1, 2, 3, 0];
  const chunks = [...str('WAVE'), ...str('fmt '), ...le32(fmt.length), ...fmt, ...list, ...str('data'), ...le32(body.length), ...body];
  const wav = Uint8Array.from([...str('RIFF'), ...le32(chunks.length), ...chunks]);
  const d = decodeWav(wav, 'ext.wav');
  assert.is(d.sampleRate, 48000);
  assert.equal(Array.from(d.channels[1]), [0.5, -0.25, -1, 0.125]);

  // RIFX: the same 16-bit file, big-endian
  const le = encodeWav(Float32Array.from([0.5, -0.5, 0.25]), 16000);
  const be = le.slice();
  be.set(str('RIFX'), 0);
  const swap16 = (at: number) => {
    const t = be[at];
    be[at] = be[at + 1];
    be[at + 1] = t;
  };
  const swap32 = (at: number) => {
    be.set([le[at + 3], le[at + 2], le[at + 1], le[at]], at);
  };
  swap32(4);
  swap32(16);
  swap16(20);
  swap16(22);
  swap32(24);
  swap32(28);
  swap16(32);
  swap16(34);
  swap32(40);
  for (let i = 44; i < be.length; i += 2) swap16(i);
  assert.equal(Array.from(decodeWav(be, 'be.wav').channels[0]), [0.5, -0.5, 0.25]);

  // G.711: A-law 0xd5 / mu-law 0xff are the codes for (near) zero; 0xaa / 0x80 are large positive values
  for (const [tag, codes, expect] of [
    [6, [0xd5, 0x2a, 0xaa], [8 / 32768, -32256 / 32768, 32256 / 32768]],
    [7, [0xff, 0x80, 0x00], [0, 32124 / 32768, -32124 / 32768]],
  ] as const) {
    const fmt7 = [...le16(tag), ...le16(1), ...le32(8000), ...le32(8000), ...le16(1), ...le16(8)];
    const c7 = [...str('WAVE'), ...str('fmt '), ...le32(16), ...fmt7, ...str('data'), ...le32(3), ...codes, 0];
    const w7 = Uint8Array.from([...str('RIFF'), ...le32(c7.length), ...c7]);
    const got = Array.from(decodeWav(w7, 'g711.wav').channels[0]);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(got[i] - expect[i]) < 1e-6, `G.711 tag ${tag} code ${codes[i]}: ${got[i]} vs ${expect[i]}`);
  }
});

test('FLAC, MP3, Ogg Vorbis decode through the wasm decoders; mono mix; resample to 16 kHz', async () => {
  for (const [file, format, rate, tol] of [
    ['tone-22050-stereo.flac', 'flac', 22050, 1e-3],
    ['tone-22050-stereo.ogg', 'ogg-vorbis', 22050, 0.03],
    ['tone-24000-stereo.mp3', 'mp3', 24000, 0.05],
  ] as const) {
    const bytes = new Uint8Array(fs.readFileSync(path.join(FIX, file)));
    assert.is(sniffFormat(bytes), format);
    const d = await decodeAudio(bytes, file);
    assert.is(d.format, format);
    assert.is(d.sampleRate, rate);
    assert.is(d.channels.length, 2);
    assert.ok(d.channels[0].length >= rate * 0.24, `${file}: ${d.channels[0].length} samples`);
    assert.ok(Math.abs(amplitudeAt(d.channels[0], 440, rate) - 0.6) < tol, `${file}: left amplitude ${amplitudeAt(d.channels[0], 440, rate)}`);
    assert.ok(Math.abs(amplitudeAt(d.channels[1], 440, rate) - 0.2) < tol, `${file}: right amplitude`);
    const p = await prepareAudio(bytes, file);
    assert.is(p.sampleRate, 16000);
    assert.is(p.sourceRate, rate);
    assert.is(p.sourceChannels, 2);
    assert.is(p.samples.length, Math.ceil((d.channels[0].length * 16000) / rate));
    assert.ok(Math.abs(amplitudeAt(p.samples, 440, 16000) - 0.4) < tol, `${file}: mono amplitude at 16 kHz ${amplitudeAt(p.samples, 440, 16000)}`);
  }
});

test('resampler: pass band within 0.1 dB, everything above the new Nyquist down >= 60 dB, no time shift', () => {
  const report: string[] = [];
  for (const from of [44100, 48000, 22050, 32000]) {
    const n = Math.round(from * 0.5);
    // below Nyquist (8 kHz): kept
    for (const f of [100, 1000, 4000, 7000]) {
      const y = resample(tone(f, from, n), from, 16000);
      assert.is(y.length, Math.ceil((n * 16000) / from));
      const g = db(amplitudeAt(y, f, 16000) / 0.5);
      report.push(`${from}->16k ${f} Hz: ${g.toFixed(4)} dB`);
      assert.ok(Math.abs(g) <= 0.1, `${from} Hz -> 16 kHz, ${f} Hz tone: ${g.toFixed(4)} dB`);
    }
    // above Nyquist: suppressed (whatever is left would alias into the band)
    for (const f of [8000, 8500, 9000, 10000, 15000]) {
      if (f >= from / 2) continue;
      const y = resample(tone(f, from, n), from, 16000);
      const s = db((rmsMiddle(y) * Math.SQRT2) / 0.5);
      report.push(`${from}->16k ${f} Hz: ${s.toFixed(1)} dB`);
      assert.ok(s <= -60, `${from} Hz -> 16 kHz, ${f} Hz tone leaks at ${s.toFixed(1)} dB`);
    }
  }
  // no delay: the resampled tone matches the analytic 16 kHz tone sample by sample (mid-clip)
  const y = resample(tone(1000, 44100, 22050, 0.5, 0.3), 44100, 16000);
  const ref = tone(1000, 16000, y.length, 0.5, 0.3);
  let err = 0;
  for (let i = 2000; i < y.length - 2000; i++) err = Math.max(err, Math.abs(y[i] - ref[i]));
  assert.ok(err < 1e-4, `sample-wise error vs the analytic tone ${err}`);
  // upsampling 8 kHz -> 16 kHz: tone kept, its image at 8000 - f suppressed
  const up = resample(tone(3000, 8000, 4001), 8000, 16000);
  assert.is(up.length, 8002);
  const keep = db(amplitudeAt(up, 3000, 16000) / 0.5);
  const image = db(amplitudeAt(up, 5000, 16000) / 0.5);
  report.push(`8k->16k 3000 Hz: ${keep.toFixed(4)} dB, image at 5000 Hz: ${image.toFixed(1)} dB`);
  assert.ok(Math.abs(keep) <= 0.1 && image <= -60, `upsampling: ${keep} dB kept, image ${image} dB`);
  // an odd rate pair (L > 4096 phases: interpolated table) keeps the same quality
  const odd = new Resampler(44101, 16000);
  const yo = odd.process(tone(7000, 44101, 22050));
  const go = db(amplitudeAt(yo, 7000, 16000) / 0.5);
  const so = db((rmsMiddle(odd.process(tone(9000, 44101, 22050))) * Math.SQRT2) / 0.5);
  report.push(`44101->16k 7000 Hz: ${go.toFixed(4)} dB, 9000 Hz: ${so.toFixed(1)} dB`);
  assert.ok(Math.abs(go) <= 0.1 && so <= -60, `odd ratio: ${go} / ${so}`);
  console.log(`  resampler: ${report.join('; ')}`);
  // speed: 1 s of 44.1 kHz audio
  const big = tone(440, 44100, 44100);
  const t0 = performance.now();
  resample(big, 44100, 16000);
  console.log(`  resample 1 s 44.1k -> 16k: ${(performance.now() - t0).toFixed(1)} ms`);
});

test('normalization matches Wav2Vec2FeatureExtractor (float64 reference), padding zeroed', () => {
  const r = mulberry32(7);
  const n = 1001;
  const x = new Float32Array(n + 37);
  for (let i = 0; i < n; i++) x[i] = Math.fround(0.3 + 0.2 * (r() - 0.5) + 0.1 * Math.sin(i));
  for (let i = n; i < x.length; i++) x[i] = 5; // padding must not count
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i] - mean) ** 2;
  v /= n;
  const y = zeroMeanUnitVar(x, n);
  let err = 0;
  for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(y[i] - (x[i] - mean) / Math.sqrt(v + 1e-7)));
  assert.ok(err < 1e-6, `max error ${err}`);
  for (let i = n; i < x.length; i++) assert.is(y[i], 0);
  let m2 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    m2 += y[i];
    s2 += y[i] * y[i];
  }
  assert.ok(Math.abs(m2 / n) < 1e-6 && Math.abs(s2 / n - 1) < 1e-4, 'zero mean, unit variance');
  // a constant clip becomes zeros, not NaN
  assert.ok(zeroMeanUnitVar(new Float32Array(500).fill(0.2)).every((z) => z === 0));
});

test('bad audio: a clear AudioError naming the file', async () => {
  const good = encodeWav(tone(440, 16000, 1600), 16000);
  await throwsAudioError(() => decodeAudio(new Uint8Array(0), 'empty.wav'), 'empty.wav', /empty file/);
  await throwsAudioError(() => decodeAudio(good.slice(0, 1000), 'cut.wav'), 'cut.wav', /truncated: data chunk declares 3200 bytes but only 956/);
  await throwsAudioError(() => decodeAudio(good.slice(0, 30), 'nofmt.wav'), 'nofmt.wav', /truncated fmt chunk/);
  // streaming writers' placeholder sizes (espeak-ng --stdout writes 0x7FFFF000) are not truncation
  for (const placeholder of [0x7ffff000, 0xffffffff]) {
    const streamed = good.slice();
    new DataView(streamed.buffer).setUint32(40, placeholder, true);
    assert.is((await decodeAudio(streamed, 'stream.wav')).channels[0].length, 1600);
  }
  await throwsAudioError(() => decodeAudio(new TextEncoder().encode('hello, this is not audio at all'), 'notes.mp3'), 'notes.mp3', /unknown audio format/);
  const odd = good.slice();
  odd[20] = 0x55; // format tag 0x55 (MP3-in-WAV)
  await throwsAudioError(() => decodeAudio(odd, 'odd.wav'), 'odd.wav', /unsupported WAV encoding/);
  // a WAV with 0 frames, one too short for the model, one with NaN / Inf
  await throwsAudioError(() => prepareAudio(encodeWav(new Float32Array(0), 16000), 'zero.wav'), 'zero.wav', /no audio samples/);
  await throwsAudioError(() => prepareAudio(encodeWav(tone(440, 16000, 399), 16000), 'short.wav'), 'short.wav', /too short: 399 samples at 16000 Hz \(24\.9 ms\), the minimum is 400/);
  // 44.1 kHz: 1102 samples -> 400 at 16 kHz passes; 1100 -> 400 (ceil) passes; 1000 -> 363 fails
  await prepareAudio(encodeWav(tone(440, 44100, 1100), 44100), 'ok.wav');
  await throwsAudioError(() => prepareAudio(encodeWav(tone(440, 44100, 1000), 44100), 'short44.wav'), 'short44.wav', /363 samples at 16000 Hz/);
  const nan = tone(440, 16000, 2000);
  nan[17] = NaN;
  nan[900] = Infinity;
  await throwsAudioError(() => prepareAudio(encodeWav(nan, 16000, { sampleFormat: 'f32' }), 'nan.wav'), 'nan.wav', /2 non-finite sample\(s\) \(NaN\/Inf\), the first at index 17/);
  assert.throws(() => validateSamples(new Float32Array(10), 'direct.wav', { minSamples: 400 }), /direct\.wav: too short: 10 samples, the minimum is 400/);

  // compressed formats: truncated and corrupted files are caught, not silently shortened
  for (const file of ['tone-22050-stereo.flac', 'tone-22050-stereo.ogg', 'tone-24000-stereo.mp3']) {
    const bytes = new Uint8Array(fs.readFileSync(path.join(FIX, file)));
    await throwsAudioError(() => decodeAudio(bytes.slice(0, Math.floor(bytes.length * 0.6)), `cut-${file}`), `cut-${file}`, /truncated|no audio|corrupt/);
  }
  const flac = new Uint8Array(fs.readFileSync(path.join(FIX, 'tone-22050-stereo.flac')));
  const bad = flac.slice();
  for (let i = Math.floor(bad.length / 2); i < Math.floor(bad.length / 2) + 300; i++) bad[i] ^= 0x5a;
  await throwsAudioError(() => decodeAudio(bad, 'garbled.flac'), 'garbled.flac', /truncated or corrupt|corrupt|no audio/);
  // Ogg Opus header: a clear 'not supported'
  const opus = Uint8Array.from([...'OggS'].map((c) => c.charCodeAt(0)).concat([0, 2, ...new Array(20).fill(0), 1, 19], [...'OpusHead'].map((c) => c.charCodeAt(0)), new Array(11).fill(0)));
  await throwsAudioError(() => decodeAudio(opus, 'voice.opus'), 'voice.opus', /Ogg Opus is not supported/);
});

test('Node edge: readAudioFile reads, decodes and resamples; errors name the path', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-audio-'));
  try {
    const p = path.join(dir, 'a.wav');
    fs.writeFileSync(p, encodeWav([tone(300, 48000, 4800), tone(300, 48000, 4800)], 48000, { sampleFormat: 24 }));
    const a = await readAudioFile(p);
    assert.is(a.sampleRate, 16000);
    assert.is(a.samples.length, 1600);
    assert.ok(Math.abs(amplitudeAt(a.samples, 300, 16000) - 0.5) < 1e-3);
    await throwsAudioError(() => readAudioFile(path.join(dir, 'missing.wav')), path.join(dir, 'missing.wav'), /cannot read/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('augmentation: off by default, seeded, gain / SNR / speed as asked', () => {
  const x = tone(500, 16000, 16000, 0.3);
  assert.is(augment(x, mulberry32(1), undefined), x);
  assert.is(augment(x, mulberry32(1), {}), x);
  const g = applyGain(x, -6);
  assert.ok(Math.abs(db(amplitudeAt(g, 500, 16000) / 0.3) + 6) < 1e-3);
  const noisy = addNoise(x, 10, mulberry32(3));
  let pn = 0;
  let ps = 0;
  for (let i = 0; i < x.length; i++) {
    pn += (noisy[i] - x[i]) ** 2;
    ps += x[i] * x[i];
  }
  assert.ok(Math.abs(10 * Math.log10(ps / pn) - 10) < 0.2, `SNR ${10 * Math.log10(ps / pn)} dB`);
  const fast = speedPerturb(x, 1.1);
  assert.is(fast.length, Math.ceil(16000 / 1.1));
  assert.ok(Math.abs(amplitudeAt(fast, 550, 16000) - 0.3) < 1e-3, 'speed 1.1 raises the pitch by 10%');
  const opts = { speeds: [0.9, 1.1], gainDb: [-3, 3] as [number, number], noiseSnrDb: [15, 25] as [number, number] };
  const a1 = augment(x, mulberry32(42), opts);
  const a2 = augment(x, mulberry32(42), opts);
  assert.equal(Array.from(a1), Array.from(a2), 'same seed, same result');
  assert.not.equal(Array.from(augment(x, mulberry32(43), opts)), Array.from(a1));
});

test.run();
