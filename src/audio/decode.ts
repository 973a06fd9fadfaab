// Audio bytes -> float channels, for Node and browsers alike. The format is sniffed from the bytes (never from the
// file name): WAV by our own parser (wav.ts), FLAC, MP3 and Ogg Vorbis by the WebAssembly decoders of the
// wasm-audio-decoders project (@wasm-audio-decoders/flac, mpg123-decoder, @wasm-audio-decoders/ogg-vorbis), which embed
// their wasm and need no network or file access. Those decoders are lenient: a truncated or damaged stream usually
// decodes to fewer samples without any error, so each format gets a container-level check here (FLAC: STREAMINFO's
// sample count; Ogg: the last page is complete and marked end-of-stream; MP3: the last frame is complete).
// Hostile files: the sample rate in each header is checked before decoding (and the decoder's after), the stream is
// fed to the decoder in small slices and decoding stops once the output passes a bound derived from the file size
// (a few bytes of FLAC or Vorbis can claim minutes of audio), and anything the decoders throw (codec-parser 2.5.0,
// the newest release, throws "ReferenceError: logError is not defined" on some damaged Vorbis headers) becomes an
// AudioError naming the file.
import { AudioError } from './errors.js';
import { MAX_DECODED_SAMPLES, checkSampleCount, checkSampleRate } from './validate.js';
import { decodeWav, isWav, type DecodedAudio } from './wav.js';

export type { DecodedAudio } from './wav.js';

export type AudioFormat = 'wav' | 'flac' | 'mp3' | 'ogg-vorbis' | 'ogg-opus' | 'ogg-other' | 'unknown';

function ascii(b: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = 0; i < n && at + i < b.length; i++) s += String.fromCharCode(b[at + i]);
  return s;
}

/** Length of a leading ID3v2 tag (0 if none). */
function id3v2Length(b: Uint8Array): number {
  if (b.length < 10 || ascii(b, 0, 3) !== 'ID3') return 0;
  const size = ((b[6] & 0x7f) << 21) | ((b[7] & 0x7f) << 14) | ((b[8] & 0x7f) << 7) | (b[9] & 0x7f);
  const footer = b[5] & 0x10 ? 10 : 0;
  return 10 + size + footer;
}

interface MpegFrame {
  length: number;
}

