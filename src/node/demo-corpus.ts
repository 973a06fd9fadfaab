// A small synthetic Persian emotional-speech corpus for the demo: espeak-ng (-v fa) speaks the sentences of
// data/demo_sentences.txt, sox shapes them, and this module adds mild noise and writes 16 kHz mono 16-bit WAV files
// plus a Modified-ShEMO-style manifest (manifest.json), with ShEMO-style names (F01A01: speaker F01, anger, clip 1)
// so the speaker-independent split works on it as on the real corpus.
//
// Emotions are acted by prosody, the cues real emotional speech carries (and which wav2vec2 features can see):
//   anger      fast, slightly raised pitch, flat range, loud, harsh (sox overdrive + treble boost)
//   happiness  fast, high pitch, widest range, bright (treble), deep 8 Hz tremolo
//   neutral    speaker's default rate, pitch and range
//   sadness    slow, low pitch, flat range, quiet, dull (low-pass) and trembling (slow deep tremolo)
//   surprise   slow, near-normal pitch at first, question intonation (؟) and a steep rising pitch bend over the last part
// Speakers: espeak voice variants (fa+f1..f5 for female ids, fa+m1..m7 for male) with a per-speaker pitch offset and
// rate factor; each clip also gets a small random jitter of rate and pitch, and white noise at 25-35 dB SNR.
//
// Deterministic for a seed: espeak-ng and sox (-R, float output, so no dither) are deterministic, and every random
// choice comes from mulberry32 streams derived from (seed, speaker, emotion, clip). Fast: clips are made by `jobs`
// pipelines in parallel (default 2), each running espeak-ng then sox (~0.1 s per clip).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeWav, encodeWav } from '../audio/wav.js';
import { parseShemoManifest, toShemoManifest, type DataItem } from '../data/manifest.js';
import { deriveSeed, mulberry32, randNormal, shuffleInPlace, type Rng } from '../data/random.js';

export const DEMO_EMOTIONS = ['anger', 'happiness', 'neutral', 'sadness', 'surprise'] as const;
export type DemoEmotion = (typeof DEMO_EMOTIONS)[number];
const LETTER: Record<DemoEmotion, string> = { anger: 'A', happiness: 'H', neutral: 'N', sadness: 'S', surprise: 'W' };

interface Recipe {
  rate: number; // factor on the speaker's words per minute
  pitch: number; // added to espeak's 0-99 pitch
  range: 'x-low' | 'low' | 'medium' | 'high' | 'x-high'; // SSML prosody range
  amplitude: number; // espeak -a
  peak: number; // output peak level before noise
  sox: (duration: number) => string[];
  question?: boolean;
}

const RECIPES: Record<DemoEmotion, Recipe> = {
  // flat, fast, harsh shouting: the distortion and treble make its spectrum unlike any other class
  anger: { rate: 1.3, pitch: 4, range: 'low', amplitude: 170, peak: 0.9, sox: () => ['overdrive', '30', 'treble', '+8'] },
  // high and sing-song, with a deep 8 Hz tremolo (pitch alone would be confused with a high-pitched speaker)
  happiness: { rate: 1.1, pitch: 24, range: 'x-high', amplitude: 120, peak: 0.7, sox: () => ['treble', '+3', 'tremolo', '8', '45'] },
  neutral: { rate: 1.0, pitch: 0, range: 'medium', amplitude: 100, peak: 0.6, sox: () => [] },
  sadness: { rate: 0.72, pitch: -14, range: 'x-low', amplitude: 70, peak: 0.3, sox: () => ['lowpass', '2000', 'tremolo', '5', '40'] },
  surprise: {
    rate: 0.85,
    pitch: 6,
    range: 'high',
    amplitude: 120,
    peak: 0.7,
    question: true,
    // bend: from 40% of the way through the speech, rise 12 semitones over the next 55%
    sox: (d) => ['bend', `${(0.4 * d).toFixed(3)},1200,${(0.55 * d).toFixed(3)}`],
  },
};

const FEMALE_VARIANTS = ['f1', 'f2', 'f3', 'f4', 'f5'];
const MALE_VARIANTS = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'];

