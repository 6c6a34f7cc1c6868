/**
 * Small helpers that reproduce Go standard-library text behaviour (unicode.IsSpace,
 * strings.TrimSpace, strconv.Quote). BuildKit's parser and lexer are defined in terms of them,
 * and the conformance data (parse-tree dumps, error texts) depends on their exact rules.
 */

/** Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property. */
export function isGoSpace(c: number): boolean {
  if (c <= 0xff) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0;
  return (
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

/** Go's strings.TrimLeftFunc(s, unicode.IsSpace). */
export function goTrimLeft(s: string): string {
  let i = 0;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  return i === 0 ? s : s.slice(i);
}

/** Go's strings.TrimRightFunc(s, unicode.IsSpace). */
export function goTrimRight(s: string): string {
  let j = s.length;
  while (j > 0 && isGoSpace(s.charCodeAt(j - 1))) j--;
  return j === s.length ? s : s.slice(0, j);
}

/** Go's strings.TrimSpace. */
export function goTrimSpace(s: string): string {
  return goTrimRight(goTrimLeft(s));
}

// Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
const PRINTABLE = /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u;
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Go's strconv.Quote (what `%q` prints for a string). */
export function goQuote(s: string): string {
  if (PLAIN_ASCII.test(s)) return `"${s}"`;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 0x22 || c === 0x5c) {
      out += '\\' + ch;
    } else if (c === 0x20 || (c > 0x7f && c !== 0xfffd && PRINTABLE.test(ch)) || (c > 0x20 && c < 0x7f)) {
      out += ch;
    } else if (c === 0xfffd) {
      // A decoded replacement character is printable in Go as well.
      out += ch;
    } else {
      switch (c) {
        case 0x07: out += '\\a'; break;
        case 0x08: out += '\\b'; break;
        case 0x0c: out += '\\f'; break;
        case 0x0a: out += '\\n'; break;
        case 0x0d: out += '\\r'; break;
        case 0x09: out += '\\t'; break;
        case 0x0b: out += '\\v'; break;
        default:
          if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
          else if (c < 0x10000) out += '\\u' + c.toString(16).padStart(4, '0');
          else out += '\\U' + c.toString(16).padStart(8, '0');
      }
    }
  }
  return out + '"';
}
