import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A Node built-in module loaded on first use. Synchronous require, never import(): the bundled
 * CLI is compiled from a V8 code cache (bin/gantry.js), and functions restored from a code cache
 * on Node 20 lose the dynamic-import callback (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING).
 */
export function builtin<T>(name: `node:${string}`): T {
  return require(name) as T;
}
