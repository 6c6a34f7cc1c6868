export * from './unpack/index.js';
export * from './diff/index.js';
export * from './snapshot/index.js';
export * from './tree/index.js';
export { lstatOrUndefined } from './stat.js';
