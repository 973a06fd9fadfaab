// `npm run web` (tools/serve-web.mjs) with a busy port: the default port moves on to the next free one and says so in
// one line; a port asked for by name (--port) that is busy fails in one line naming it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const root = process.cwd();
const script = path.join(root, 'tools/serve-web.mjs');

interface Served {
  url: string;
  port: number;
  requestedPort: number;
  close(): Promise<void>;
}
type Serve = (o: { port?: number; dir?: string; pickFree?: boolean }) => Promise<Served>;

/** A port held by another listener on 127.0.0.1. */
async function occupy(): Promise<{ port: number; close: () => Promise<void> }> {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const address = blocker.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { port: address.port, close: () => new Promise((r) => blocker.close(() => r())) };
}

/** Runs the server script until it prints its page URL or exits; returns what it printed and how it ended. */
function runScript(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [script, ...args], { cwd: root, env: { ...process.env, PORT: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('demo page:')) p.kill('SIGTERM');
    });
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 20000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('a busy default port: the next free one, said in one line', async () => {
  const { serve } = (await import(pathToFileURL(script).href)) as { serve: Serve };
  const busy = await occupy();
  try {
    const s = await serve({ port: busy.port, pickFree: true });
    try {
      assert.is(s.requestedPort, busy.port);
      assert.ok(s.port > busy.port && s.port < busy.port + 20, `served on ${s.port}`);
      const r = await fetch(`${s.url}/web/index.html`, { redirect: 'manual' });
      assert.ok(r.status === 200 || r.status === 404, `the server answers (${r.status})`);
    } finally {
      await s.close();
    }
    // without pickFree (a port asked for by name) it is an error naming the port
    try {
      await serve({ port: busy.port });
      assert.unreachable('a busy port was accepted');
    } catch (e) {
      assert.match((e as Error).message, new RegExp(`port ${busy.port} on 127\\.0\\.0\\.1 is in use`));
    }
  } finally {
    await busy.close();
  }
});

test('the script: --port N busy fails in one line naming it; PORT likewise; a bad --port is refused', async () => {
  const busy = await occupy();
  try {
    const r = await runScript(['--port', String(busy.port)]);
    assert.is(r.code, 1, r.stdout + r.stderr);
    const lines = r.stderr.trim().split('\n').filter((l) => !l.includes('web/dist/app.js is missing'));
    assert.is(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`^\\[web\\] port ${busy.port} on 127\\.0\\.0\\.1 is in use; choose another with --port N \\(--port ${busy.port}\\)$`));
    assert.not.match(r.stdout, /demo page/);
    const e = await runScript([], { PORT: String(busy.port) });
    assert.is(e.code, 1);
    assert.match(e.stderr, new RegExp(`port ${busy.port} .*in use.*\\(PORT ${busy.port}\\)`));
    const bad = await runScript(['--port', 'eighty']);
    assert.is(bad.code, 2);
    assert.match(bad.stderr, /--port eighty: a port number/);
  } finally {
    await busy.close();
  }
});

test.run();
