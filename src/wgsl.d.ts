// WGSL sources are bundled as text by esbuild (loader '.wgsl': 'text'), so browsers get them without file reads.
declare module '*.wgsl' {
  const source: string;
  export default source;
}

// wgsl_reflect's CommonJS "main" does not load as ESM in Node; its ES module build is imported directly.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
