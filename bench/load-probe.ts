// Child process of bench/lib/model.ts: loads a model directory into GPU tensors and prints its own peak RSS (kB), so
// the figure is the loader's alone.
import { createNodeRuntime } from '../src/node/dawn.js';
import { loadModel } from '../src/node/train-cmd.js';

const dir = process.argv[2];
const rt = await createNodeRuntime();
const t0 = performance.now();
const { model } = await loadModel(rt, dir);
await rt.sync();
const seconds = (performance.now() - t0) / 1000;
console.log(`MAXRSS=${process.resourceUsage().maxRSS} SECONDS=${seconds}`);
model.dispose();
rt.destroy();
process.exit(0);