const MPEG_BITRATES: Record<string, number[]> = {
  '1-1': [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  '1-2': [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  '1-3': [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  '2-1': [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  '2-2': [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  '2-3': [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};
const MPEG_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };

/** Parse an MPEG audio frame header at `at` (null when the bytes there are not one). */
function mpegFrameAt(b: Uint8Array, at: number): MpegFrame | null {
  if (at + 4 > b.length || b[at] !== 0xff || (b[at + 1] & 0xe0) !== 0xe0) return null;
  const version = (b[at + 1] >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
  const layerBits = (b[at + 1] >> 1) & 3; // 3: layer I, 2: II, 1: III
  const brIndex = b[at + 2] >> 4;
  const srIndex = (b[at + 2] >> 2) & 3;
  if (version === 1 || layerBits === 0 || brIndex === 0 || brIndex === 15 || srIndex === 3) return null; // free-format frames are not walked
  const layer = 4 - layerBits;
  const kbps = MPEG_BITRATES[`${version === 3 ? 1 : 2}-${layer}`][brIndex];
  const rate = MPEG_RATES[version][srIndex];
  const pad = (b[at + 2] >> 1) & 1;
  let length: number;
  if (layer === 1) length = (Math.floor((12 * kbps * 1000) / rate) + pad) * 4;
  else if (layer === 3 && version !== 3) length = Math.floor((72 * kbps * 1000) / rate) + pad;
  else length = Math.floor((144 * kbps * 1000) / rate) + pad;
  return { length };
}

function isMpegStartAt(b: Uint8Array, at: number): boolean {
  const f = mpegFrameAt(b, at);
  return f !== null && (at + f.length >= b.length || mpegFrameAt(b, at + f.length) !== null);
}

/** First offset (at or after `from`) holding two consecutive valid MPEG frame headers, or -1. */
function findMpegStart(b: Uint8Array, from: number): number {
  const limit = Math.min(b.length, from + 64 * 1024);
  for (let i = from; i < limit; i++) if (isMpegStartAt(b, i)) return i;
  return -1;
}

/** What the bytes are. */
export function sniffFormat(b: Uint8Array): AudioFormat {
  if (isWav(b)) return 'wav';
  if (ascii(b, 0, 4) === 'fLaC') return 'flac';
  if (ascii(b, 0, 4) === 'OggS') {
    const segments = b[26] ?? 0;
    const body = 27 + segments;
    if (ascii(b, body, 7) === '\x01vorbis') return 'ogg-vorbis';
    if (ascii(b, body, 8) === 'OpusHead') return 'ogg-opus';
    return 'ogg-other';
  }
  const id3 = id3v2Length(b);
  if (id3 > 0 && ascii(b, id3, 4) === 'fLaC') return 'flac';
  if (id3 > 0 ? findMpegStart(b, id3) >= 0 : isMpegStartAt(b, 0)) return 'mp3';
  return 'unknown';
}

function hexHead(b: Uint8Array): string {
  return Array.from(b.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ');
}

interface FlacStreamInfo {
  /** per channel; 0 = unknown */
  totalSamples: number;
  rate: number;
  channels: number;
}

/** FLAC STREAMINFO (sample rate, channels, total samples per channel), or null when there is none. */
function flacStreamInfo(b: Uint8Array): FlacStreamInfo | null {
  const at = ascii(b, 0, 4) === 'fLaC' ? 0 : id3v2Length(b);
  const d = at + 8; // 'fLaC', then a 4-byte metadata block header, then STREAMINFO
  if ((b[at + 4] & 0x7f) !== 0 || d + 18 > b.length) return null;
  return {
    totalSamples: (b[d + 13] & 0x0f) * 2 ** 32 + (((b[d + 14] << 24) | (b[d + 15] << 16) | (b[d + 16] << 8) | b[d + 17]) >>> 0),
    rate: (b[d + 10] << 12) | (b[d + 11] << 4) | (b[d + 12] >> 4),
    channels: ((b[d + 12] >> 1) & 7) + 1,
  };
}

/** The Vorbis identification header's channel count and rate (first Ogg page), or null when it is not there. */
function vorbisIdHeader(b: Uint8Array): { channels: number; rate: number } | null {
  const body = 27 + (b[26] ?? 0);
  if (ascii(b, body, 7) !== '\x01vorbis' || body + 16 > b.length) return null;
  return { channels: b[body + 11], rate: (b[body + 12] | (b[body + 13] << 8) | (b[body + 14] << 16) | (b[body + 15] << 24)) >>> 0 };
}

/** Ogg container check: the last page must be complete and carry the end-of-stream flag. */
function oggTailProblem(b: Uint8Array): string | null {
  let at = -1;
  for (let i = b.length - 27; i >= 0; i--) {
    if (b[i] === 0x4f && b[i + 1] === 0x67 && b[i + 2] === 0x67 && b[i + 3] === 0x53 && b[i + 4] === 0) {
      at = i;
      break;
    }
  }
  if (at < 0) return 'no Ogg page found';
  const segments = b[at + 26];
  if (at + 27 + segments > b.length) return 'truncated: the last Ogg page is incomplete';
  let size = 27 + segments;
  for (let s = 0; s < segments; s++) size += b[at + 27 + s];
  if (at + size > b.length) return `truncated: the last Ogg page needs ${at + size - b.length} more bytes`;
  if (!(b[at + 5] & 0x04)) return 'truncated: the stream has no end-of-stream page';
  return null;
}

/** MP3 container check: walking the frames from the first one, the last frame must end within the file. */
function mp3TailProblem(b: Uint8Array): string | null {
  let at = findMpegStart(b, id3v2Length(b));
  if (at < 0) return 'no MPEG audio frame found';
  for (;;) {
    const f = mpegFrameAt(b, at);
    if (!f) return null; // a trailing tag (ID3v1 'TAG', APE) or junk: the decoder resyncs, nothing cut short
    if (at + f.length > b.length) return `truncated: the last MPEG frame needs ${at + f.length - b.length} more bytes`;
    at += f.length;
    if (at === b.length) return null;
  }
}

interface WasmDecodeResult {
  channelData: Float32Array[];
  samplesDecoded: number;
  sampleRate: number;
  errors: { message: string }[];
}

function checkResult(name: string, what: string, r: WasmDecodeResult): void {
  if (r.errors.length > 0) throw new AudioError(name, `corrupt ${what}: ${r.errors.length} decode error(s), first: ${r.errors[0].message}`);
  if (r.samplesDecoded === 0 || r.channelData.length === 0) throw new AudioError(name, `${what}: no audio could be decoded (corrupt or truncated file)`);
}

/** the most samples (summed over channels) a compressed file may decode to per byte of file; digital silence from
 * common encoders stays far below (FLAC at 4096-sample blocks: ~600 per byte), damaged or crafted streams do not */
export const MAX_SAMPLES_PER_BYTE = 1024;
/** bytes handed to a wasm decoder per call, so the output of one call stays small even at the worst ratio */
const DECODE_SLICE_BYTES = 4096;

interface StreamingDecoder {
  decode(chunk: Uint8Array): WasmDecodeResult | Promise<WasmDecodeResult>;
  flush?(): Promise<WasmDecodeResult>;
}

/**
 * Feeds `bytes` to a streaming decoder slice by slice, copying each result out of wasm memory (the next call
 * overwrites it) and stopping with an AudioError as soon as the output passes `limit` samples (over channels).
 */
async function decodeBounded(dec: StreamingDecoder, bytes: Uint8Array, name: string, what: string, limit: number): Promise<WasmDecodeResult> {
  const pieces: Float32Array[][] = [];
  const errors: { message: string }[] = [];
  let total = 0;
  let perChannel = 0;
  let channels = -1;
  let sampleRate = 0;
  const take = (r: WasmDecodeResult) => {
    if (r.errors.length) errors.push(...r.errors);
    if (r.samplesDecoded <= 0 || r.channelData.length === 0) return;
    if (channels < 0) {
      channels = r.channelData.length;
      sampleRate = r.sampleRate;
      checkSampleRate(sampleRate, name, `${what}: sample rate`);
    } else if (r.channelData.length !== channels || r.sampleRate !== sampleRate) {
      throw new AudioError(name, `${what}: the stream changes from ${channels} channel(s) at ${sampleRate} Hz to ${r.channelData.length} at ${r.sampleRate} Hz (chained or damaged stream)`);
    }
    total += r.samplesDecoded * channels;
    checkSampleCount(total, limit, name, `${what}: the decoded stream`);
    perChannel += r.samplesDecoded;
    pieces.push(r.channelData.map((c) => c.slice(0, r.samplesDecoded)));
  };
  for (let at = 0; at < bytes.length; at += DECODE_SLICE_BYTES) take(await dec.decode(bytes.subarray(at, at + DECODE_SLICE_BYTES)));
  if (dec.flush) take(await dec.flush());
  const channelData: Float32Array[] = [];
  for (let c = 0; c < Math.max(channels, 0); c++) {
    const out = new Float32Array(perChannel);
    let o = 0;
    for (const p of pieces) {
      out.set(p[c], o);
      o += p[c].length;
    }
    channelData.push(out);
  }
  return { channelData, samplesDecoded: perChannel, sampleRate, errors };
}

function toDecoded(r: WasmDecodeResult, format: string): DecodedAudio {
  return { sampleRate: r.sampleRate, channels: r.channelData, format };
}

/** Runs a wasm decoder; anything it throws that is not already an AudioError becomes one naming the file. */
async function guarded<T>(name: string, what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof AudioError) throw e;
    const err = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    throw new AudioError(name, `corrupt ${what}: the decoder failed (${err})`);
  }
}

function freeQuietly(dec: { free(): void }): void {
  try {
    dec.free();
  } catch {
    /* a decoder that failed mid-stream may fail again on free; its memory goes with it */
  }
}

export interface DecodeOptions {
  /** bound on the decoded samples summed over channels (default MAX_DECODED_SAMPLES) */
  maxSamples?: number;
}

/**
 * Decode audio bytes (WAV, FLAC, MP3, Ogg Vorbis) to float channels at the file's own rate.
 * `name` names the file in errors (AudioError).
 */
export async function decodeAudio(bytes: Uint8Array, name: string, opts: DecodeOptions = {}): Promise<DecodedAudio> {
  if (bytes.length === 0) throw new AudioError(name, 'empty file (0 bytes)');
  // Node 20 can deadlock when its event loop runs empty while V8 compiles in the background (the decoders' async
  // WebAssembly.compile): the main thread waits in NodePlatform::DrainTasks for a compile job that waits for a GC
  // only the main thread can run (nodejs/node#54918; seen here as a test process idle in a futex for 600 s). A timer
  // kept alive while decoding keeps the loop from running empty, so the main thread keeps serving V8's tasks.
  const keepAlive = setInterval(() => {}, 1000);
  try {
    return await decodeAudioInner(bytes, name, opts);
  } finally {
    clearInterval(keepAlive);
  }
}

async function decodeAudioInner(bytes: Uint8Array, name: string, opts: DecodeOptions): Promise<DecodedAudio> {
  const maxSamples = opts.maxSamples ?? MAX_DECODED_SAMPLES;
  const limit = Math.min(maxSamples, bytes.length * MAX_SAMPLES_PER_BYTE);
  const format = sniffFormat(bytes);
  switch (format) {
    case 'wav':
      return decodeWav(bytes, name, { maxSamples });
    case 'flac': {
      const info = flacStreamInfo(bytes);
      if (info) {
        checkSampleRate(info.rate, name, 'FLAC: STREAMINFO sample rate');
        checkSampleCount(info.totalSamples * info.channels, limit, name, `FLAC: STREAMINFO (${info.totalSamples} samples x ${info.channels} channels in a ${bytes.length}-byte file)`);
      }
      const { FLACDecoder } = await import('@wasm-audio-decoders/flac');
      const dec = new FLACDecoder();
      try {
        return await guarded(name, 'FLAC', async () => {
          await dec.ready;
          const r = await decodeBounded(dec, bytes, name, 'FLAC', limit);
          checkResult(name, 'FLAC', r);
          const total = info?.totalSamples ?? -1;
          if (total > 0 && r.samplesDecoded < total) throw new AudioError(name, `truncated or corrupt FLAC: decoded ${r.samplesDecoded} of ${total} samples`);
          return toDecoded(r, 'flac');
        });
      } finally {
        freeQuietly(dec);
      }
    }
    case 'mp3': {
      const tail = mp3TailProblem(bytes);
      if (tail) throw new AudioError(name, `MP3: ${tail}`);
      const { MPEGDecoder } = await import('mpg123-decoder');
      const dec = new MPEGDecoder();
      try {
        return await guarded(name, 'MP3', async () => {
          await dec.ready;
          const r = await decodeBounded(dec, bytes, name, 'MP3', limit);
          checkResult(name, 'MP3', r);
          return toDecoded(r, 'mp3');
        });
      } finally {
        freeQuietly(dec);
      }
    }
    case 'ogg-vorbis': {
      const tail = oggTailProblem(bytes);
      if (tail) throw new AudioError(name, `Ogg Vorbis: ${tail}`);
      const id = vorbisIdHeader(bytes);
      if (!id) throw new AudioError(name, 'Ogg Vorbis: the identification header is missing or cut short');
      if (id.channels < 1) throw new AudioError(name, 'Ogg Vorbis: 0 channels');
      checkSampleRate(id.rate, name, 'Ogg Vorbis: identification header sample rate');
      const { OggVorbisDecoder } = await import('@wasm-audio-decoders/ogg-vorbis');
      const dec = new OggVorbisDecoder();
      try {
        return await guarded(name, 'Ogg Vorbis', async () => {
          await dec.ready;
          const r = await decodeBounded(dec, bytes, name, 'Ogg Vorbis', limit);
          checkResult(name, 'Ogg Vorbis', r);
          return toDecoded(r, 'ogg-vorbis');
        });
      } finally {
        freeQuietly(dec);
      }
    }
    case 'ogg-opus':
      throw new AudioError(name, 'Ogg Opus is not supported (WAV, FLAC, MP3 and Ogg Vorbis are); convert it, e.g. `sox in.opus out.wav`');
    case 'ogg-other':
      throw new AudioError(name, 'Ogg file with an unsupported codec (only Vorbis is supported in Ogg)');
    default:
      throw new AudioError(name, `unknown audio format (first bytes: ${hexHead(bytes)}); supported: WAV, FLAC, MP3, Ogg Vorbis`);
  }
}

/** Average of the channels (as librosa.to_mono). A mono input is returned as is. */
export function mixToMono(channels: Float32Array[]): Float32Array {
  if (channels.length === 0) return new Float32Array(0);
  if (channels.length === 1) return channels[0];
  const n = channels[0].length;
  const out = new Float32Array(n);
  const k = channels.length;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < k; c++) s += channels[c][i];
    out[i] = s / k;
  }
  return out;
}
