import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { GantryError, wrapError } from '../../util/errors.js';
import { IgnoreMatcher } from './matcher.js';
import { cleanPath } from './paths.js';

/**
 * Reads .dockerignore text into pattern lines the way Docker does: UTF-8 BOM stripped, CRLF
 * accepted, lines whose first character is `#` are comments, blank lines dropped, lines trimmed,
 * patterns cleaned and made relative to the context root (leading `/` removed), also after `!`.
 * A lone `!` is passed through; the matcher rejects it.
 */
export function parseDockerignore(text: string | null | undefined): string[] {
  if (text == null) return [];
  const out: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (i === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.startsWith('#')) return;
    let p = line.trim();
    if (p === '') return;
    const invert = p.startsWith('!');
    if (invert) p = p.slice(1).trim();
    if (p !== '') {
      p = cleanPath(p);
      if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    }
    out.push(invert ? '!' + p : p);
  });
  return out;
}

export interface LoadedIgnore {
  /** The file the patterns came from, or undefined when there is none. */
  file?: string;
  patterns: string[];
  matcher: IgnoreMatcher;
}

/**
 * Finds and loads the ignore file for a build: `<Dockerfile>.dockerignore` next to the Dockerfile
 * wins over `<context>/.dockerignore` (BuildKit). The Dockerfile and the ignore file are read
 * by the builder directly, so excluding them only keeps them out of what COPY/ADD see.
 */
export async function loadDockerignore(opts: { contextDir: string; dockerfile?: string }): Promise<LoadedIgnore> {
  const candidates: string[] = [];
  if (opts.dockerfile) {
    candidates.push(join(dirname(opts.dockerfile), basename(opts.dockerfile) + '.dockerignore'));
  }
  candidates.push(join(opts.contextDir, '.dockerignore'));
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw wrapError(err, `reading ${file}`);
    }
    const patterns = parseDockerignore(text);
    try {
      return { file, patterns, matcher: new IgnoreMatcher(patterns) };
    } catch (err) {
      if (err instanceof GantryError) {
        throw new GantryError(err.code, `${file}: ${err.message}`, { ...err.details, file }, { cause: err });
      }
      throw err;
    }
  }
  return { patterns: [], matcher: new IgnoreMatcher([]) };
}
