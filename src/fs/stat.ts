import { lstatSync, type Stats } from 'node:fs';

/** lstat that says `undefined` for a path that is not there (or whose parent is not a directory). */
export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
