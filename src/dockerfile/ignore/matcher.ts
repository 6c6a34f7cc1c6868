/**
 * The .dockerignore matcher. Semantics are Docker's (moby/patternmatcher), checked case by case
 * against the conformance data: patterns apply in order, the last applicable one wins, and a
 * pattern matches a path when it matches the path itself or any ancestor directory of it.
 *
 * We do not use @balena/dockerignore here: it agrees with Docker on everyday patterns but not
 * on the corner cases the conformance data pins down (malformed patterns are errors in Docker,
 * `**` prefix/suffix shortcuts), and the walker needs to know when a directory can be pruned,
 * which requires access to the patterns.
 */
import { GantryError } from '../../util/errors.js';
import { compileGlob, globSyntaxError, type CompiledGlob } from './glob.js';
import { cleanPath, dirPath } from './paths.js';

export class IgnorePattern {
  /** The cleaned pattern without its `!`. */
  readonly pattern: string;
  /** True for `!pattern`: a match re-includes. */
  readonly exception: boolean;
  readonly segments: string[];
  private compiled?: CompiledGlob;

  constructor(pattern: string, exception: boolean) {
    this.pattern = pattern;
    this.exception = exception;
    this.segments = pattern.split('/');
  }

  toString(): string {
    return (this.exception ? '!' : '') + this.pattern;
  }

  /** Throws DOCKERIGNORE_INVALID when the pattern cannot be compiled. */
  matches(path: string): boolean {
    const c = (this.compiled ??= compileGlob(this.pattern));
    switch (c.kind) {
      case 'exact':
        return path === this.pattern;
      case 'prefix':
        return path.startsWith(this.pattern.slice(0, -2));
      case 'suffix': {
        const suffix = this.pattern.slice(2);
        if (path.endsWith(suffix)) return true;
        // `**/foo` also matches `foo` at the root.
        return suffix.startsWith('/') && path === suffix.slice(1);
      }
      case 'regexp':
        if (!c.regexp) throw badPattern(this.toString(), 'not a valid pattern');
        return c.regexp.test(path);
    }
  }
}

function badPattern(pattern: string, why: string): GantryError {
  return new GantryError('DOCKERIGNORE_INVALID', `invalid .dockerignore pattern "${pattern}": ${why}`, {
    hint: 'escape [ ] * ? \\ with a backslash when they are meant literally, and close every [...] class',
    pattern,
  });
}

/** Per-pattern results for a directory, handed to its children to avoid re-matching ancestors. */
export interface ParentMatch {
  readonly matched: readonly boolean[];
}

export class IgnoreMatcher {
  readonly patterns: readonly IgnorePattern[];
  readonly hasExceptions: boolean;

