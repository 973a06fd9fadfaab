// Node edge: a WebGPU device through Dawn (npm `webgpu`). The core never imports this file.
import os from 'node:os';
import fs from 'node:fs';
import { create, globals } from 'webgpu';
import { createRuntime, type Runtime, type RuntimeOptions } from '../runtime/runtime.js';
import { openNodeTuneCache } from './tune-cache.js';

// Dawn crashes inside ProcessEvents if the object returned by create() is garbage-collected while devices live,
// so it is pinned here for the life of the process.
let pinnedGPU: GPU | null = null;

export interface NodeRuntimeOptions extends RuntimeOptions {
  /** Dawn toggles, e.g. ['disable_robustness'] */
  toggles?: string[];
  /**
   * Lower the main thread's scheduling priority on CPU adapters (default true). Dawn's Node binding busy-waits on
   * the JS thread while a GPU promise is pending; on lavapipe that spin competes with the driver's worker threads
   * for the same cores. Niceness only applies to the calling thread on Linux, so lavapipe's threads keep theirs.
   */
  niceOnCPU?: boolean;
}

export function nodeGPU(toggles: string[] = []): GPU {
  if (!process.env.XDG_RUNTIME_DIR) {
    // lavapipe warns on every start without a writable runtime dir
    const dir = `${os.tmpdir()}/ser-xdg-${process.getuid?.() ?? 0}`;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  if (!pinnedGPU) {
    Object.assign(globalThis, globals);
    const flags = toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : [];
    // profiles want the GPU clock's real resolution (Dawn rounds timestamps to ~65 us by default, a browser's defence)
    flags.push('disable-dawn-features=timestamp_quantization');
    pinnedGPU = create(flags) as unknown as GPU;
    (globalThis as any).__serPinnedGPU = pinnedGPU;
  }
  return pinnedGPU;
}

export async function createNodeRuntime(opts: NodeRuntimeOptions = {}): Promise<Runtime> {
  const gpu = nodeGPU(opts.toggles ?? ['disable_robustness']);
  const rt = await createRuntime(gpu, opts);
  // tuned kernel configurations of this adapter from earlier runs (src/runtime/tune.ts)
  rt.tuneCache = openNodeTuneCache();
  const nice = opts.niceOnCPU ?? process.env.SER_NICE !== '0';
  if (rt.adapter.isCPU && nice) {
    try {
      os.setPriority(0, 19);
    } catch {
      // not permitted: run at normal priority
    }
  }
  return rt;
}
