#!/usr/bin/env node
// Bundles with esbuild: WGSL files become strings (loader 'text'), so no kernel is read from disk at run time.
//   build/cli.mjs            the `ser` CLI (Node)
//   build/test/*.test.mjs    tests (one bundle per file, run by tools/run-tests.mjs with uvu)
//   build/bench/*.mjs        benchmarks
//   dist/ser.browser.js      the browser ESM bundle (no Node built-ins), when src/browser.ts exists
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const list = (dir, re) => (fs.existsSync(path.join(root, dir)) ? fs.readdirSync(path.join(root, dir)).filter((f) => re.test(f)).map((f) => path.join(dir, f)) : []);

const common = {
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  loader: { '.wgsl': 'text' },
  sourcemap: 'linked',
  logLevel: 'warning',
  target: 'es2022',
};
const node = {
  ...common,
  platform: 'node',
  packages: 'external',
  // bundles share no state with each other; createRequire lets CommonJS deps load from ESM output
  banner: { js: "import { createRequire as __ser_createRequire } from 'node:module'; const require = __ser_createRequire(import.meta.url);" },
};

const t0 = Date.now();
// one esbuild call per entry: a file that fails to compile breaks only its own bundle, and is reported
const jobs = [];
const add = (what, opts) => jobs.push(esbuild.build(opts).then(() => null, (e) => `${what}: ${e.message}`));
const tests = list('test', /\.test\.ts$/);
for (const t of tests) add(t, { ...node, entryPoints: [t], outfile: `build/test/${path.basename(t, '.ts')}.mjs` });
const benches = list('bench', /\.ts$/);
for (const b of benches) add(b, { ...node, entryPoints: [b], outfile: `build/bench/${path.basename(b, '.ts')}.mjs` });
if (fs.existsSync(path.join(root, 'src/node/cli.ts'))) add('src/node/cli.ts', { ...node, entryPoints: ['src/node/cli.ts'], outfile: 'build/cli.mjs' });
if (fs.existsSync(path.join(root, 'src/browser.ts'))) {
  add('src/browser.ts', { ...common, platform: 'browser', entryPoints: ['src/browser.ts'], outfile: 'dist/ser.browser.js', treeShaking: true });
}
const errors = (await Promise.all(jobs)).filter(Boolean);
console.log(`[build] ${tests.length} test bundle(s), ${benches.length} bench bundle(s) in ${Date.now() - t0} ms`);
if (errors.length) {
  console.error(`[build] ${errors.length} bundle(s) failed:\n${errors.join('\n')}`);
  process.exit(1);
}
