#!/usr/bin/env node
// Bundles with esbuild: WGSL files become strings (loader 'text'), so no kernel is read from disk at run time.
//   build/cli.mjs            the `ser` CLI (Node), used by tests; dist/cli.mjs, the same, run by bin/ser.mjs and shipped
//   build/test/*.test.mjs    tests (one bundle per file, run by tools/run-tests.mjs with uvu)
//   build/bench/*.mjs        benchmarks
//   dist/ser.browser.js      the browser ESM bundle (no Node built-ins), when src/browser.ts exists, with
//   web/dist/*.js            the demo page and the in-page check (they import dist/ser.browser.js),
//   dist/ser.node.js         the Node library entry, and dist/*.d.ts types for both
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
if (fs.existsSync(path.join(root, 'src/node/cli.ts'))) {
  add('src/node/cli.ts', { ...node, entryPoints: ['src/node/cli.ts'], outfile: 'build/cli.mjs' });
  add('dist/cli.mjs', { ...node, entryPoints: ['src/node/cli.ts'], outfile: 'dist/cli.mjs' });
}
if (fs.existsSync(path.join(root, 'src/browser.ts'))) {
  // browser side: the library bundle, and web/*.ts (demo page, in-page check) into web/dist, which load the library
  // bundle at run time instead of inlining it. Platform 'browser' refuses to resolve a Node built-in; noNodeImports
  // also fails the build on any import left in the output other than the library bundle, or a node: specifier.
  const browser = { ...common, platform: 'browser', treeShaking: true, metafile: true };
  const library = { name: 'library-bundle', setup: (b) => b.onResolve({ filter: /(^|\/)src\/browser(\.js|\.ts)?$/ }, () => ({ path: '../../dist/ser.browser.js', external: true })) };
  const noNodeImports = (what) => (r) => {
    const outputs = Object.keys(r.metafile.outputs);
    for (const [file, out] of Object.entries(r.metafile.outputs)) {
      const bad = out.imports.filter((i) => i.path !== '../../dist/ser.browser.js' && !outputs.includes(i.path)).map((i) => i.path);
      const text = file.endsWith('.js') ? fs.readFileSync(path.join(root, file), 'utf8') : '';
      if (/["'`]node:[a-z]/.test(text)) bad.push('a node: specifier');
      if (bad.length) throw new Error(`${what}: the browser bundle ${file} must not import ${bad.join(', ')}`);
      const nodeOnly = text.match(/\bprocess\.(env|argv|exit|cwd)\b[^\n]{0,60}/);
      if (nodeOnly) console.warn(`[build] warning: ${file} uses Node's process object, which browsers lack: ${nodeOnly[0]}`);
    }
  };
  // split: the audio decoders (WebAssembly, ~200 kB) become chunks loaded only when decodeAudio meets their format
  fs.rmSync(path.join(root, 'dist/chunks'), { recursive: true, force: true });
  const lib = { ...browser, entryPoints: { 'ser.browser': 'src/browser.ts' }, outdir: 'dist', splitting: true, chunkNames: 'chunks/[name]-[hash]' };
  jobs.push(esbuild.build(lib).then(noNodeImports('src/browser.ts')).then(() => null, (e) => `src/browser.ts: ${e.message}`));
  for (const w of list('web', /\.ts$/)) {
    jobs.push(esbuild.build({ ...browser, entryPoints: [w], outfile: `web/dist/${path.basename(w, '.ts')}.js`, plugins: [library] }).then(noNodeImports(w)).then(() => null, (e) => `${w}: ${e.message}`));
  }
  // the Node library entry: the core plus the Node edge (Dawn runtime, model directories)
  // the Node audioClassifier (folder paths, Hub ids, audio files) is exported by name, so it takes the place of the core's
  const nodeEntry = "export * from './src/index.ts';\nexport * from './src/node/dawn.ts';\nexport * from './src/node/modeldir.ts';\nexport * from './src/node/hub.ts';\nexport { audioClassifier, type NodeAudioClassifierOptions } from './src/node/pipeline.ts';\n";
  add('dist/ser.node.js', { ...node, stdin: { contents: nodeEntry, resolveDir: root, sourcefile: 'ser.node.ts', loader: 'ts' }, outfile: 'dist/ser.node.js' });
  jobs.push(declarations());
}
// .d.ts for both library entries (tsc emits even when it also reports type errors: those are typecheck's business)
async function declarations() {
  const { spawn } = await import('node:child_process');
  // declarations of modules since removed must not linger (npm pack ships dist/)
  fs.rmSync(path.join(root, 'dist/types'), { recursive: true, force: true });
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
  const files = ['src/browser.ts', 'src/index.ts', 'src/node/dawn.ts', 'src/node/modeldir.ts', 'src/node/hub.ts', 'src/node/pipeline.ts', 'src/wgsl.d.ts'];
  const flags = ['--ignoreConfig', '--declaration', '--emitDeclarationOnly', '--outDir', 'dist/types', '--rootDir', 'src', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', '@webgpu/types,node', '--lib', 'es2022,dom', '--resolveJsonModule'];
  const out = await new Promise((resolve) => {
    const p = spawn(process.execPath, [tsc, ...flags, ...files], { cwd: root });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.stderr.on('data', (d) => (text += d));
    p.on('close', () => resolve(text));
  });
  if (!fs.existsSync(path.join(root, 'dist/types/browser.d.ts'))) return `declarations (tsc): ${out.slice(0, 2000)}`;
  fs.writeFileSync(path.join(root, 'dist/ser.browser.d.ts'), "export * from './types/browser.js';\n");
  fs.writeFileSync(path.join(root, 'dist/ser.node.d.ts'), "export * from './types/index.js';\nexport * from './types/node/dawn.js';\nexport * from './types/node/modeldir.js';\nexport * from './types/node/hub.js';\nexport { audioClassifier, type NodeAudioClassifierOptions } from './types/node/pipeline.js';\n");
  return null;
}
const errors = (await Promise.all(jobs)).filter(Boolean);
console.log(`[build] ${tests.length} test bundle(s), ${benches.length} bench bundle(s) in ${Date.now() - t0} ms`);
if (errors.length) {
  console.error(`[build] ${errors.length} bundle(s) failed:\n${errors.join('\n')}`);
  process.exit(1);
}
