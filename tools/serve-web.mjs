#!/usr/bin/env node
// Static server for the demo page (`npm run web`), listening on 127.0.0.1 only. Serves web/ and dist/ from the
// repository root (the page at /web/index.html loads /web/dist/app.js, which loads /dist/ser.browser.js); nothing
// else in the checkout is reachable. WebGPU needs a secure context: localhost is one, so plain http is enough.
// Hostile requests: only GET/HEAD of files under web/ and dist/ with a known extension (no hidden files, no control
// characters such as %00, no symlink leading out) are served; the Host header must be 127.0.0.1, localhost or [::1]
// with this server's port (DNS rebinding); every response says X-Content-Type-Options: nosniff; a handler error or
// a malformed request is answered (or the socket closed), never an uncaught exception.
//   node tools/serve-web.mjs [--port 8080]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SERVED = ['web/', 'dist/'];
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
  '.wav': 'audio/wav',
};

/** Host header values this server answers to (DNS rebinding: a page on another site that makes its own name resolve
 * to 127.0.0.1 still sends that name as Host, and is refused). */
function allowedHosts(port) {
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
}

/** The file a request path names, or null when it is not one this server means to serve. */
function servedFile(dir, rel) {
  // no NUL or control characters (fs refuses NUL with a TypeError), no backslashes, no hidden files or folders
  if (/[\x00-\x1f\x7f\\]/.test(rel)) return null;
  const segments = rel.split('/');
  if (segments.some((s) => s === '' || s.startsWith('.'))) return null;
  if (!SERVED.some((p) => rel.startsWith(p))) return null;
  if (!Object.prototype.hasOwnProperty.call(TYPES, path.extname(rel))) return null;
  const file = path.resolve(dir, rel);
  if (!SERVED.some((p) => file.startsWith(path.join(dir, p)))) return null;
  return file;
}

/** How many ports from the default one `npm run web` tries when it is busy. */
const PORT_TRIES = 20;
export const DEFAULT_PORT = 8080;

/** Starts the server; port 0 picks a free one, and pickFree moves up from a busy port. Resolves to its URL, port, the
 * port asked for, and a close() function. */
export function serve({ port = DEFAULT_PORT, dir = root, pickFree = false } = {}) {
  let hosts = allowedHosts(port);
  const realDir = fs.realpathSync(dir);
  const send = (res, status, body, headers = {}) => {
    if (res.headersSent) return res.destroy();
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', ...headers }).end(body);
  };
  const handle = (req, res) => {
    if (!hosts.has(String(req.headers.host ?? '').toLowerCase())) {
      send(res, 403, 'forbidden: this server answers only to 127.0.0.1, localhost and [::1] on its own port\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname).replace(/^\/+/, '');
    } catch {
      send(res, 400, 'bad request\n');
      return;
    }
    if (rel === '' || rel === 'web' || rel === 'web/') {
      send(res, 302, '', { location: '/web/index.html' });
      return;
    }
    const file = servedFile(dir, rel);
    if (!file) {
      send(res, 404, 'not found\n');
      return;
    }
    const notFound = () => {
      const hint = rel.startsWith('dist/') || rel.startsWith('web/dist/') ? ' (run `npm run build` first)' : '';
      send(res, 404, `not found: /${rel}${hint}\n`);
    };
    // a symlink inside web/ or dist/ must not lead outside them
    fs.realpath(file, (err, real) => {
      if (err || !SERVED.some((p) => real.startsWith(path.join(realDir, p)))) return notFound();
      fs.stat(real, (err2, st) => {
        if (err2 || !st.isFile()) return notFound();
        res.writeHead(200, {
          'content-type': TYPES[path.extname(file)],
          'content-length': st.size,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        });
        if (req.method === 'HEAD') return res.end();
        const stream = fs.createReadStream(real);
        stream.on('error', () => res.destroy());
        stream.pipe(res);
      });
    });
  };
  const server = http.createServer((req, res) => {
    // whatever a request holds, it never takes the server down
    try {
      handle(req, res);
    } catch {
      try {
        send(res, 500, 'internal error\n');
      } catch {
        res.destroy();
      }
    }
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  // a busy port: with pickFree, the next ones up (at most PORT_TRIES); otherwise a one-line error naming it
  return new Promise((resolve, reject) => {
    let tryPort = port;
    const attempt = () => {
      server.once('error', onError);
      server.listen(tryPort, '127.0.0.1', () => {
        server.removeListener('error', onError);
        const { port: actual } = server.address();
        hosts = allowedHosts(actual);
        resolve({ url: `http://127.0.0.1:${actual}`, port: actual, requestedPort: port, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) });
      });
    };
    const onError = (err) => {
      if (err.code === 'EADDRINUSE' && pickFree && port !== 0 && tryPort < port + PORT_TRIES - 1 && tryPort < 65535) {
        tryPort++;
        attempt();
        return;
      }
      const e = new Error(err.code === 'EADDRINUSE'
        ? pickFree ? `ports ${port}-${tryPort} on 127.0.0.1 are all in use; choose one with --port N` : `port ${port} on 127.0.0.1 is in use; choose another with --port N`
        : `cannot listen on 127.0.0.1:${tryPort}: ${err.message}`);
      e.code = err.code;
      reject(e);
    };
    attempt();
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // --port N or PORT=N is a port asked for by name: busy means an error; the default moves on to a free one
  const i = process.argv.indexOf('--port');
  const given = i > 0 ? { text: process.argv[i + 1], from: '--port' } : process.env.PORT ? { text: process.env.PORT, from: 'PORT' } : null;
  const port = given ? Number(given.text) : DEFAULT_PORT;
  if (given && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    console.error(`[web] ${given.from} ${given.text ?? '(nothing)'}: a port number from 0 to 65535 is needed`);
    process.exit(2);
  }
  if (!fs.existsSync(path.join(root, 'web/dist/app.js'))) console.warn('[web] web/dist/app.js is missing: run `npm run build` first');
  let url;
  try {
    ({ url } = await serve({ port, pickFree: !given }).then((s) => {
      if (s.port !== s.requestedPort) console.log(`[web] port ${s.requestedPort} is in use; serving on ${s.port} instead`);
      return s;
    }));
  } catch (e) {
    console.error(`[web] ${e.message}${given ? ` (${given.from} ${given.text})` : ''}`);
    process.exit(1);
  }
  console.log(`[web] demo page: ${url}/web/index.html  (Chrome/Edge 113+; on Linux start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan)`);
  console.log('[web] choose the model folder `npm run demo` wrote (demo-out/run/model: config.json, model.safetensors, preprocessor_config.json), then an audio file or a recording');
}
