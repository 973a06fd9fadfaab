// The data side in one import: manifests, label sets, seeded splits, batching, randomness.
export * from './manifest.js';
export * from './labels.js';
export * from './split.js';
export * from './batch.js';
export * from './random.js';
