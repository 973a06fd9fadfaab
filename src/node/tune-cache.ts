// Node's TuneCache: a JSON file under the user cache dir ($XDG_CACHE_HOME/ser-webgpu/tune.json, else
// ~/.cache/ser-webgpu/tune.json; SER_TUNE_CACHE=<file> elsewhere, SER_TUNE_CACHE=off for none). Read once when opened
// (bounded and validated: a corrupt or hostile file is ignored with a warning, bad entries dropped), written whole on
// every new winner through a temporary file renamed over it, so a reader never sees half a file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryTuneCache, parseTuneCache, serializeTuneCache, TUNE_MAX_BYTES, type TuneCache, type TuneEntry } from '../runtime/tune.js';

export function defaultTuneCachePath(): string | null {
  const env = process.env.SER_TUNE_CACHE;
  if (env === 'off' || env === '0') return null;
  if (env) return path.resolve(env);
  const base = process.env.XDG_CACHE_HOME && path.isAbsolute(process.env.XDG_CACHE_HOME) ? process.env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'ser-webgpu', 'tune.json');
}

export class FileTuneCache extends MemoryTuneCache {
  readonly file: string;
  private readonly warn: (msg: string) => void;

  constructor(file: string, warn: (msg: string) => void = (m) => console.warn(`warning: ${m}`)) {
    super(readCacheFile(file, warn));
    this.file = file;
    this.warn = warn;
  }

  protected override persist(): void {
    const tmp = `${this.file}.${process.pid}.${Date.now()}.tmp`;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      fs.writeFileSync(tmp, serializeTuneCache(this.map));
      fs.renameSync(tmp, this.file);
    } catch (e) {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // nothing to clean
      }
      this.warn(`tune cache ${this.file}: not written (${(e as Error).message}); winners kept for this process only`);
    }
  }
}

function readCacheFile(file: string, warn: (msg: string) => void): Map<string, TuneEntry> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`tune cache ${file}: unreadable (${(e as Error).message}); ignored`);
    return new Map();
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      warn(`tune cache ${file}: not a regular file; ignored`);
      return new Map();
    }
    if (st.size > TUNE_MAX_BYTES) {
      warn(`tune cache ${file}: ${st.size} bytes, over the ${TUNE_MAX_BYTES}-byte limit; ignored`);
      return new Map();
    }
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < st.size) {
      const n = fs.readSync(fd, buf, got, st.size - got, got);
      if (n <= 0) break;
      got += n;
    }
    return parseTuneCache(buf.subarray(0, got).toString('utf8'), file, warn);
  } finally {
    fs.closeSync(fd);
  }
}

/** The cache a Node runtime uses by default (null when SER_TUNE_CACHE=off). */
export function openNodeTuneCache(): TuneCache | null {
  const file = defaultTuneCachePath();
  return file ? new FileTuneCache(file) : null;
}
