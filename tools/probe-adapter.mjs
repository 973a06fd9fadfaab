// Prints one JSON line describing the WebGPU adapter Dawn finds (or {"adapter":null}). Used by setup.
import os from 'node:os';
import fs from 'node:fs';
import { create, globals } from 'webgpu';
if (!process.env.XDG_RUNTIME_DIR) {
  const dir = `${os.tmpdir()}/ser-xdg-${process.getuid?.() ?? 0}`;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}
Object.assign(globalThis, globals);
const gpu = create([]);
globalThis.__pinned = gpu;
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.log(JSON.stringify({ adapter: null }));
} else {
  const i = adapter.info;
  console.log(JSON.stringify({ adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description }, features: [...adapter.features] }));
}
process.exit(0);
