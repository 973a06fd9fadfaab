import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
globalThis.__gpu = gpu;
const a = await gpu.requestAdapter();
console.log('adapter', a && a.info);
if (a) { console.log([...a.features]); console.log(a.limits.maxStorageBufferBindingSize, a.limits.maxComputeWorkgroupStorageSize);}
