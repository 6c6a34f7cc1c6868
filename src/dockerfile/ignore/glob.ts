/**
 * One .dockerignore pattern, compiled the way Docker's pattern matcher does it: a cheap exact,
 * prefix (`dir/**`) or suffix (`**\/name`) test where possible, otherwise a regular expression in
 * which `*` and `?` never cross `/` and `**` spans any number of segments.
 */

export type MatchKind = 'exact' | 'prefix' | 'suffix' | 'regexp';

/** Characters that are literal in a glob but special in a regular expression. */
const REGEXP_LITERALS = new Set(['.', '+', '(', ')', '|', '{', '}', '$', '^', '/']);

/**
 * Syntax check with the rules of Go's `filepath.Match` (which Docker uses to reject bad
 * patterns up front): a trailing `\`, an unterminated or empty `[...]`, and class ranges with a
 * missing end are errors. Returns a reason, or undefined when the pattern is well formed.
 */
export function globSyntaxError(pattern: string): string | undefined {
  const chars = Array.from(pattern);
  let i = 0;
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === '\\') {
      if (i + 1 >= chars.length) return 'trailing backslash';
      i += 2;
      continue;
    }
    if (c !== '[') {
      i++;
      continue;
    }
    i++;
    if (chars[i] === '^') i++;
    let ranges = 0;
    for (;;) {
      if (chars[i] === ']' && ranges > 0) {
        i++;
        break;
      }
      const lo = classChar(chars, i);
      if (lo === undefined) return 'malformed character class';
      i = lo;
      if (chars[i] === '-') {
        const hi = classChar(chars, i + 1);
        if (hi === undefined) return 'malformed character class';
        i = hi;
      }
      ranges++;
    }
  }
  return undefined;
}

/** Reads one (possibly escaped) class member at `i`; returns the index after it, or undefined. */
function classChar(chars: string[], i: number): number | undefined {
  const c = chars[i];
  if (c === undefined || c === '-' || c === ']') return undefined;
  if (c === '\\') {
    i++;
    if (chars[i] === undefined) return undefined;
  }
  i++;
  // A class member must be followed by more pattern (at least the closing bracket).
  return i < chars.length ? i : undefined;
}

export interface CompiledGlob {
  kind: MatchKind;
  /** Set for 'regexp'; undefined when the expression is invalid (every match then fails). */
  regexp?: RegExp;
  /** True when translation produced an expression the engine rejects. */
  invalid: boolean;
}

/**
 * Translates a cleaned pattern. The kind decision follows Docker exactly (it decides which
 * cheap test is used, and those tests have their own quirks, e.g. `**file` matches `dirfile`).
 */
export function compileGlob(pattern: string): CompiledGlob {
  const chars = Array.from(pattern);
  let re = '^';
  let kind: MatchKind = 'exact';
  let n = 0; // how many top-level tokens were consumed: `**` only counts as leading at 0
  let i = 0;
  while (i < chars.length) {
    const c = chars[i++]!;
    if (c === '*') {
      if (chars[i] === '*') {
        i++;
        if (chars[i] === '/') i++;
        if (i >= chars.length) {
          if (kind === 'exact') kind = 'prefix';
          else {
            re += '.*';
            kind = 'regexp';
          }
        } else {
          re += '(?:.*/)?';
          kind = 'regexp';
        }
        if (n === 0) kind = 'suffix';
      } else {
        re += '[^/]*';
        kind = 'regexp';
      }
    } else if (c === '?') {
      re += '[^/]';
      kind = 'regexp';
    } else if (c === '\\') {
      if (i < chars.length) {
        re += escapeLiteral(chars[i++]!);
        kind = 'regexp';
      } else {
        re += '\\\\';
      }
    } else if (c === '[') {
      const end = copyClass(chars, i);
      if (end === undefined) {
        re += '\\[';
      } else {
        re += end.text;
        i = end.next;
      }
      kind = 'regexp';
    } else if (c === ']') {
      re += '\\]';
      kind = 'regexp';
    } else {
      re += escapeLiteral(c);
    }
    n++;
  }
  if (kind !== 'regexp') return { kind, invalid: false };
  try {
    return { kind, regexp: new RegExp(re + '$', 'u'), invalid: false };
  } catch {
    return { kind, invalid: true };
  }
}

function escapeLiteral(c: string): string {
  return REGEXP_LITERALS.has(c) || c === '*' || c === '?' || c === '[' || c === ']' || c === '\\' ? '\\' + c : c;
}

/** Copies a `[...]` class body (starting after `[`) into regexp syntax. */
function copyClass(chars: string[], i: number): { text: string; next: number } | undefined {
  let text = '[';
  if (chars[i] === '^') {
    text += '^';
    i++;
  }
  let first = true;
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === ']' && !first) return { text: text + ']', next: i + 1 };
    if (c === '\\') {
      const next = chars[i + 1];
      if (next === undefined) return undefined;
      text += '^$\\.*+?()[]{}|/-'.includes(next) ? '\\' + next : next;
      i += 2;
    } else {
      // `[` and `]` inside a class must be escaped for the unicode-mode engine.
      text += c === '[' || c === ']' || c === '/' ? '\\' + c : c;
      i++;
    }
    first = false;
  }
  return undefined;
}
