/**
 * Heredoc words (`<<EOF`, `<<-'EOF'`, `3<<EOF`) as BuildKit recognises them. The delimiter word is
 * lexed twice, with and without raw quotes: if the counts of quote characters differ, part of it
 * was quoted and the body must not be expanded. Escaped quotes count the same in both passes.
 */
import { ShellLex } from '../shell/lex.js';
import { emptyEnv } from '../shell/env.js';
import type { Heredoc } from './types.js';
import { LineParseError } from './syntax-error.js';

// Go's \s is [\t\n\f\r ] and \d is ASCII.
const HEREDOC_WORD = /^([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

const cookedLex = new ShellLex('\\', { skipUnsetEnv: true });
const rawQuoteLex = new ShellLex('\\', { skipUnsetEnv: true, rawQuotes: true });
const lineLex = new ShellLex('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });

function countQuotes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x27 || c === 0x22) n++;
  }
  return n;
}

/**
 * Examines one word: a heredoc (content empty), null when the word is not a heredoc, or a
 * LineParseError when it is one with unbalanced quotes.
 */
export function parseHeredocWord(word: string): Heredoc | null {
  const m = HEREDOC_WORD.exec(word);
  if (!m) return null;
  const rest = m[3]!;
  if (rest === '') return null;
  const words = lexWords(cookedLex, rest);
  if (words.length !== 1) return null;
  const raw = lexWords(rawQuoteLex, rest);
  if (raw.length !== words.length) {
    throw new LineParseError(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const name = words[0]!;
  return {
    name,
    content: '',
    expand: countQuotes(name) === countQuotes(raw[0]!),
    chomp: m[2] === '-',
    fileDescriptor: m[1] === '' ? 0 : Number.parseInt(m[1]!, 10),
  };
}

function lexWords(lex: ShellLex, text: string): string[] {
  try {
    return lex.processWords(text, emptyEnv).words;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new LineParseError(msg, 'close the quotes around the heredoc delimiter, e.g. <<"EOF"');
  }
}

/** The heredocs an instruction line opens, in order. */
export function heredocsFromLine(line: string): Heredoc[] {
  let words: string[];
  try {
    words = lineLex.processWords(line, emptyEnv).words;
  } catch {
    // BuildKit ignores lexing failures of the whole line here: no heredocs then
    return [];
  }
  const docs: Heredoc[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) docs.push(h);
  }
  return docs;
}

/** Removes leading tabs from every line, what `<<-` means for the body. */
export function chompHeredocContent(src: string): string {
  return src.replace(/(^|\n)\t+/g, '$1');
}
