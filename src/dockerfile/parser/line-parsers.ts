/**
 * Per-instruction argument splitting (BuildKit's dispatch table). No expansion and no quote
 * removal happens here, except JSON unescaping for the exec form.
 */
import { goQuote, goTrimLeft, isGoSpace } from '../shell/go-text.js';
import { LineParseError } from './syntax-error.js';

export interface ParsedArgs {
  args: string[];
  json: boolean;
}

const WHITESPACE = /[\t\v\f\r ]+/;
const NONE: ParsedArgs = Object.freeze({ args: [], json: false }) as ParsedArgs;

export const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';
const JSON_HINT = 'write the exec form as a JSON array of strings, e.g. ["executable", "arg1"], or drop the brackets for the shell form';

/** Splits on unquoted whitespace, keeping quotes and escapes in the words (ARG, ENV, LABEL). */
export function parseWords(rest: string, escapeToken: string): string[] {
  const words: string[] = [];
  let inWord = false;
  let inQuote = false;
  let quote = '';
  let blankOK = false;
  let word = '';
  const n = rest.length;
  for (let pos = 0; pos < n; pos++) {
    let ch = rest[pos]!;
    if (!inWord && !inQuote) {
      if (isGoSpace(rest.charCodeAt(pos))) continue;
      inWord = true;
    }
    if (inWord) {
      if (isGoSpace(rest.charCodeAt(pos))) {
        inWord = false;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        inWord = false;
        inQuote = true;
      }
      if (ch === escapeToken) {
        if (pos + 1 === n) continue; // an escape at the very end is dropped
        // outside quotes an escape keeps itself and the next character, even a quote
        word += ch;
        pos++;
        ch = rest[pos]!;
      }
      word += ch;
      continue;
    }
    // in a quote: the escape works except inside single quotes
    if (ch === quote) {
      inQuote = false;
      inWord = true;
    }
    if (ch === escapeToken && quote !== "'") {
      if (pos + 1 === n) {
        inQuote = false;
        inWord = true;
        continue;
      }
      pos++;
      word += ch;
      ch = rest[pos]!;
    }
    word += ch;
  }
  if ((inWord || inQuote) && (blankOK || word.length > 0)) words.push(word);
  return words;
}

/** ENV and LABEL: `name value` (old form, separator "") or `n1=v1 n2=v2` (separator "="). */
export function parseNameValue(rest: string, keyword: string, escapeToken: string): ParsedArgs {
  const words = parseWords(rest, escapeToken);
  if (words.length === 0) return NONE;
  if (!words[0]!.includes('=')) {
    const m = WHITESPACE.exec(rest);
    if (!m) {
      throw new LineParseError(
        `${keyword} must have two arguments`,
        `write ${keyword} ${rest}=<value> (or ${keyword} ${rest} <value>)`,
      );
    }
    return { args: [rest.slice(0, m.index), rest.slice(m.index + m[0].length), ''], json: false };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw new LineParseError(
        `Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`,
        `give ${word} a value (${word}=...) or quote values that contain spaces`,
      );
    }
    args.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return { args, json: false };
}

export function parseStringsWhitespaceDelimited(rest: string): ParsedArgs {
  if (rest === '') return NONE;
  return { args: rest.split(WHITESPACE), json: false };
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * The exec form: a JSON array of strings. Returns undefined when the text is not JSON at all
 * (then it is shell form); throws when it is JSON but holds something other than strings.
 */
export function parseJSONArray(rest: string): string[] | undefined {
  const text = goTrimLeft(rest);
  if (!text.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  for (const v of value) {
    if (typeof v !== 'string') throw new LineParseError(NOT_STRING_ARRAY, JSON_HINT);
  }
  // Go's decoder turns escaped lone surrogates into U+FFFD
  return (value as string[]).map((s) => (LONE_SURROGATE.test(s) ? s.replace(LONE_SURROGATE, '\ufffd') : s));
}

/** RUN, CMD, ENTRYPOINT, SHELL: exec form or one shell-form argument. */
export function parseMaybeJSON(rest: string): ParsedArgs {
  if (rest === '') return NONE;
  const arr = parseJSONArray(rest);
  if (arr !== undefined) return { args: arr, json: true };
  return { args: [rest], json: false };
}

/** ADD, COPY, VOLUME: exec form or whitespace-separated words. */
export function parseMaybeJSONToList(rest: string): ParsedArgs {
  const arr = parseJSONArray(rest);
  if (arr !== undefined) return { args: arr, json: true };
  return parseStringsWhitespaceDelimited(rest);
}

/** HEALTHCHECK: the first word (CMD, NONE, ...) then the rest like CMD. */
export function parseHealthConfig(rest: string): ParsedArgs {
  let sep = 0;
  while (sep < rest.length && !isGoSpace(rest.charCodeAt(sep))) sep++;
  if (sep === 0) return NONE;
  let next = sep;
  while (next < rest.length && isGoSpace(rest.charCodeAt(next))) next++;
  const cmd = parseMaybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

/** MAINTAINER, USER, WORKDIR, STOPSIGNAL: the rest of the line. */
export function parseString(rest: string): ParsedArgs {
  return rest === '' ? NONE : { args: [rest], json: false };
}

/** ARG: the words as written. */
export function parseNameOrNameValue(rest: string, escapeToken: string): ParsedArgs {
  return { args: parseWords(rest, escapeToken), json: false };
}