export interface DemoCorpusOptions {
  /** default 1 */
  seed?: number;
  /** number of speakers, alternately female and male (default 20) */
  speakers?: number;
  /** sentences per speaker and emotion (default 6: 20 speakers x 5 emotions x 6 = 600 clips) */
  sentencesPerEmotion?: number;
  /** the sentences (default: data/demo_sentences.txt) */
  sentences?: string[];
  sentencesFile?: string;
  /** parallel espeak-ng/sox pipelines (default 2) */
  jobs?: number;
  /** SNR range of the added white noise in dB (default [25, 35]) */
  noiseSnrDb?: [number, number];
  espeak?: string;
  sox?: string;
  /** regenerate even if outDir holds a corpus made with the same options */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface DemoCorpus {
  /** the manifest (Modified ShEMO JSON format) */
  manifest: string;
  items: DataItem[];
  /** wall-clock seconds spent (0 when reused) */
  seconds: number;
  /** total audio duration in seconds */
  audioSeconds: number;
  reused: boolean;
}

interface Speaker {
  id: string;
  gender: 'female' | 'male';
  voice: string;
  pitch: number;
  wpm: number;
}

interface ClipJob {
  name: string;
  speaker: Speaker;
  emotion: DemoEmotion;
  sentenceIndex: number;
  text: string;
}

/** Find data/demo_sentences.txt from the module's location (src/node, build/, build/test) or the working directory. */
export function defaultSentencesFile(): string {
  const starts = [path.dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const s of starts) {
    let d = s;
    for (let i = 0; i < 5; i++) {
      const f = path.join(d, 'data', 'demo_sentences.txt');
      if (fs.existsSync(f)) return f;
      d = path.dirname(d);
    }
  }
  throw new Error('data/demo_sentences.txt not found (looked upward from the module and the working directory); pass sentences or sentencesFile');
}

export function readSentences(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

function run(cmd: string, args: string[], input: Uint8Array | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'ENOENT' ? `${cmd} is not installed (needed for the demo corpus; node tools/setup.mjs --demo installs espeak-ng and sox)` : `${cmd}: ${e.message}`)));
    p.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${cmd} ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')} exited with ${code}: ${Buffer.concat(err).toString().trim().slice(0, 500)}`));
    });
    p.stdin.on('error', () => {}); // a failing process may close stdin early; 'close' reports it
    if (input) p.stdin.end(input);
    else p.stdin.end();
  });
}

/** Trim leading/trailing silence (below 2% of the peak), keeping a 40 ms margin. */
function trimSilence(x: Float32Array, rate: number): Float32Array {
  let peak = 0;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  const th = peak * 0.02;
  let a = 0;
  let b = x.length - 1;
  while (a < x.length && Math.abs(x[a]) < th) a++;
  while (b > a && Math.abs(x[b]) < th) b--;
  const margin = Math.round(0.04 * rate);
  return x.slice(Math.max(0, a - margin), Math.min(x.length, b + 1 + margin));
}

async function synthesizeClip(job: ClipJob, rng: Rng, opts: Required<Pick<DemoCorpusOptions, 'noiseSnrDb' | 'espeak' | 'sox'>>): Promise<Float32Array> {
  const r = RECIPES[job.emotion];
  const wpm = Math.round(job.speaker.wpm * r.rate * (1 + 0.05 * (2 * rng() - 1)));
  const pitch = Math.max(0, Math.min(99, Math.round(job.speaker.pitch + r.pitch + 4 * (2 * rng() - 1))));
  const text = r.question ? `${job.text}؟` : `${job.text}.`;
  const ssml = `<speak><prosody range="${r.range}">${text}</prosody></speak>`;
  const wav = await run(opts.espeak, ['-v', `fa+${job.speaker.voice}`, '-s', String(wpm), '-p', String(pitch), '-a', String(r.amplitude), '-m', '-z', '--stdout', ssml], null);
  // espeak-ng leaves up to a second of silence at the end: trim it before the effects, so that time-based ones (the
  // surprise pitch bend) land on the speech
  const spoken = decodeWav(new Uint8Array(wav.buffer, wav.byteOffset, wav.byteLength), `espeak-ng output for ${job.name}`);
  const voiced = trimSilence(spoken.channels[0], spoken.sampleRate);
  const dur = voiced.length / spoken.sampleRate;
  // 12 dB of headroom first (sox clips even float output at full scale); the level is set below
  const raw = await run(opts.sox, ['-R', '-t', 'wav', '-', '-t', 'raw', '-e', 'floating-point', '-b', '32', '-c', '1', '-', 'gain', '-12', ...r.sox(dur), 'rate', '16000'], encodeWav(voiced, spoken.sampleRate, { sampleFormat: 'f32' }));
  const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength - (raw.byteLength % 4)));
  let peak = 0;
  let power = 0;
  for (const v of x) {
    peak = Math.max(peak, Math.abs(v));
    power += v * v;
  }
  const g = (r.peak * (0.85 + 0.15 * rng())) / Math.max(peak, 1e-9);
  power = (power * g * g) / Math.max(1, x.length);
  const snr = opts.noiseSnrDb[0] + (opts.noiseSnrDb[1] - opts.noiseSnrDb[0]) * rng();
  const sigma = Math.sqrt(power / 10 ** (snr / 10));
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = Math.max(-1, Math.min(1, x[i] * g + sigma * randNormal(rng)));
  return y;
}

