#!/usr/bin/env node
// Entry of `npx ser`: runs the bundled CLI, building it first if this checkout was never built.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'build/cli.mjs');
if (!fs.existsSync(cli)) execFileSync(process.execPath, [path.join(root, 'tools/build.mjs')], { stdio: 'inherit', cwd: root });
await import(pathToFileURL(cli).href);
