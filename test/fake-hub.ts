// A stand-in for huggingface.co on 127.0.0.1 for tests (nothing reaches the internet). It answers what
// @huggingface/hub and the browser loader call, as the Hub does: GET /api/models/<id>/revision/<rev> (sha, siblings,
// gated), POST /api/models/<id>/paths-info/<rev> (git oid, LFS sha256 and size), GET /<id>/resolve/<rev>/<file>
// (Range, ETag / X-Linked-Etag, X-Repo-Commit; LFS files redirect to a CDN path), X-Error-Code on refusals
// (RepoNotFound 401/404, RevisionNotFound 404, EntryNotFound 404, GatedRepo 401/403). Repositories are built from the
// fixtures in test/fixtures; /page.html and /dist/*.js serve a same-origin page for the browser test.
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';

const root = process.cwd();
export const fixture = (dir: string, files: string[]) => new Map(files.map((f) => [f, fs.readFileSync(path.join(root, 'test/fixtures', dir, f))] as const));
export const commitOf = (name: string) => crypto.createHash('sha1').update(name).digest('hex');
export const gitOid = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
export const isLfs = (f: string) => /\.(safetensors|bin|h5)$/.test(f);

export interface Repo {
  commit: string;
  files: Map<string, Buffer>;
  gated?: boolean;
  /** serve these bytes instead of the real content (a corrupt download) */
  tamper?: Map<string, Buffer>;
}
export const W2V = ['config.json', 'preprocessor_config.json', 'model.safetensors', 'pytorch_model.bin'];
export const repos = new Map<string, Repo>([
  ['test-org/w2v-400', { commit: commitOf('w2v'), files: fixture('w2v_400', [...W2V, 'manifest.json']) }],
  ['test-org/gated', { commit: commitOf('gated'), files: fixture('w2v_400', W2V), gated: true }],
  ['test-org/bin-only', { commit: commitOf('bin'), files: fixture('w2v_400', ['config.json', 'pytorch_model.bin']) }],
  ['test-org/no-weights', { commit: commitOf('nw'), files: new Map([...fixture('w2v_400', ['config.json']), ['tf_model.h5', Buffer.from('HDF5')]]) }],
  [
    'test-org/sharded',
    { commit: commitOf('sharded'), files: new Map([...fixture('w2v_400', ['config.json']), ...fixture('io/sharded_st', ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'])]) },
  ],
  ['test-org/corrupt', { commit: commitOf('corrupt'), files: fixture('w2v_400', ['config.json', 'model.safetensors']), tamper: new Map([['model.safetensors', Buffer.alloc(fs.statSync(path.join(root, 'test/fixtures/w2v_400/model.safetensors')).size, 7)]]) }],
]);

export const requests: string[] = [];
export function refuse(res: http.ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
  res.end(JSON.stringify({ error: message }));
}
export function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, headers: Record<string, string>): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : body.length - 1, body.length - 1);
    res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': String(end - start + 1), 'accept-ranges': 'bytes' });
    res.end(body.subarray(start, end + 1));
  } else {
    res.writeHead(200, { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' });
    res.end(body);
  }
}
export const server = http.createServer((req, res) => {
  const url = new URL(req.url!, 'http://x');
  // pages on another origin (the browser test) may read every answer, as from huggingface.co and its CDN
  res.setHeader('access-control-allow-origin', '*');
  requests.push(`${req.method} ${url.pathname}`);
  const p = decodeURIComponent(url.pathname);
  const token = req.headers.authorization;
  let m: RegExpExecArray | null;
  if (p.startsWith('/api/models/test-org/slow/')) {
    // answers long after the client's metadata timeout
    setTimeout(() => refuse(res, 404, 'RepoNotFound', 'late'), 2500);
    return;
  }
  if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(p))) {
    const repo = repos.get(m[1]);
    if (!repo) return refuse(res, token ? 404 : 401, 'RepoNotFound', 'Repository not found');
    if (m[2] !== 'main' && m[2] !== repo.commit) return refuse(res, 404, 'RevisionNotFound', 'Invalid rev id');
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ _id: m[1], id: m[1], sha: repo.commit, private: false, gated: repo.gated ? 'manual' : false, lastModified: '2026-01-01T00:00:00.000Z', downloads: 0, likes: 0, siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })) }));
  }
  if (req.method === 'POST' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/(.+)$/.exec(p))) {
    const repo = repos.get(m[1]);
    if (!repo) return refuse(res, 401, 'RepoNotFound', 'Repository not found');
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const { paths } = JSON.parse(body) as { paths: string[] };
      const out = paths.filter((f) => repo.files.has(f)).map((f) => {
        const b = repo.files.get(f)!;
        const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\nsize ${b.length}\n`;
        return isLfs(f) ? { type: 'file', path: f, oid: gitOid(Buffer.from(pointer)), size: b.length, lfs: { oid: sha256(b), size: b.length, pointerSize: pointer.length } } : { type: 'file', path: f, oid: gitOid(b), size: b.length };
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    });
    return;
  }
  if ((m = /^\/cdn\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(p))) {
    const repo = repos.get(m[1])!;
    const file = [...repo.files].find(([, b]) => sha256(b) === m![2]);
    if (!file) return refuse(res, 404, 'EntryNotFound', 'no such object');
    return sendBytes(req, res, repo.tamper?.get(file[0]) ?? file[1], { etag: `"${m[2]}"`, 'content-type': 'application/octet-stream' });
  }
  if ((m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p))) {
    const repo = repos.get(m[1]);
    if (!repo) return refuse(res, 401, 'RepoNotFound', 'Repository not found');
    if (repo.gated && token !== 'Bearer hf_accepted') return refuse(res, token ? 403 : 401, 'GatedRepo', `Access to model ${m[1]} is restricted`);
    const b = repo.files.get(m[3]);
    if (!b) return refuse(res, 404, 'EntryNotFound', 'Entry not found');
    const common = { 'x-repo-commit': repo.commit, 'access-control-expose-headers': 'x-repo-commit,x-linked-etag,x-linked-size,x-error-code' };
    if (isLfs(m[3])) {
      // the Hub redirects LFS files to its CDN, another host, and says their sha256 and size here: clients must take commit, etag and size from this answer (Python's
      // huggingface_hub follows only relative redirects on its HEAD request)
      const cdn = `http://localhost:${(server.address() as AddressInfo).port}`;
      res.writeHead(302, { ...common, location: `${cdn}/cdn/${m[1]}/${sha256(b)}`, 'x-linked-etag': `"${sha256(b)}"`, 'x-linked-size': String(b.length) });
      return res.end();
    }
    return sendBytes(req, res, repo.tamper?.get(m[3]) ?? b, { ...common, etag: `"${gitOid(b)}"`, 'content-type': 'text/plain; charset=utf-8' });
  }
  // the browser test's page and the library bundle, from the same origin
  if (p === '/page.html') {
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end('<!doctype html><meta charset="utf-8"><title>hub</title>');
  }
  if ((m = /^\/dist\/([\w./-]+\.js)$/.exec(p)) && !m[1].includes('..') && fs.existsSync(path.join(root, 'dist', m[1]))) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(fs.readFileSync(path.join(root, 'dist', m[1])));
  }
  refuse(res, 404, 'NotFound', `no route ${req.method} ${p}`);
});

/** Starts the server; resolves to its endpoint (http://127.0.0.1:<port>). */
export const startServer = () => new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
export const stopServer = () => new Promise<void>((resolve) => server.close(() => resolve()));