/** Plan the corpus: speakers and which sentences each speaks in each emotion. */
export function planDemoCorpus(sentences: readonly string[], opts: { seed: number; speakers: number; sentencesPerEmotion: number }): ClipJob[] {
  if (sentences.length < opts.sentencesPerEmotion) throw new Error(`demo corpus: ${sentences.length} sentences, but ${opts.sentencesPerEmotion} per speaker and emotion were asked for`);
  const jobs: ClipJob[] = [];
  let f = 0;
  let m = 0;
  for (let s = 0; s < opts.speakers; s++) {
    const rng = mulberry32(deriveSeed(opts.seed, 'speaker', s));
    const female = s % 2 === 0;
    const n = female ? ++f : ++m;
    const speaker: Speaker = {
      id: `${female ? 'F' : 'M'}${String(n).padStart(2, '0')}`,
      gender: female ? 'female' : 'male',
      voice: female ? FEMALE_VARIANTS[(n - 1) % FEMALE_VARIANTS.length] : MALE_VARIANTS[(n - 1) % MALE_VARIANTS.length],
      pitch: Math.round(50 + 16 * (rng() - 0.5)),
      wpm: Math.round(165 * (0.9 + 0.2 * rng())),
    };
    for (const emotion of DEMO_EMOTIONS) {
      const order = shuffleInPlace(
        sentences.map((_, i) => i),
        mulberry32(deriveSeed(opts.seed, 'sentences', speaker.id, emotion)),
      ).slice(0, opts.sentencesPerEmotion);
      order.forEach((si, k) => jobs.push({ name: `${speaker.id}${LETTER[emotion]}${String(k + 1).padStart(2, '0')}`, speaker, emotion, sentenceIndex: si, text: sentences[si] }));
    }
  }
  return jobs;
}

/**
 * Synthesize the demo corpus into outDir (wav/*.wav + manifest.json + demo_corpus.json describing how it was made).
 * A corpus already there made with the same options is reused unless `force`.
 */
export async function synthesizeDemoCorpus(outDir: string, opts: DemoCorpusOptions = {}): Promise<DemoCorpus> {
  const seed = opts.seed ?? 1;
  const speakers = opts.speakers ?? 20;
  const perEmotion = opts.sentencesPerEmotion ?? 6;
  const sentences = opts.sentences ?? readSentences(opts.sentencesFile ?? defaultSentencesFile());
  const noiseSnrDb = opts.noiseSnrDb ?? [25, 35];
  const tools = { noiseSnrDb, espeak: opts.espeak ?? 'espeak-ng', sox: opts.sox ?? 'sox' };
  const recipe = { version: 2, seed, speakers, perEmotion, noiseSnrDb, sentences, recipes: Object.fromEntries(DEMO_EMOTIONS.map((e) => [e, { ...RECIPES[e], sox: RECIPES[e].sox(1) }])) };
  const hash = createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
  const manifest = path.join(outDir, 'manifest.json');
  const infoFile = path.join(outDir, 'demo_corpus.json');
  if (!opts.force && fs.existsSync(infoFile) && fs.existsSync(manifest)) {
    try {
      const info = JSON.parse(fs.readFileSync(infoFile, 'utf8'));
      if (info.hash === hash) {
        const items = parseShemoManifest(fs.readFileSync(manifest, 'utf8'), { root: outDir, name: manifest });
        if (items.every((it) => fs.existsSync(it.path))) return { manifest, items, seconds: 0, audioSeconds: info.audioSeconds ?? 0, reused: true };
      }
    } catch {
      // unreadable: make it again
    }
  }
  const t0 = Date.now();
  const plan = planDemoCorpus(sentences, { seed, speakers, sentencesPerEmotion: perEmotion });
  fs.mkdirSync(path.join(outDir, 'wav'), { recursive: true });
  const items: DataItem[] = new Array(plan.length);
  let next = 0;
  let done = 0;
  let samples = 0;
  let failed = false;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= plan.length || failed) return;
      const job = plan[i];
      const rng = mulberry32(deriveSeed(seed, 'clip', job.name));
      let y: Float32Array;
      try {
        y = await synthesizeClip(job, rng, tools);
      } catch (e) {
        failed = true; // the other pipelines stop after their current clip
        throw new Error(`demo corpus, clip ${job.name} (${job.emotion}, "${job.text}"): ${(e as Error).message}`);
      }
      const file = path.join(outDir, 'wav', `${job.name}.wav`);
      fs.writeFileSync(file, encodeWav(y, 16000));
      samples += y.length;
      items[i] = { id: job.name, path: file, label: job.emotion, speaker: job.speaker.id, gender: job.speaker.gender, transcript: job.text };
      opts.onProgress?.(++done, plan.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.jobs ?? 2) }, worker));
  const json = toShemoManifest(items, outDir);
  for (const job of plan) json[`${job.name}.wav`].text_name = `T${String(job.sentenceIndex + 1).padStart(2, '0')}`;
  fs.writeFileSync(manifest, `${JSON.stringify(json, null, 1)}\n`);
  const audioSeconds = samples / 16000;
  fs.writeFileSync(infoFile, `${JSON.stringify({ hash, ...recipe, clips: plan.length, audioSeconds }, null, 1)}\n`);
  return { manifest, items, seconds: (Date.now() - t0) / 1000, audioSeconds, reused: false };
}
