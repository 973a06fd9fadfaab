// The demo page's static server (tools/serve-web.mjs) under hostile requests (issue 13): a seeded fuzz of request
// lines, paths, encodings, methods and Host headers over raw sockets on 127.0.0.1 (a bounded number of requests),
// then the checks that must hold: the server still answers, every HTTP response carries nosniff, only files under
// web/ and dist/ with a known extension are served (never a secret beside them, through a symlink or an encoding),
// and a Host other than 127.0.0.1 / localhost / [::1] with the server's port is refused (DNS rebinding).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { mulberry32 } from '../src/data/random.js';

interface Served {
  url: string;
  port: number;
  close(): Promise<void>;
}

const SECRET = 'SECRET-7f3a9c';
const INDEX = '<!doctype html><title>demo</title>';

/** a scratch root: web/index.html, dist/app.js, a secret beside them, a hidden file, and a symlink pointing out */
function makeRoot(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostile-web-'));
  fs.mkdirSync(path.join(dir, 'web'));
  fs.mkdirSync(path.join(dir, 'dist'));
  fs.writeFileSync(path.join(dir, 'web/index.html'), INDEX);
  fs.writeFileSync(path.join(dir, 'dist/app.js'), 'export const x = 1;\n');
  fs.writeFileSync(path.join(dir, 'secret.txt'), SECRET);
  fs.writeFileSync(path.join(dir, 'package.json'), `{"name":"${SECRET}"}`);
  fs.writeFileSync(path.join(dir, 'web/.env'), SECRET);
  fs.writeFileSync(path.join(dir, 'web/notes.txt'), SECRET); // an extension the server does not serve
  fs.symlinkSync(path.join(dir, 'secret.txt'), path.join(dir, 'web/link.html'));
  return dir;
}

/** One raw request; resolves to the response text ('' when the server closed without answering), never rejects. */
function raw(port: number, request: string | Uint8Array, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1');
    const done = () => resolve(Buffer.concat(chunks).toString('latin1'));
    sock.setTimeout(timeoutMs, () => sock.destroy());
    // write, and half-close only later: an incomplete request would otherwise wait for the server's header timeout,
    // and an immediate FIN makes Node's server drop the answer to a complete one
    let fin: ReturnType<typeof setTimeout> | undefined;
    sock.on('connect', () => {
      sock.write(request);
      fin = setTimeout(() => sock.end(), 400);
    });
    sock.on('close', () => clearTimeout(fin));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', done);
    sock.on('close', done);
  });
}

