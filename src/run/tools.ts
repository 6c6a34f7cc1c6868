import { findExecutable as findInPath } from '../util/find-executable.js';
import { GantryError } from '../util/errors.js';

/**
 * Host programs the ns backend execs. They are looked up once, by absolute path, from a fixed
 * system PATH: the helper chain runs with an empty environment before it reaches the RUN's
 * own, so nothing may depend on the RUN's PATH.
 */
export interface NsTools {
  unshare: string;
  setpriv: string;
  mount: string;
  env: string;
  sh: string;
  /** iproute2; only needed to bring `lo` up for `--network=none`. */
  ip?: string;
}

export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `which` over the system directories (not the caller's PATH: RUN tools must be the host's own). */
export function findExecutable(name: string, pathEnv: string = SYSTEM_PATH): string | undefined {
  return findInPath(name, pathEnv);
}

const PACKAGES: Record<string, string> = {
  unshare: 'util-linux',
  setpriv: 'util-linux (Debian: package `util-linux`; Alpine: `setpriv`)',
  mount: 'util-linux (`mount`)',
  env: 'coreutils',
  sh: 'a POSIX shell (dash, bash or busybox)',
};

/** Finds the tools, or lists every missing one with the package that provides it. */
export function findNsTools(): NsTools {
  const found: Partial<NsTools> = {};
  const missing: string[] = [];
  for (const name of ['unshare', 'setpriv', 'mount', 'env', 'sh'] as const) {
    const path = findExecutable(name);
    if (path) found[name] = path;
    else missing.push(`${name} (${PACKAGES[name]})`);
  }
  if (missing.length > 0) {
    throw new GantryError('UNSUPPORTED', `the ns sandbox needs programs that are not installed: ${missing.join(', ')}`, {
      hint: 'install them, or choose another --sandbox backend',
    });
  }
  found.ip = findExecutable('ip');
  return found as NsTools;
}
