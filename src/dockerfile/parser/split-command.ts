/** Splits an instruction line into keyword, leading `--flags` and the rest, as BuildKit does. */
import { goTrimSpace, isGoSpace } from '../shell/go-text.js';

export interface SplitCommand {
  /** lower-cased keyword */
  keyword: string;
  flags: string[];
  /** the arguments after the flags, trimmed */
  rest: string;
}

const TOKEN_WHITESPACE = /[\t\v\f\r ]+/;

export function splitCommand(line: string): SplitCommand {
  const trimmed = goTrimSpace(line);
  const m = TOKEN_WHITESPACE.exec(trimmed);
  if (!m) return { keyword: trimmed.toLowerCase(), flags: [], rest: '' };
  const keyword = trimmed.slice(0, m.index).toLowerCase();
  const { rest, flags } = extractFlags(trimmed.slice(m.index + m[0].length));
  return { keyword, flags, rest: goTrimSpace(rest) };
}

const enum Phase {
  Spaces,
  Word,
  Quote,
}

/**
 * Takes the words starting with `--` off the front of `line`. Quotes inside a flag are removed and
 * `\` escapes (always backslash, whatever the escape directive says); a bare `--` ends the flags.
 */
export function extractFlags(line: string): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase = Phase.Spaces;
  let word = '';
  let quote = '';
  let blankOK = false;
  const n = line.length;
  for (let pos = 0; pos <= n; pos++) {
    const ch = pos < n ? line[pos]! : '';
    const code = pos < n ? line.charCodeAt(pos) : -1;
    if (phase === Phase.Spaces) {
      if (pos === n) break;
      if (isGoSpace(code)) continue;
      if (ch !== '-' || pos + 1 === n || line[pos + 1] !== '-') return { rest: line.slice(pos), flags };
      phase = Phase.Word;
    }
    if (pos === n) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isGoSpace(code)) {
        phase = Phase.Spaces;
        if (word === '--') return { rest: line.slice(pos), flags };
        if (blankOK || word.length > 0) flags.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === n) continue;
        pos++;
        word += line[pos];
        continue;
      }
      word += ch;
      continue;
    }
    // Phase.Quote
    if (ch === quote) {
      phase = Phase.Word;
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === n) {
        phase = Phase.Word;
        continue;
      }
      pos++;
      word += line[pos];
      continue;
    }
    word += ch;
  }
  return { rest: '', flags };
}
