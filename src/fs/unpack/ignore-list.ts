/**
 * Paths inside the root that unpacking never writes, replaces or deletes (the in-place mode's
 * /proc, /sys, /dev, mount points, the builder's own directory). An entry covers itself and
 * everything below it, like Kaniko's "exact+children" ignore entries.
 */
export class IgnoreList {
  private readonly paths: string[];

  constructor(paths: readonly string[] = []) {
    this.paths = [...new Set(paths.map(normalizeAbsolute))];
  }

  get empty(): boolean {
    return this.paths.length === 0;
  }

  /** True when `path` (in-root, absolute, normalised) is an ignored path or below one. */
  covers(path: string): boolean {
    return this.paths.some((p) => p === '/' || path === p || path.startsWith(p + '/'));
  }

  /** True when some ignored path lies strictly below `path`: removing `path` wholesale would hit it. */
  hasIgnoredBelow(path: string): boolean {
    const prefix = path === '/' ? '/' : path + '/';
    return this.paths.some((p) => p.startsWith(prefix) && p !== path);
  }
}

function normalizeAbsolute(p: string): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return '/' + parts.join('/');
}
