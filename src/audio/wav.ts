// WAV (RIFF/RIFX/RF64 WAVE) decoding and encoding, written out here rather than taken from a library so that every
// malformed-file case gets a precise error (a truncated data chunk, a missing fmt chunk, an odd block size) and every
// sample format is covered: integer PCM 8 (unsigned) / 16 / 24 / 32 bit and any other container width up to 32,
// IEEE float 32 / 64, A-law and mu-law, WAVE_FORMAT_EXTENSIBLE wrapping any of these, any channel count.
// Integers scale as soundfile/torchaudio do: x / 2^(bits-1) (8-bit: (u - 128) / 128), so int16 -32768 maps to -1.
import { AudioError } from './errors.js';
import { MAX_DECODED_SAMPLES, checkSampleCount, checkSampleRate } from './validate.js';

export interface DecodedAudio {
  sampleRate: number;
  /** one Float32Array per channel, all the same length */
  channels: Float32Array[];
  /** 'wav' | 'flac' | 'mp3' | 'ogg-vorbis' */
  format: string;
}

const FORMAT_PCM = 0x0001;
const FORMAT_FLOAT = 0x0003;
const FORMAT_ALAW = 0x0006;
const FORMAT_MULAW = 0x0007;
const FORMAT_EXTENSIBLE = 0xfffe;

function fourcc(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at], b[at + 1], b[at + 2], b[at + 3]);
}

export function isWav(b: Uint8Array): boolean {
  if (b.length < 12) return false;
  const riff = fourcc(b, 0);
  return (riff === 'RIFF' || riff === 'RIFX' || riff === 'RF64') && fourcc(b, 8) === 'WAVE';
}

function alawToLinear(a: number): number {
  a ^= 0x55;
  const sign = a & 0x80;
  const exponent = (a >> 4) & 7;
  const mantissa = a & 0x0f;
  let mag = exponent === 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
  return (sign ? mag : -mag) / 32768;
}

function mulawToLinear(u: number): number {
  u = ~u & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 7;
  const mantissa = u & 0x0f;
  const mag = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return (sign ? -mag : mag) / 32768;
}

/** more channels than any real recording format uses is a damaged header, not audio */
export const MAX_CHANNELS = 256;

/**
 * Decode WAV bytes to float channels. `name` is used in error messages only. The output is bounded by the data
 * chunk's real size (never by a declared one) and by `maxSamples` (summed over channels).
 */
