// Node edge for Hugging Face Hub model ids: downloads with @huggingface/hub into the cache layout that Python's
// huggingface_hub uses, so the two share files:
//   <cache>/models--org--name/blobs/<etag>                 the file (etag: sha256 for LFS files, git blob sha1 else)
//   <cache>/models--org--name/refs/<revision>              the commit the branch/tag pointed to when last resolved
//   <cache>/models--org--name/snapshots/<commit>/<file>    relative symlink to ../../blobs/<etag>
// <cache> is HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. HF_ENDPOINT, HF_TOKEN and
// HF_HUB_OFFLINE are honoured as in Python. A model whose snapshot is complete in the cache needs no network: with a
// commit id, offline, or when the Hub cannot be reached. Downloads are checked against the Hub's sha256 / git oid.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import cliProgress from 'cli-progress';
import { HubApiError, downloadFile, getHFHubCachePath, modelInfo, pathsInfo } from '@huggingface/hub';
import { DEFAULT_ENDPOINT, HubError, hubHttpError, isCommitHash, looksLikeHubId, networkCause, parseHubId, pickHubFiles, shardFiles } from '../io/hub.js';
import { WEIGHT_FILES } from '../io/modelfiles.js';

export { HubError, looksLikeHubId, parseHubId } from '../io/hub.js';

export interface DownloadProgress {
  repo: string;
  file: string;
  loaded: number;
  total: number;
}

export interface ResolveModelOptions {
  /** branch, tag or commit (an `@revision` in the id wins); default 'main' */
  revision?: string;
  /** default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub */
  cacheDir?: string;
  /** never touch the network (default: HF_HUB_OFFLINE) */
  offline?: boolean;
  /** default: HF_ENDPOINT or https://huggingface.co */
  endpoint?: string;
  /** default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the token file `huggingface-cli login` writes */
  token?: string;
  /** per chunk of each downloaded file; default: a progress bar on stderr for large files when it is a terminal */
  onProgress?: (p: DownloadProgress) => void;
  /** one-line notices (using the cache because the Hub is unreachable, what is downloaded); default: stderr */
  log?: (line: string) => void;
  /** for tests and proxies */
  fetch?: typeof fetch;
}

const TRUE = new Set(['1', 'ON', 'YES', 'TRUE']);

export function hubCacheDir(): string {
  return getHFHubCachePath();
}

export function hubOffline(): boolean {
  return TRUE.has((process.env.HF_HUB_OFFLINE ?? process.env.TRANSFORMERS_OFFLINE ?? '').trim().toUpperCase());
}

function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

function hubToken(): string | undefined {
  const env = process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN;
  if (env) return env.trim();
  const home = process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  const file = process.env.HF_TOKEN_PATH ?? path.join(home, 'token');
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    return text || undefined;
  } catch {
    return undefined;
  }
}

/** models--org--name under the cache (as huggingface_hub names it) */
export function repoCacheFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

/**
 * A local model folder for `idOrPath`: the path itself when it is a folder, else the snapshot folder of the Hub
 * model it names (downloaded if needed). Only the files a model folder needs are fetched: config.json,
 * preprocessor_config.json when present, and the weights in transformers' preference (model.safetensors, its sharded
 * index and shards, pytorch_model.bin, its sharded index and shards).
 */
