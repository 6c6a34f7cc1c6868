/**
 * Slash-path helpers with Go's `path.Clean` / `path.Dir` semantics: .dockerignore patterns and
 * paths are compared after exactly this cleaning, so a different normalisation (Node's
 * `path.posix.normalize` keeps trailing slashes) would change which files are excluded.
 */

/** Lexical clean: collapse `//`, drop `.` segments, resolve `..` where possible, no trailing `/`. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/** Everything but the last element, cleaned; `.` when there is no slash. */
export function dirPath(p: string): string {
  const i = p.lastIndexOf('/');
  return cleanPath(p.slice(0, i + 1));
}