export function decodeWav(bytes: Uint8Array, name = '<wav>', opts: { maxSamples?: number } = {}): DecodedAudio {
  const fail = (why: string): never => {
    throw new AudioError(name, `WAV: ${why}`);
  };
  if (!isWav(bytes)) fail('not a RIFF/WAVE file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = fourcc(bytes, 0) !== 'RIFX';
  const rf64 = fourcc(bytes, 0) === 'RF64';
  const u16 = (at: number) => view.getUint16(at, little);
  const u32 = (at: number) => view.getUint32(at, little);

  let fmt: { tag: number; channels: number; rate: number; blockAlign: number; bits: number } | null = null;
  let dataAt = -1;
  let dataSize = 0;
  let ds64DataSize = -1;
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const id = fourcc(bytes, pos);
    let size = u32(pos + 4);
    const body = pos + 8;
    if (id === 'ds64' && rf64) {
      if (body + 16 > bytes.length) fail('truncated ds64 chunk');
      ds64DataSize = Number(view.getBigUint64(body + 8, true));
    } else if (id === 'fmt ') {
      if (size < 16) fail(`fmt chunk too short (${size} bytes)`);
      if (body + 16 > bytes.length) fail('truncated fmt chunk');
      let tag = u16(body);
      const channels = u16(body + 2);
      const rate = u32(body + 4);
      const blockAlign = u16(body + 12);
      const bits = u16(body + 14);
      if (tag === FORMAT_EXTENSIBLE) {
        if (size < 40 || body + 40 > bytes.length) fail('WAVE_FORMAT_EXTENSIBLE fmt chunk too short');
        // the first two bytes of the sub-format GUID are the format tag; samples with fewer valid bits than the
        // container are left-justified in it, so scaling by the container width is right for them too
        tag = u16(body + 24);
      }
      fmt = { tag, channels, rate, blockAlign, bits };
    } else if (id === 'data') {
      dataAt = body;
      if (rf64 && size === 0xffffffff && ds64DataSize >= 0) dataSize = ds64DataSize;
      else dataSize = size;
      const available = bytes.length - body;
      if (dataSize > available) {
        // streaming writers (espeak-ng --stdout, pipes) put a placeholder before they know the length: 0, 0xFFFFFFFF
        // or a value just under 2^31 (0x7FFFF000); a real size that overruns the file means the file was cut short
        if (size === 0xffffffff || size >= 0x7fff0000 || (size === 0 && available > 0)) dataSize = available;
        else fail(`truncated: data chunk declares ${dataSize} bytes but only ${available} are present`);
      }
      break;
    }
    if (body + size > bytes.length && id !== 'data') fail(`truncated ${JSON.stringify(id)} chunk`);
    size += size & 1; // chunks are padded to an even length
    pos = body + size;
  }
  if (!fmt) fail('no fmt chunk before the audio data');
  if (dataAt < 0) fail('no data chunk (truncated file?)');
  const { tag, channels, rate, blockAlign, bits } = fmt!;
  if (channels < 1) fail('0 channels');
  if (channels > MAX_CHANNELS) fail(`${channels} channels (at most ${MAX_CHANNELS} are accepted)`);
  checkSampleRate(rate, name, 'WAV: sample rate');
  if (blockAlign < channels || blockAlign % channels !== 0) fail(`bad block size ${blockAlign} for ${channels} channels`);
  const width = blockAlign / channels; // bytes per sample container
  // dataSize never exceeds the bytes present (checked above), so frames are bounded by the file itself
  const frames = Math.floor(Math.min(dataSize, bytes.length - dataAt) / blockAlign);
  checkSampleCount(frames * channels, opts.maxSamples ?? MAX_DECODED_SAMPLES, name, 'WAV: the data chunk');
  const out: Float32Array[] = [];
  for (let c = 0; c < channels; c++) out.push(new Float32Array(frames));

  if (tag === FORMAT_PCM) {
    if (bits < 1 || bits > 32 || width > 4 || width * 8 < bits) fail(`unsupported PCM layout: ${bits} bits in ${width}-byte containers`);
    if (width === 1) {
      for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = (bytes[dataAt + f * blockAlign + c] - 128) / 128;
    } else if (width === 2) {
      for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = view.getInt16(dataAt + f * blockAlign + c * 2, little) / 32768;
    } else if (width === 3) {
      for (let f = 0; f < frames; f++) {
        for (let c = 0; c < channels; c++) {
          const at = dataAt + f * blockAlign + c * 3;
          const v = little ? bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) : (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
          out[c][f] = ((v << 8) >> 8) / 8388608;
        }
      }
    } else {
      for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = view.getInt32(dataAt + f * blockAlign + c * 4, little) / 2147483648;
    }
  } else if (tag === FORMAT_FLOAT) {
    if (width === 4) {
      for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = view.getFloat32(dataAt + f * blockAlign + c * 4, little);
    } else if (width === 8) {
      for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = view.getFloat64(dataAt + f * blockAlign + c * 8, little);
    } else fail(`unsupported float width ${width * 8} bits`);
  } else if (tag === FORMAT_ALAW || tag === FORMAT_MULAW) {
    if (width !== 1) fail(`${tag === FORMAT_ALAW ? 'A-law' : 'mu-law'} with ${width}-byte samples`);
    const conv = tag === FORMAT_ALAW ? alawToLinear : mulawToLinear;
    for (let f = 0; f < frames; f++) for (let c = 0; c < channels; c++) out[c][f] = conv(bytes[dataAt + f * blockAlign + c]);
  } else {
    fail(`unsupported WAV encoding (format tag 0x${tag.toString(16)}; PCM, float, A-law and mu-law are supported)`);
  }
  return { sampleRate: rate, channels: out, format: 'wav' };
}

export interface WavEncodeOptions {
  /** 16 (default), 24 or 32 for integer PCM; 'f32' / 'f64' for IEEE float */
  sampleFormat?: 8 | 16 | 24 | 32 | 'f32' | 'f64';
}

/** Encode channels (one Float32Array per channel, or one array for mono) as a little-endian RIFF WAVE file. */
export function encodeWav(channels: Float32Array | Float32Array[], sampleRate: number, opts: WavEncodeOptions = {}): Uint8Array {
  const ch = Array.isArray(channels) ? channels : [channels];
  const fmt = opts.sampleFormat ?? 16;
  const isFloat = fmt === 'f32' || fmt === 'f64';
  const width = fmt === 'f64' ? 8 : fmt === 'f32' ? 4 : fmt / 8;
  const frames = ch[0]?.length ?? 0;
  const blockAlign = width * ch.length;
  const dataBytes = frames * blockAlign;
  const out = new Uint8Array(44 + dataBytes + (dataBytes & 1));
  const v = new DataView(out.buffer);
  const str = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  str(0, 'RIFF');
  v.setUint32(4, out.length - 8, true);
  str(8, 'WAVE');
  str(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, isFloat ? FORMAT_FLOAT : FORMAT_PCM, true);
  v.setUint16(22, ch.length, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * blockAlign, true);
  v.setUint16(32, blockAlign, true);
  v.setUint16(34, width * 8, true);
  str(36, 'data');
  v.setUint32(40, dataBytes, true);
  const scale = isFloat ? 1 : 2 ** (width * 8 - 1);
  for (let f = 0; f < frames; f++) {
    for (let c = 0; c < ch.length; c++) {
      const at = 44 + f * blockAlign + c * width;
      const x = ch[c][f];
      if (fmt === 'f32') v.setFloat32(at, x, true);
      else if (fmt === 'f64') v.setFloat64(at, x, true);
      else {
        const q = Math.max(-scale, Math.min(scale - 1, Math.round(x * scale)));
        if (width === 1) out[at] = q + 128;
        else if (width === 2) v.setInt16(at, q, true);
        else if (width === 3) {
          out[at] = q & 0xff;
          out[at + 1] = (q >> 8) & 0xff;
          out[at + 2] = (q >> 16) & 0xff;
        } else v.setInt32(at, q, true);
      }
    }
  }
  return out;
}