const get = (port: number, target: string, host = `127.0.0.1:${port}`, method = 'GET') => raw(port, `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
const statusOf = (r: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(r)?.[1] ?? 0);

let server: Served;
let root: string;

test.before(async () => {
  root = makeRoot();
  // a run-time path (not bundled): the module computes its own root from its location, and runs a server when it is
  // the main module, which a bundled copy would think it is
  const mod = await import(pathToFileURL(path.resolve('tools/serve-web.mjs')).href);
  server = await mod.serve({ port: 0, dir: root });
});

test.after(async () => {
  await server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

test('serves the page with nosniff; refuses NUL, traversal, hidden files, unknown extensions and symlinks out', async () => {
  const ok = await get(server.port, '/web/index.html');
  assert.is(statusOf(ok), 200);
  assert.match(ok, /\r\nx-content-type-options: nosniff\r\n/i);
  assert.ok(ok.endsWith(INDEX));
  for (const target of [
    '/web/index.html%00',
    '/web/index.html%00.js',
    '/web/%00',
    '/web/..%2fsecret.txt',
    '/web/%2e%2e/secret.txt',
    '/web/..%5csecret.txt',
    '/%2e%2e/secret.txt',
    '/dist/../package.json',
    '/web/.env',
    '/web/notes.txt',
    '/web/link.html',
    '/secret.txt',
    '/package.json',
    '/web/index.html%',
    '/web/%E0%A4%A',
    '//etc/passwd',
    '/web/index.html\\..\\..\\secret.txt',
  ]) {
    const r = await get(server.port, target);
    const s = statusOf(r);
    assert.ok(s === 400 || s === 404, `${target}: status ${s}`);
    assert.ok(!r.includes(SECRET), `${target} leaked the secret`);
  }
  const head = await get(server.port, '/web/index.html', undefined, 'HEAD');
  assert.is(statusOf(head), 200);
  assert.is(statusOf(await get(server.port, '/web/index.html', undefined, 'POST')), 405);
});

test('Host header: only 127.0.0.1, localhost, [::1] with the server port (DNS rebinding)', async () => {
  const p = server.port;
  for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `[::1]:${p}`, `LOCALHOST:${p}`]) assert.is(statusOf(await get(p, '/web/index.html', host)), 200, host);
  for (const host of ['evil.example', `evil.example:${p}`, `127.0.0.1:${p + 1}`, '127.0.0.1', 'localhost', `127.0.0.1.evil.example:${p}`, '']) {
    const r = await get(p, '/web/index.html', host);
    assert.ok(statusOf(r) === 403 || statusOf(r) === 400, `${host}: ${statusOf(r)}`);
    assert.ok(!r.includes(INDEX), `${host} was served the page`);
  }
  // HTTP/1.0 without any Host header
  assert.ok([400, 403].includes(statusOf(await raw(p, 'GET /web/index.html HTTP/1.0\r\n\r\n'))));
});

test('seeded fuzz: 400 malformed requests, the server survives and never leaks', async () => {
  const rand = mulberry32(13);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const pieces = ['web', 'dist', '..', '.', '%2e', '%2e%2e', '%2f', '%5c', '%00', '%', '%ff', '%c0%af', 'index.html', 'app.js', 'secret.txt', '.env', 'link.html', '\\', '~', '%252e', '%u002e', ''];
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'G\x00ET', ''];
  const p = server.port;
  const kinds: Record<string, number> = {};
  const N = 400;
  for (let i = 0; i < N; i++) {
    let req: string | Uint8Array;
    const mode = rand();
    if (mode < 0.6) {
      const segs = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => pick(pieces));
      const target = `/${segs.join(rand() < 0.8 ? '/' : '')}`;
      const host = rand() < 0.8 ? `127.0.0.1:${p}` : pick(['evil.example', `localhost:${p}`, `[::1]:${p}`, '\x00', `127.0.0.1:${p}\r\nHost: evil.example`]);
      req = `${pick(methods)} ${target} HTTP/1.${rand() < 0.9 ? 1 : 0}\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
    } else if (mode < 0.8) {
      // random bytes, sometimes after a valid request line
      const n = Math.floor(rand() * 300);
      const b = new Uint8Array(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(rand() * 256);
      const prefix = rand() < 0.5 ? `GET /web/index.html HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\n` : '';
      req = Buffer.concat([Buffer.from(prefix, 'latin1'), Buffer.from(b)]);
    } else {
      // oversized and odd headers, absolute-form targets, bad versions
      req = pick([
        `GET http://evil.example/web/index.html HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\n\r\n`,
        `GET /web/index.html HTTP/9.9\r\nHost: 127.0.0.1:${p}\r\n\r\n`,
        `GET /web/${'a'.repeat(20000)} HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\n\r\n`,
        `GET /web/index.html HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nX: ${'b'.repeat(20000)}\r\n\r\n`,
        `GET /web/index.html HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nContent-Length: -1\r\n\r\n`,
        `GET /web/index.html HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`,
        `GET * HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\n\r\n`,
        `\r\n\r\n\r\n`,
      ]);
    }
    const r = await raw(p, req, 2000);
    const s = statusOf(r);
    kinds[s || 'closed'] = (kinds[s || 'closed'] ?? 0) + 1;
    assert.ok(!r.includes(SECRET), `request ${i} leaked the secret: ${JSON.stringify(String(req).slice(0, 200))}`);
    if (s === 200) assert.ok(r.includes(INDEX) || r.includes('export const x'), `request ${i}: 200 for something else`);
    if (s >= 200 && s !== 400) assert.match(r, /\r\nx-content-type-options: nosniff\r\n/i, `request ${i} (${s}) without nosniff`);
  }
  console.log(`  web fuzz: ${N} requests, responses by status: ${JSON.stringify(kinds)}`);
  // still alive and serving
  assert.is(statusOf(await get(p, '/web/index.html')), 200);
});

test.run();
