#!/usr/bin/env node
// Entry of `npx ser`: runs the prebuilt CLI bundle (dist/cli.mjs, shipped in the npm package). Only in a source
// checkout that was never built does it build first, with the checkout's own esbuild (a devDependency).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.mjs');
if (!fs.existsSync(cli)) {
  const build = path.join(root, 'tools/build.mjs');
  if (!fs.existsSync(build)) {
    console.error(`ser: ${cli} is missing and this installation has no tools/build.mjs to build it: reinstall ser-webgpu`);
    process.exit(1);
  }
  execFileSync(process.execPath, [build], { stdio: 'inherit', cwd: root });
}
await import(pathToFileURL(cli).href);