export async function resolveModel(idOrPath: string, opts: ResolveModelOptions = {}): Promise<string> {
  if (fs.existsSync(idOrPath)) {
    if (fs.statSync(idOrPath).isDirectory()) return idOrPath;
    throw new Error(`${idOrPath}: not a folder (a model folder holds config.json and the weights; give the folder, or a Hub id org/name)`);
  }
  const { repo, revision } = parseHubId(idOrPath, opts.revision);
  const cacheDir = opts.cacheDir ?? hubCacheDir();
  const storage = repoCacheFolder(cacheDir, repo);
  const offline = opts.offline ?? hubOffline();
  const endpoint = (opts.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  // a commit id whose snapshot is complete needs nobody; a branch or tag does when offline
  const cachedCommit = isCommitHash(revision) ? revision : readRef(storage, revision);
  const cached = cachedCommit ? completeSnapshot(storage, cachedCommit) : undefined;
  if (cached && (offline || isCommitHash(revision))) return cached;
  if (offline) {
    throw new HubError(
      'offline',
      `model ${repo}: offline (HF_HUB_OFFLINE) and the cache ${cacheDir} has no complete snapshot of revision ${revision}; unset HF_HUB_OFFLINE to download it, or pass a local folder`,
    );
  }
  try {
    return await download({ repo, revision, cacheDir, storage, endpoint, token: opts.token ?? hubToken(), onProgress: opts.onProgress ?? terminalProgress(), log, fetch: opts.fetch ?? fetch });
  } catch (e) {
    if (e instanceof HubError && e.code === 'network' && cached) {
      log(`model ${repo}: ${endpoint} is unreachable; using the cached snapshot ${path.basename(cached)} of ${revision}`);
      return cached;
    }
    throw e;
  }
}

function readRef(storage: string, revision: string): string | undefined {
  try {
    const commit = fs.readFileSync(path.join(storage, 'refs', revision), 'utf8').trim();
    return isCommitHash(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** The snapshot folder when it holds config.json and complete weights (every shard of an index), else undefined. */
function completeSnapshot(storage: string, commit: string): string | undefined {
  const dir = path.join(storage, 'snapshots', commit);
  const has = (f: string) => fs.existsSync(path.join(dir, f)); // follows the symlink: a dangling one is absent
  if (!has('config.json')) return undefined;
  const weights = WEIGHT_FILES.find(has);
  if (!weights) return undefined;
  if (weights.endsWith('.index.json')) {
    try {
      if (!shardFiles(fs.readFileSync(path.join(dir, weights), 'utf8'), path.join(dir, weights)).every(has)) return undefined;
    } catch {
      return undefined;
    }
  }
  return dir;
}

interface DownloadContext {
  repo: string;
  revision: string;
  cacheDir: string;
  storage: string;
  endpoint: string;
  token: string | undefined;
  onProgress: (p: DownloadProgress) => void;
  log: (line: string) => void;
  fetch: typeof fetch;
}

async function download(ctx: DownloadContext): Promise<string> {
  const { repo, revision, storage, endpoint, token } = ctx;
  // X-Error-Code of the last refused request: the library's HubApiError keeps only the status
  let lastErrorCode: string | null = null;
  // metadata requests give up after HF_HUB_ETAG_TIMEOUT seconds (Python's default: 10), so a dead network falls
  // back to the cache instead of hanging; file downloads have no overall limit
  const apiTimeoutMs = 1000 * (Number(process.env.HF_HUB_ETAG_TIMEOUT) > 0 ? Number(process.env.HF_HUB_ETAG_TIMEOUT) : 10);
  const recordingFetch: typeof fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const isApi = url.startsWith(`${endpoint}/api/`);
    const res = await ctx.fetch(input, isApi && !init?.signal ? { ...init, signal: AbortSignal.timeout(apiTimeoutMs) } : init);
    if (!res.ok) lastErrorCode = res.headers.get('x-error-code');
    return res;
  };
  const common = { hubUrl: endpoint, accessToken: token, fetch: recordingFetch };
  let gated = false;
  const call = async <T>(what: string | undefined, run: () => Promise<T>): Promise<T> => {
    lastErrorCode = null;
    try {
      return await run();
    } catch (e) {
      throw hubFailure(e, { repo, revision, endpoint, file: what, gated, hasToken: !!token, errorCode: lastErrorCode });
    }
  };

  const info = await call(undefined, () => modelInfo({ ...common, name: repo, revision, additionalFields: ['sha', 'filePaths'] }));
  gated = !!info.gated;
  const commit = info.sha;
  if (typeof commit !== 'string' || !isCommitHash(commit)) throw new HubError('bad-response', `model ${repo}: ${endpoint} gave no commit id for revision ${revision} (got ${JSON.stringify(commit)?.slice(0, 60)})`);
  const listed = Array.isArray(info.filePaths) ? info.filePaths.filter((f): f is string => typeof f === 'string') : [];
  const pick = pickHubFiles(repo, revision, listed);
  const snapshot = path.join(storage, 'snapshots', commit);

  const fetchFiles = async (files: string[]) => {
    const missing = files.filter((f) => !fs.existsSync(path.join(snapshot, f)));
    if (!missing.length) return;
    const infos = await call(missing.join(', '), () => pathsInfo({ ...common, repo: { type: 'model', name: repo }, paths: missing, revision: commit }));
    for (const file of missing) {
      const entry = infos.find((i) => i.path === file);
      if (!entry || entry.type !== 'file') throw new HubError('bad-response', `${file} of model ${repo}: listed by ${endpoint} but its paths-info has no such file`);
      await fetchFile(ctx, { file, commit, entry, call, common });
    }
  };
  await fetchFiles([pick.config, ...(pick.preprocessor ? [pick.preprocessor] : []), pick.weights]);
  if (pick.weights.endsWith('.index.json')) {
    const indexPath = path.join(snapshot, pick.weights);
    const shards = shardFiles(await fsp.readFile(indexPath, 'utf8'), `${repo}/${pick.weights}`);
    const absent = shards.filter((s) => !listed.includes(s));
    if (absent.length) throw new HubError('no-weights', `model ${repo} (revision ${revision}): ${pick.weights} lists ${absent.join(', ')}, which the repository does not have`);
    await fetchFiles(shards);
  }
  if (revision !== commit) {
    const ref = path.join(storage, 'refs', revision);
    await fsp.mkdir(path.dirname(ref), { recursive: true });
    const tmp = `${ref}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, commit);
    await fsp.rename(tmp, ref);
  }
  return snapshot;
}

type Call = <T>(what: string | undefined, run: () => Promise<T>) => Promise<T>;
interface PathEntry {
  path: string;
  type: string;
  oid?: string;
  size: number;
  lfs?: { oid: string; size: number };
}

/** Downloads one file into blobs/<etag> (checked against its hash) and links it from the snapshot. */
async function fetchFile(ctx: DownloadContext, o: { file: string; commit: string; entry: PathEntry; call: Call; common: { hubUrl: string; accessToken: string | undefined; fetch: typeof fetch } }): Promise<void> {
  const { repo, storage } = ctx;
  const { file, commit, entry } = o;
  // the blob's name is the ETag the Hub sends for it, as Python names it: the LFS sha256, or the git blob sha1
  const etag = entry.lfs?.oid ?? entry.oid;
  const size = entry.lfs?.size ?? entry.size;
  const isLfs = !!entry.lfs;
  if (!etag || !(isLfs ? /^[0-9a-f]{64}$/ : /^[0-9a-f]{40}$/).test(etag) || !Number.isSafeInteger(size) || size < 0) {
    throw new HubError('bad-response', `${file} of model ${repo}: the Hub's paths-info gives no usable hash or size (${JSON.stringify({ etag, size }).slice(0, 120)})`);
  }
  const blob = path.join(storage, 'blobs', etag);
  const pointer = path.join(storage, 'snapshots', commit, file);
  await fsp.mkdir(path.dirname(blob), { recursive: true });
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  if (!fs.existsSync(blob)) {
    if (size >= LARGE) ctx.log(`downloading ${file} of ${repo} (${(size / 1e6).toFixed(1)} MB) into ${ctx.cacheDir}`);
    const body = await o.call(file, async () => {
      const b = await downloadFile({ ...o.common, repo: { type: 'model', name: repo }, path: file, revision: commit });
      if (!b) throw new HubError('not-found', `${file} of model ${repo} at ${commit}: the Hub lists it but does not serve it`);
      return b;
    });
    const tmp = `${blob}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.incomplete`;
    // git hashes "blob <size>\0" + content with sha1; LFS objects are named by their sha256
    const hash = crypto.createHash(isLfs ? 'sha256' : 'sha1');
    if (!isLfs) hash.update(`blob ${size}\0`);
    const handle = await fsp.open(tmp, 'w');
    let loaded = 0;
    try {
      await o.call(file, async () => {
        const reader = body.stream().getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          loaded += value.byteLength;
          if (loaded > size) {
            await reader.cancel();
            throw new HubError('bad-response', `${file} of model ${repo}: the download is longer than the ${size} bytes the Hub announced`);
          }
          hash.update(value);
          let off = 0;
          while (off < value.byteLength) off += (await handle.write(value, off, value.byteLength - off)).bytesWritten;
          ctx.onProgress({ repo, file, loaded, total: size });
        }
      });
      if (loaded !== size) throw new HubError('network', `${file} of model ${repo}: the download stopped after ${loaded} of ${size} bytes; run again to retry`);
      const digest = hash.digest('hex');
      if (digest !== etag) throw new HubError('bad-response', `${file} of model ${repo}: the download's ${isLfs ? 'sha256' : 'git sha1'} is ${digest}, not ${etag} as the Hub lists it; run again, or report it if it repeats`);
      await handle.sync();
      await handle.close();
      await fsp.rename(tmp, blob);
    } catch (e) {
      await handle.close().catch(() => {});
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }
  // made under a temporary name and renamed over the pointer: atomic when another process links the same file, and
  // never a copy through an existing link (which would truncate the blob it points to)
  const tmpLink = `${pointer}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    await fsp.symlink(path.relative(path.dirname(pointer), blob), tmpLink);
  } catch {
    // no symlinks (some Windows setups): huggingface_hub copies the file then
    await fsp.copyFile(blob, tmpLink);
  }
  try {
    await fsp.rename(tmpLink, pointer);
  } catch (e) {
    await fsp.rm(tmpLink, { force: true });
    throw e;
  }
}

function hubFailure(e: unknown, o: { repo: string; revision: string; endpoint: string; file?: string; gated: boolean; hasToken: boolean; errorCode: string | null }): HubError {
  if (e instanceof HubError) return e;
  if (e instanceof HubApiError) return hubHttpError({ ...o, status: e.statusCode });
  const cause = networkCause(e);
  if (cause) return new HubError('network', `model ${o.repo}: cannot reach ${o.endpoint} (${cause}) and the cache has no complete snapshot of revision ${o.revision}; connect to the network, set HF_ENDPOINT to a mirror, or pass a local folder`);
  const msg = e instanceof Error ? e.message : String(e);
  if (/access token must start with 'hf_'/.test(msg)) return new HubError('unauthorized', `model ${o.repo}: HF_TOKEN is not a Hugging Face token (they start with hf_); set it to a read token from ${DEFAULT_ENDPOINT}/settings/tokens`);
  return new HubError('bad-response', `${o.file ? `${o.file} of ` : ''}model ${o.repo}: ${msg}`);
}

const LARGE = 8 << 20;

/** A cli-progress bar on stderr per file of 8 MiB or more, when stderr is a terminal; nothing otherwise. */
function terminalProgress(stream: NodeJS.WriteStream = process.stderr): (p: DownloadProgress) => void {
  if (!stream.isTTY || TRUE.has((process.env.HF_HUB_DISABLE_PROGRESS_BARS ?? '').trim().toUpperCase())) return () => {};
  let bar: cliProgress.SingleBar | undefined;
  let current = '';
  return (p) => {
    if (p.total < LARGE) return;
    if (current !== p.file) {
      bar?.stop();
      current = p.file;
      bar = new cliProgress.SingleBar(
        { stream, format: `${p.file} [{bar}] {percentage}% {value}/{total} MB {eta_formatted}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.ceil(p.total / 1e6), 0);
    }
    bar!.update(Math.floor(p.loaded / 1e6));
    if (p.loaded >= p.total) {
      bar!.update(Math.ceil(p.total / 1e6));
      bar!.stop();
      bar = undefined;
      current = '';
    }
  };
}
