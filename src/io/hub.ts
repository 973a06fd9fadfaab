// What the Node and browser Hub loaders share (core: no Node imports): Hugging Face model ids (`org/name[@revision]`),
// which files of a repository make a model folder (the same preference as openModelDir), and errors that name the
// model and say what to do.
import { WEIGHT_FILES } from './modelfiles.js';
import { parseShardIndex } from './source.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubId {
  /** `org/name` */
  repo: string;
  /** branch, tag or commit; 'main' when the id names none */
  revision: string;
}

// huggingface_hub's rule: word characters, '-', '.', no '--' or '..', at most 96 characters per id
const NAME = /^[A-Za-z0-9_][\w.-]*$/;
const COMMIT = /^[0-9a-f]{40}$/;

/** True when `s` has the shape of a Hub model id (`org/name`, optional `@revision`); says nothing about existence. */
export function looksLikeHubId(s: string): boolean {
  try {
    parseHubId(s);
    return true;
  } catch {
    return false;
  }
}

/** Parses `org/name` or `org/name@revision`; `revision` (an option) wins only when the id names none. */
export function parseHubId(s: string, revision?: string): HubId {
  const at = s.indexOf('@');
  const repo = at < 0 ? s : s.slice(0, at);
  const fromId = at < 0 ? undefined : s.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p)) || repo.includes('--') || repo.includes('..') || repo.length > 96) {
    throw new HubError('bad-id', `'${s}' is neither a local folder nor a Hugging Face model id (org/name, optionally @revision)`);
  }
  if (fromId !== undefined && revision !== undefined && fromId !== revision) {
    throw new HubError('bad-id', `model ${repo}: the id names revision '${fromId}' but the revision option says '${revision}'`);
  }
  const rev = fromId ?? revision ?? 'main';
  // revisions become cache paths (refs/<revision>): no empty, absolute or parent segments
  if (!/^[\w.\-/]{1,200}$/.test(rev) || rev.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) {
    throw new HubError('bad-id', `model ${repo}: '${rev}' is not a valid revision (a branch, tag or commit)`);
  }
  return { repo, revision: rev };
}

export function isCommitHash(s: string): boolean {
  return COMMIT.test(s);
}

export type HubErrorCode = 'bad-id' | 'not-found' | 'revision-not-found' | 'gated' | 'unauthorized' | 'network' | 'offline' | 'no-weights' | 'no-config' | 'bad-response' | 'http';

/** A Hub failure, one line: the model, what happened, what to do. `code` is for programs. */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

/** The error for an HTTP failure of the Hub, from its status and X-Error-Code header (as huggingface_hub reads them). */
export function hubHttpError(opts: { repo: string; revision: string; endpoint: string; status: number; errorCode?: string | null; file?: string; gated?: boolean; hasToken: boolean }): HubError {
  const { repo, revision, endpoint, status, errorCode, file, hasToken } = opts;
  const what = file ? `${file} of model ${repo}` : `model ${repo}`;
  if (errorCode === 'GatedRepo' || (opts.gated && (status === 401 || status === 403))) {
    return new HubError(
      'gated',
      `model ${repo} is gated (HTTP ${status}): accept its terms at ${endpoint}/${repo} with your account, then set HF_TOKEN to a read token of that account${hasToken ? ' (the token given is not allowed yet)' : ''}`,
    );
  }
  if (errorCode === 'RevisionNotFound') return new HubError('revision-not-found', `model ${repo}: revision '${revision}' does not exist on ${endpoint} (HTTP ${status}); use a branch, tag or commit of the repository`);
  if (errorCode === 'EntryNotFound') return new HubError('not-found', `${what} at revision ${revision}: no such file on ${endpoint} (HTTP ${status})`);
  if (errorCode === 'RepoNotFound' || status === 404 || (status === 401 && !hasToken)) {
    return new HubError(
      'not-found',
      `model ${repo}: not found on ${endpoint} (HTTP ${status}) and no local folder has that name; check the id, or for a private model set HF_TOKEN to a token that can read it`,
    );
  }
  if (status === 401 || status === 403) return new HubError('unauthorized', `${what}: access refused by ${endpoint} (HTTP ${status}); check that HF_TOKEN is valid and can read this repository`);
  return new HubError('http', `${what}: ${endpoint} answered HTTP ${status}; try again later, or pass a local folder`);
}

/** The files to download, in transformers' preference, from the repository's file list. */
export function pickHubFiles(repo: string, revision: string, files: readonly string[]): { config: string; preprocessor?: string; weights: (typeof WEIGHT_FILES)[number] } {
  if (!files.includes('config.json')) {
    throw new HubError('no-config', `model ${repo} (revision ${revision}) has no config.json: it is not a transformers model repository (it has: ${files.slice(0, 12).join(', ') || 'no files'})`);
  }
  const weights = WEIGHT_FILES.find((f) => files.includes(f));
  if (!weights) {
    const other = files.find((n) => /^(tf_model\.h5|flax_model\.msgpack|.*\.onnx|.*\.ckpt|.*\.gguf)$/.test(n));
    throw new HubError(
      'no-weights',
      `model ${repo} (revision ${revision}) has no model.safetensors or pytorch_model.bin (nor their sharded indexes)${other ? `, only ${other}` : ''}; pick a repository with PyTorch or safetensors weights, or convert it with transformers (from_pretrained then save_pretrained) and pass the folder`,
    );
  }
  return { config: 'config.json', preprocessor: files.includes('preprocessor_config.json') ? 'preprocessor_config.json' : undefined, weights };
}

/** Shard file names of a sharded index (checked: plain names beside the index). */
export function shardFiles(indexText: string, indexName: string): string[] {
  return parseShardIndex(indexText, indexName).shards;
}

/** The message of a fetch failure that never got an HTTP answer (DNS, refused, reset, TLS), with its cause. */
export function networkCause(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const cause = (e as { cause?: unknown }).cause;
  const code = cause && typeof cause === 'object' && 'code' in cause ? String((cause as { code: unknown }).code) : undefined;
  if (e.name === 'TypeError' && /fetch failed|Failed to fetch|NetworkError|Load failed/i.test(e.message)) return code ?? e.message;
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return 'timed out';
  return undefined;
}
