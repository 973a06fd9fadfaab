// Browser entry (bundled to dist/ser.browser.js): the core API plus a runtime on navigator.gpu.
import { createRuntime, type Runtime, type RuntimeOptions } from './runtime/runtime.js';
import { LocalStorageTuneCache } from './runtime/tune.js';

export * from './index.js';
export { fetchHubModelFiles, openHubModel, type HubFetchOptions, type HubModelFiles, type CacheStorageLike } from './io/hub-browser.js';
export { HubError, parseHubId, looksLikeHubId, type HubErrorCode, type HubId } from './io/hub.js';

export interface BrowserRuntimeOptions extends RuntimeOptions {
  powerPreference?: GPUPowerPreference;
  /** a GPU object other than navigator.gpu (a worker's, or a test double) */
  gpu?: GPU;
}

/** WebGPU support in this page (navigator.gpu exists; an adapter may still be refused). */
export function hasWebGPU(): boolean {
  return typeof navigator !== 'undefined' && 'gpu' in navigator && !!navigator.gpu;
}

/** A Runtime on the page's (or worker's) WebGPU device, with the adapter's real limits and features. */
export async function createBrowserRuntime(opts: BrowserRuntimeOptions = {}): Promise<Runtime> {
  const gpu = opts.gpu ?? (hasWebGPU() ? navigator.gpu : null);
  if (!gpu) {
    throw new Error(
      'WebGPU is not available in this browser (navigator.gpu is missing). Use Chrome or Edge 113+ (on Linux: ' +
        '--enable-unsafe-webgpu --enable-features=Vulkan), Safari 26+, or Firefox 141+ on Windows; the page must be served ' +
        'over https or from localhost.',
    );
  }
  const rt = await createRuntime(gpu, opts);
  // tuned kernel configurations of this adapter from earlier visits (workers have no localStorage: none kept there)
  if (typeof localStorage !== 'undefined') rt.tuneCache = new LocalStorageTuneCache(localStorage);
  return rt;
}
