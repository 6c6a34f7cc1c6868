export * from './errors.js';
export * from './digest.js';
export * from './retry.js';
export * from './limit.js';
export * from './logger.js';