  /**
   * Builds a matcher from .dockerignore lines (see parseDockerignore). Patterns are trimmed and
   * cleaned; empty ones are dropped. A lone `!` and malformed globs are DOCKERIGNORE_INVALID.
   */
  constructor(lines: readonly string[]) {
    const patterns: IgnorePattern[] = [];
    for (const raw of lines) {
      let p = raw.trim();
      if (p === '') continue;
      p = cleanPath(p);
      let exception = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw badPattern('!', 'an exception needs a pattern after "!"');
        exception = true;
        p = p.slice(1);
      }
      const why = globSyntaxError(p);
      if (why) throw badPattern(raw.trim(), why);
      patterns.push(new IgnorePattern(p, exception));
    }
    this.patterns = patterns;
    this.hasExceptions = patterns.some((p) => p.exception);
  }

  /**
   * True when `path` (slash-separated, relative to the context root, used as given) is excluded:
   * Docker's MatchesOrParentMatches.
   */
  matches(path: string): boolean {
    const parent = dirPath(path);
    const parents = parent === '.' ? [] : ancestorsOf(parent);
    let excluded = false;
    for (const pat of this.patterns) {
      if (pat.exception !== excluded) continue;
      let m = pat.matches(path);
      if (!m) {
        for (const a of parents) {
          if (safeMatch(pat, a)) {
            m = true;
            break;
          }
        }
      }
      if (m) excluded = !pat.exception;
    }
    return excluded;
  }

  /**
   * Incremental form for tree walks: `parent` is the result for the containing directory
   * (undefined at the root, or to start anywhere). Same answers as `matches`, at O(patterns)
   * per entry. Unlike Docker's MatchesUsingParentResults, every pattern is tried on every
   * entry (not only those the running answer makes applicable), because whether a pattern
   * matched an ancestor must be known later, when an earlier pattern has flipped the answer:
   * with `a/**`, `!*`, the file `a/b/c` is re-included through its ancestor `a`.
   */
  matchesWithParent(path: string, parent: ParentMatch | undefined): { excluded: boolean; info: ParentMatch } {
    const n = this.patterns.length;
    const matched = new Array<boolean>(n);
    const errors = new Array<unknown>(n);
    let ancestors: string[] | undefined;
    for (let i = 0; i < n; i++) {
      const pat = this.patterns[i]!;
      let m = parent ? parent.matched[i]! : false;
      if (!m) {
        try {
          m = pat.matches(path);
        } catch (err) {
          errors[i] = err;
        }
        if (!m && !parent) {
          const dir = dirPath(path);
          ancestors ??= dir === '.' ? [] : ancestorsOf(dir);
          m = ancestors.some((a) => safeMatch(pat, a));
        }
      }
      matched[i] = m;
    }
    let excluded = false;
    for (let i = 0; i < n; i++) {
      const pat = this.patterns[i]!;
      if (pat.exception !== excluded) continue;
      if (errors[i] !== undefined && !matched[i]) throw errors[i];
      if (matched[i]) excluded = !pat.exception;
    }
    return { excluded, info: { matched } };
  }

  /**
   * True when nothing below the excluded directory `dir` can be re-included by an exception, so
   * a walker may skip it without reading it. Conservative: false whenever unsure.
   */
  canSkipDirectory(dir: string): boolean {
    if (!this.matches(dir)) return false;
    if (!this.hasExceptions) return true;
    const dirSegs = dir.split('/');
    return !this.patterns.some((p) => p.exception && couldMatchBelow(p, dirSegs));
  }
}

/** Docker ignores errors when matching ancestors (the path itself reports them). */
function safeMatch(p: IgnorePattern, path: string): boolean {
  try {
    return p.matches(path);
  } catch {
    return false;
  }
}

function ancestorsOf(dir: string): string[] {
  const segs = dir.split('/');
  const out: string[] = [];
  for (let i = 1; i <= segs.length; i++) out.push(segs.slice(0, i).join('/'));
  return out;
}

/**
 * Could the pattern match `dir` itself, an ancestor (then parent matching re-includes
 * everything below) or a descendant? Only a definite mismatch of a segment before any `**`
 * proves it cannot.
 */
function couldMatchBelow(p: IgnorePattern, dirSegs: string[]): boolean {
  const n = Math.min(p.segments.length, dirSegs.length);
  for (let i = 0; i < n; i++) {
    const seg = p.segments[i]!;
    if (seg.includes('**')) return true;
    let ok: boolean;
    try {
      ok = new IgnorePattern(seg, false).matches(dirSegs[i]!);
    } catch {
      return true;
    }
    if (!ok) return false;
  }
  return true;
}

/** Docker's older `Matches` helper (path cleaned, only one ancestor tried); kept for conformance. */
export function legacyMatches(path: string, lines: readonly string[]): boolean {
  const m = new IgnoreMatcher(lines);
  const file = cleanPath(path);
  if (file === '.') return false;
  const parent = dirPath(file);
  const parentSegs = parent.split('/');
  let excluded = false;
  for (const pat of m.patterns) {
    if (pat.exception !== excluded) continue;
    let hit = pat.matches(file);
    if (!hit && parent !== '.' && pat.segments.length <= parentSegs.length) {
      hit = safeMatch(pat, parentSegs.slice(0, pat.segments.length).join('/'));
    }
    if (hit) excluded = !pat.exception;
  }
  return excluded;
}
