/**
 * Kaniko's --context-sub-path and BuildKit's `#ref:subdir`: a directory inside the materialised
 * context becomes the root. It must stay inside: no `..` escape, and no symlink (in the path or
 * as the last component) that resolves outside the context.
 */
import { realpath, stat } from 'node:fs/promises';
import { posix, sep } from 'node:path';
import { GantryError } from '../util/errors.js';

/** Returns the real path of `root/sub`, after checking it is a directory inside `root`. */
export async function resolveSubPath(root: string, sub: string, source: string, what = 'sub-path'): Promise<string> {
  const cleaned = posix.normalize(sub.replace(/\\/g, '/').replace(/^\/+/, ''));
  if (cleaned === '..' || cleaned.startsWith('../')) {
    throw new GantryError('UNSAFE_PATH', `${what} "${sub}" leaves the build context ${source}`, { hint: `give a ${what} relative to the context root, without ".."` });
  }
  const realRoot = await realpath(root);
  if (cleaned === '.' || cleaned === '') return realRoot;
  let target: string;
  try {
    target = await realpath(posix.join(realRoot, cleaned));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new GantryError('CONTEXT_INVALID', `${what} "${sub}" does not exist in the build context ${source}`, { hint: `check the ${what}; it is relative to the context root` });
    }
    if (code === 'ELOOP') throw new GantryError('UNSAFE_PATH', `${what} "${sub}" in ${source} is a symlink loop`);
    throw err;
  }
  if (target !== realRoot && !target.startsWith(realRoot + sep)) {
    throw new GantryError('UNSAFE_PATH', `${what} "${sub}" resolves (through a symlink) outside the build context ${source}`, {
      hint: 'symlinks in the sub-path must point inside the context',
    });
  }
  const st = await stat(target);
  if (!st.isDirectory()) throw new GantryError('CONTEXT_INVALID', `${what} "${sub}" in the build context ${source} is not a directory`);
  return target;
}
