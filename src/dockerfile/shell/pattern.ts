/**
 * Shell patterns for `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`, as BuildKit implements them:
 * `*` and `?` wildcards, `\` escapes only `*`, `?` and `\` (and drops itself before `}` and `/`),
 * no bracket expressions. Everything else is literal.
 */

export class PatternError extends Error {}

// Go's `.` matches everything except a newline; JS's would also refuse \r, \u2028 and \u2029.
const ANY = '[^\\n]';
const REGEX_SPECIAL = new Set(['[', ']', '{', '}', '.', '+', '(', ')', '|', '^', '$']);

export function shellPatternToRegExp(pattern: string, greedy: boolean, anchored: boolean, global = false): RegExp {
  const runes = Array.from(pattern);
  let out = anchored ? '^' : '';
  const star = greedy ? `${ANY}*` : `${ANY}*?`;
  for (let i = 0; i < runes.length; i++) {
    const tok = runes[i]!;
    if (tok === '*') {
      out += star;
      continue;
    }
    if (tok === '?') {
      out += ANY;
      continue;
    }
    if (tok === '\\') {
      const peek = runes[i + 1];
      if (peek === '}' || peek === '/') continue;
      i++;
      if (peek !== '*' && peek !== '?' && peek !== '\\') {
        throw new PatternError(`invalid escape '\\${peek ?? '\ufffd'}'`);
      }
      out += '\\' + peek;
      continue;
    }
    out += REGEX_SPECIAL.has(tok) ? '\\' + tok : tok;
  }
  return new RegExp(out, global ? 'gu' : 'u');
}

/** Removes the shortest (or, greedy, longest) prefix of `value` matching `pattern`. */
export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = shellPatternToRegExp(pattern, greedy, true).exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/**
 * Removes the shortest (or longest) matching suffix. A regular expression cannot find the
 * shortest rightmost match, so both the pattern and the value are reversed and the prefix rule
 * applies (escapes stay in front of the character they escape).
 */
export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const trimmed = trimPrefix(reversePattern(pattern), reverseString(value), greedy);
  return reverseString(trimmed);
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const last = runes.length - 1;
  const out = new Array<string>(runes.length);
  for (let i = 0; i <= last; ) {
    const tok = runes[i]!;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1]!;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

/** `${VAR/p/r}`: replaces the first (leftmost, longest) match; the replacement is literal. */
export function replaceFirst(value: string, pattern: string, replacement: string): string {
  const m = shellPatternToRegExp(pattern, true, false).exec(value);
  if (!m) return value;
  return value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
}

/**
 * `${VAR//p/r}`: replaces every non-overlapping match the way Go's Regexp.ReplaceAllString does:
 * an empty match right after a previous match is skipped, and the replacement is a Go template
 * (`$$` is a dollar, `$0`/`${0}` the match, any other `$name` refers to a group we never have).
 */
export function replaceAll(value: string, pattern: string, replacement: string): string {
  const re = shellPatternToRegExp(pattern, true, false, true);
  let out = '';
  let copied = 0;
  let prevEnd = -1;
  re.lastIndex = 0;
  for (;;) {
    const m = re.exec(value);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    if (m[0].length === 0) {
      // advance past the empty match by one code point so exec cannot loop forever
      const cp = value.codePointAt(start);
      re.lastIndex = start + (cp !== undefined && cp > 0xffff ? 2 : 1);
      if (start === prevEnd) continue;
    }
    out += value.slice(copied, start) + expandGoTemplate(replacement, m[0]);
    copied = end;
    prevEnd = end;
    if (start >= value.length) break;
  }
  return out + value.slice(copied);
}

function expandGoTemplate(template: string, match: string): string {
  if (!template.includes('$')) return template;
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const rest = template.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      i++;
      continue;
    }
    const m = /^(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/.exec(rest);
    if (!m) {
      out += '$';
      continue;
    }
    const name = m[1] ?? m[2]!;
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i += m[0].length;
  }
  return out;
}
