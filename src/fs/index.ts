export * from './unpack/index.js';
export * from './diff/index.js';
