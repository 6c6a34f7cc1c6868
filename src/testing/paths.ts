import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, found from this compiled file (dist/src/testing) or its source. */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

/**
 * Third-party conformance data lives beside the repository (../shared/conformance) and is never
 * copied in; GANTRY_CONFORMANCE overrides the location.
 */
export const conformanceDir: string = process.env.GANTRY_CONFORMANCE ?? resolve(repoRoot, '..', 'shared', 'conformance');
