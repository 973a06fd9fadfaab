// `node build/bench/readme.mjs`: rewrite README.md's benchmark table from the committed bench/results.json (what a full
// `npm run bench` does at its end), e.g. after editing the row selection in bench/lib/readme-table.ts.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withReadmeTable } from './lib/readme-table.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const readme = path.join(root, 'README.md');
const results = JSON.parse(fs.readFileSync(path.join(root, 'bench/results.json'), 'utf8'));
fs.writeFileSync(readme, withReadmeTable(fs.readFileSync(readme, 'utf8'), results));
console.log(`${readme}: benchmark table from bench/results.json (${results.date})`);
