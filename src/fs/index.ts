export * from './unpack/index.js';
