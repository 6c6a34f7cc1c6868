import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { GantryError, wrapError } from '../../util/errors.js';

/** Bound on symlinks followed while resolving one path (Linux stops at 40; we are generous). */
export const MAX_SYMLINKS = 255;

/** The calls resolution makes; a caller may hand in another file system (an in-memory root). */
export interface ResolveFsOps {
  lstat(path: string): { isSymbolicLink(): boolean };
  readlink(path: string): string;
}

const diskResolveOps: ResolveFsOps = { lstat: lstatSync, readlink: (p) => readlinkSync(p) };

export interface ResolveOptions {
  /** Follow a symlink in the last component too (false for the entry being written or removed). */
  followFinal: boolean;
}

/**
 * Resolves `path` (relative to `root`, or absolute meaning relative to it) the way the kernel would
 * after chroot(root): every symlink met on the way is read and its target, absolute or relative,
 * is interpreted inside the root, and `..` stops at the root. The result can therefore never name
 * anything outside the root, whatever the layer put on disk before. Components that do not exist
 * are kept as written (they will be created).
 *
 * Returns the resolved components relative to the root. Not atomic against other writers of the
 * tree: the unpacker is the only writer while a layer is applied.
 */
export function resolveComponentsInRoot(
  root: string,
  path: string | readonly string[],
  opts: ResolveOptions,
  fsOps: ResolveFsOps = diskResolveOps,
): string[] {
  const pending = (typeof path === 'string' ? path.split('/') : [...path]).reverse();
  const resolved: string[] = [];
  let followed = 0;
  while (pending.length > 0) {
    const part = pending.pop()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (pending.length === 0 && !opts.followFinal) {
      resolved.push(part);
      break;
    }
    const host = join(root, ...resolved, part);
    let target: string | undefined;
    try {
      if (fsOps.lstat(host).isSymbolicLink()) target = fsOps.readlink(host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw wrapError(err, `resolving "${join('/', ...resolved, part)}"`);
    }
    if (target === undefined) {
      resolved.push(part);
      continue;
    }
    if (++followed > MAX_SYMLINKS) {
      throw new GantryError('ARCHIVE_INVALID', `too many levels of symbolic links (more than ${MAX_SYMLINKS})`, {
        errno: 'ELOOP',
        hint: 'the layer contains a symlink loop',
      });
    }
    if (target.startsWith('/')) resolved.length = 0;
    for (const t of target.split('/').reverse()) pending.push(t);
  }
  return resolved;
}

/** Like resolveComponentsInRoot, returning the host path (always `root` or below it). */
export function resolveInRoot(root: string, path: string | readonly string[], opts: ResolveOptions): string {
  return join(root, ...resolveComponentsInRoot(root, path, opts));
}
