#!/usr/bin/env node
// Static server for the demo page (`npm run web`), listening on 127.0.0.1 only. Serves web/ and dist/ from the
// repository root (the page at /web/index.html loads /web/dist/app.js, which loads /dist/ser.browser.js); nothing
// else in the checkout is reachable. WebGPU needs a secure context: localhost is one, so plain http is enough.
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

/** Starts the server; port 0 picks a free one. Resolves to its URL and a close() function. */
export function serve({ port = 8080, dir = root } = {}) {
  const server = http.createServer((req, res) => {
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname).replace(/^\/+/, '');
    } catch {
      res.writeHead(400).end('bad request');
      return;
    }
    if (rel === '' || rel === 'web') {
      res.writeHead(302, { location: '/web/index.html' }).end();
      return;
    }
    const file = path.resolve(dir, rel);
    const inside = SERVED.some((p) => file.startsWith(path.join(dir, p)));
    if (!inside || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) {
        const hint = rel.startsWith('dist/') || rel.startsWith('web/dist/') ? ' (run `npm run build` first)' : '';
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: /${rel}${hint}`);
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': st.size,
        'cache-control': 'no-cache',
      });
      if (req.method === 'HEAD') res.end();
      else fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: actual } = server.address();
      resolve({ url: `http://127.0.0.1:${actual}`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT ?? 8080);
  if (!fs.existsSync(path.join(root, 'web/dist/app.js'))) console.warn('[web] web/dist/app.js is missing: run `npm run build` first');
  const { url } = await serve({ port });
  console.log(`[web] demo page: ${url}/web/index.html  (Chrome/Edge 113+; on Linux start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan)`);
  console.log('[web] choose the model folder `npm run demo` wrote (demo-out/run/model: config.json, model.safetensors, preprocessor_config.json), then an audio file or a recording');
}
