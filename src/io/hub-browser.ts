// Hugging Face Hub models in the browser (core: fetch and the Cache API only). The revision is resolved to its commit
// through `${endpoint}/api/models/<id>/revision/<rev>`; files come from the resolve URLs of that commit
// (`${endpoint}/<id>/resolve/<commit>/<file>`) and are kept in the Cache API under those URLs, so a commit's files
// are immutable cache entries and a cached model loads without network. The revision lookup is cached too (under its
// own URL) and used when the Hub cannot be reached.
import { DEFAULT_ENDPOINT, HubError, hubHttpError, isCommitHash, networkCause, parseHubId, pickHubFiles, shardFiles } from './hub.js';
import { type ModelFiles, openModelFiles } from './modelfiles.js';

/** The parts of the Cache API used here (window.caches satisfies it). */
export interface CacheStorageLike {
  open(name: string): Promise<{ match(url: string): Promise<Response | undefined>; put(url: string, res: Response): Promise<void> }>;
}

export interface HubFetchOptions {
  revision?: string;
  /** default https://huggingface.co */
  endpoint?: string;
  /** a Hugging Face access token, for gated or private models */
  token?: string;
  /** default globalThis.caches when the page has it; null: no caching */
  caches?: CacheStorageLike | null;
  /** default 'ser-webgpu-hub' */
  cacheName?: string;
  onProgress?: (p: { repo: string; file: string; loaded: number; total: number }) => void;
  fetch?: typeof fetch;
}

export interface HubModelFiles {
  repo: string;
  commit: string;
  /** file name -> content, ready for openModelFiles */
  files: Map<string, Blob>;
}

/** Downloads (or takes from the Cache API) the files of a Hub model: config, preprocessor config, weights. */
export async function fetchHubModelFiles(id: string, opts: HubFetchOptions = {}): Promise<HubModelFiles> {
  const { repo, revision } = parseHubId(id, opts.revision);
  const endpoint = (opts.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const doFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const storage = opts.caches !== undefined ? opts.caches : ((globalThis as { caches?: CacheStorageLike }).caches ?? null);
  const cache = storage ? await storage.open(opts.cacheName ?? 'ser-webgpu-hub') : null;
  const headers: Record<string, string> = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
  let gated = false;

  const httpError = (res: Response, file?: string) => hubHttpError({ repo, revision, endpoint, status: res.status, errorCode: res.headers.get('x-error-code'), file, gated, hasToken: !!opts.token });
  const networkError = (e: unknown): never => {
    const cause = networkCause(e);
    if (cause) throw new HubError('network', `model ${repo}: cannot reach ${endpoint} (${cause}) and the browser cache has no copy of revision ${revision}; check the connection, or load a local folder`);
    throw e;
  };

  // revision -> commit and file list
  const infoUrl = (rev: string) => `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(rev)}?expand=sha&expand=siblings&expand=gated`;
  let info: unknown;
  const cachedInfo = isCommitHash(revision) ? await cache?.match(infoUrl(revision)) : undefined;
  if (cachedInfo) info = await cachedInfo.json();
  else {
    let res: Response | undefined;
    try {
      res = await doFetch(infoUrl(revision), { headers });
    } catch (e) {
      const fallback = await cache?.match(infoUrl(revision));
      if (!fallback) networkError(e);
      res = fallback;
    }
    if (!res!.ok) throw httpError(res!);
    const text = await res!.text();
    info = JSON.parse(text);
    if (cache) await putQuietly(cache, infoUrl(revision), new Response(text, { headers: { 'content-type': 'application/json' } }));
  }
  const { sha, siblings, gated: g } = (info ?? {}) as { sha?: unknown; siblings?: unknown; gated?: unknown };
  gated = !!g;
  if (typeof sha !== 'string' || !isCommitHash(sha)) throw new HubError('bad-response', `model ${repo}: ${endpoint} gave no commit id for revision ${revision}`);
  const commit = sha;
  if (cache && revision !== commit) await putQuietly(cache, infoUrl(commit), new Response(JSON.stringify(info), { headers: { 'content-type': 'application/json' } }));
  const listed = Array.isArray(siblings) ? siblings.map((s) => (s && typeof s === 'object' ? (s as { rfilename?: unknown }).rfilename : undefined)).filter((f): f is string => typeof f === 'string') : [];
  const pick = pickHubFiles(repo, revision, listed);

  const files = new Map<string, Blob>();
  const get = async (file: string) => {
    const url = `${endpoint}/${repo}/resolve/${commit}/${file}`;
    const hit = await cache?.match(url);
    if (hit) {
      files.set(file, await hit.blob());
      return;
    }
    let res: Response;
    try {
      res = await doFetch(url, { headers });
    } catch (e) {
      return networkError(e);
    }
    if (!res.ok) throw httpError(res, file);
    const total = Number(res.headers.get('content-length') ?? NaN);
    let body = res.body;
    if (body && opts.onProgress && Number.isFinite(total)) {
      let loaded = 0;
      const onProgress = opts.onProgress;
      body = body.pipeThrough(
        new TransformStream<Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>>({
          transform(chunk, ctl) {
            loaded += chunk.byteLength;
            onProgress({ repo, file, loaded, total });
            ctl.enqueue(chunk);
          },
        }),
      );
    }
    const blob = await new Response(body).blob();
    if (Number.isFinite(total) && blob.size !== total) throw new HubError('network', `${file} of model ${repo}: the download stopped after ${blob.size} of ${total} bytes; try again`);
    if (cache) await putQuietly(cache, url, new Response(blob, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) } }));
    files.set(file, blob);
  };
  for (const f of [pick.config, ...(pick.preprocessor ? [pick.preprocessor] : []), pick.weights]) await get(f);
  if (pick.weights.endsWith('.index.json')) {
    const shards = shardFiles(await files.get(pick.weights)!.text(), `${repo}/${pick.weights}`);
    const absent = shards.filter((s) => !listed.includes(s));
    if (absent.length) throw new HubError('no-weights', `model ${repo} (revision ${revision}): ${pick.weights} lists ${absent.join(', ')}, which the repository does not have`);
    for (const s of shards) await get(s);
  }
  return { repo, commit, files };
}

/** A Hub model opened as a model folder (configs parsed, weight headers read), like openModelFiles. */
export async function openHubModel(id: string, opts: HubFetchOptions = {}): Promise<ModelFiles & { repo: string; commit: string }> {
  const { repo, commit, files } = await fetchHubModelFiles(id, opts);
  return { ...(await openModelFiles(files, `${repo}@${commit.slice(0, 10)}`)), repo, commit };
}

// a full quota or a private-mode browser refuses to cache: the model still loads, it is just fetched again next time
async function putQuietly(cache: { put(url: string, res: Response): Promise<void> }, url: string, res: Response): Promise<void> {
  try {
    await cache.put(url, res);
  } catch {
    /* not cached */
  }
}
