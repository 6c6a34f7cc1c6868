/**
 * BuildKit's shell-word lexer: quote removal, escapes and `$VAR` / `${VAR...}` expansion over one
 * Dockerfile word, optionally split into words like a shell would. This is not a shell: no
 * command substitution, no globbing, no arithmetic; only what Dockerfile instructions expand.
 */
import { GantryError } from '../../util/errors.js';
import type { EnvGetter } from './env.js';
import { isGoSpace, goQuote } from './go-text.js';
import { PatternError, replaceAll, replaceFirst, trimPrefix, trimSuffix } from './pattern.js';

export interface ShellLexOptions {
  /** Keep quote characters in the result (quotes still group words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result (they still escape). */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (used for heredoc bodies, whose quotes belong to the script). */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written (`$X`, `${X:-d}`) instead of expanding them. */
  skipUnsetEnv?: boolean;
}

export interface ProcessWordResult {
  result: string;
  /** Referenced variables that were set (possibly to the empty string). */
  matched: Set<string>;
  /** Referenced variables that were unset. */
  unmatched: Set<string>;
}

export interface ProcessWordsResult {
  words: string[];
  matched: Set<string>;
  unmatched: Set<string>;
}

const EOF = -1;
const DOLLAR = 0x24;
const SQUOTE = 0x27;
const DQUOTE = 0x22;
const LT = 0x3c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const COLON = 0x3a;
const SLASH = 0x2f;

const LETTER = /\p{L}/u;
const DIGIT = /\p{Nd}/u;

function isLetter(c: number): boolean {
  if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return LETTER.test(String.fromCodePoint(c));
}

function isDigit(c: number): boolean {
  if (c < 0x80) return c >= 0x30 && c <= 0x39;
  return DIGIT.test(String.fromCodePoint(c));
}

function isSpecialParam(c: number): boolean {
  // @ * # ? - $ ! 0: POSIX special parameters, never set in a Dockerfile
  return c === 0x40 || c === 0x2a || c === 0x23 || c === 0x3f || c === 0x2d || c === 0x24 || c === 0x21 || c === 0x30;
}

function chr(c: number): string {
  return c === EOF ? '\ufffd' : String.fromCodePoint(c);
}

/** A failure inside the lexer; becomes a GantryError once we know the whole word. */
class LexError extends Error {
  constructor(
    message: string,
    readonly variable?: string,
  ) {
    super(message);
  }
}

/** Accumulates shell words: unquoted whitespace separates them, quoted text never does. */
class WordSplitter {
  private buf = '';
  private inWord = false;
  readonly words: string[] = [];

  addChar(ch: string, code: number): void {
    if (isGoSpace(code)) {
      if (this.inWord && this.buf.length !== 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRaw(ch);
    }
  }

  addString(s: string): void {
    for (let i = 0; i < s.length; i++) this.addChar(s[i]!, s.charCodeAt(i));
  }

  addRaw(s: string): void {
    this.buf += s;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** The state of one call: a cursor over the word's code points and the variables seen. */
class WordState {
  private pos = 0;
  rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    private readonly src: string,
    private readonly env: EnvGetter,
    private readonly lex: ShellLex,
  ) {
    this.rawEscapes = lex.rawEscapes;
  }

  peek(): number {
    return this.pos < this.src.length ? this.src.codePointAt(this.pos)! : EOF;
  }

  next(): number {
    if (this.pos >= this.src.length) return EOF;
    const c = this.src.codePointAt(this.pos)!;
    this.pos += c > 0xffff ? 2 : 1;
    return c;
  }

  getEnv(name: string): string | undefined {
    const v = this.env.get(name);
    if (v === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return v;
  }

  /** Reads up to `stop` (consumed) or the end of input; returns the text and its words. */
  processStopOn(stop: number, rawEscapes: boolean): { text: string; words: string[] } {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let text = '';
      const words = new WordSplitter();
      const escape = this.lex.escapeCode;
      const quotes = !this.lex.skipProcessQuotes;
      for (let ch = this.peek(); ch !== EOF; ch = this.peek()) {
        if (stop !== EOF && ch === stop) {
          this.next();
          return { text, words: words.finish() };
        }
        if (ch === DOLLAR) {
          const v = this.processDollar();
          text += v;
          words.addString(v);
        } else if (quotes && (ch === SQUOTE || ch === DQUOTE)) {
          const v = ch === SQUOTE ? this.processSingleQuote() : this.processDoubleQuote();
          text += v;
          words.addRaw(v);
        } else if (ch === LT) {
          const v = this.processPossibleHeredoc();
          text += v;
          words.addRaw(v);
        } else {
          ch = this.next();
          if (ch === escape) {
            if (this.rawEscapes) {
              words.addRaw(chr(ch));
              text += chr(ch);
            }
            // the escape character escapes anything, except at the very end where it vanishes
            ch = this.next();
            if (ch === EOF) break;
            words.addRaw(chr(ch));
          } else {
            words.addChar(chr(ch), ch);
          }
          text += chr(ch);
        }
      }
      if (stop !== EOF) {
        throw new LexError(`unexpected end of statement while looking for matching ${chr(stop)}`);
      }
      return { text, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a single quote cannot be escaped inside.
    let out = '';
    const open = this.next();
    if (this.lex.rawQuotes) out += chr(open);
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === SQUOTE) {
        if (this.lex.rawQuotes) out += chr(ch);
        return out;
      }
      out += chr(ch);
    }
  }

  private processDoubleQuote(): string {
    // Literal except `$` expansions; the escape character escapes only " $ and itself.
    let out = '';
    const open = this.next();
    if (this.lex.rawQuotes) out += chr(open);
    const escape = this.lex.escapeCode;
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (p === DQUOTE) {
        const ch = this.next();
        if (this.lex.rawQuotes) out += chr(ch);
        return out;
      }
      if (p === DOLLAR) {
        out += this.processDollar();
        continue;
      }
      let ch = this.next();
      if (ch === escape) {
        if (this.rawEscapes) out += chr(ch);
        const q = this.peek();
        if (q === EOF) continue;
        if (q === DQUOTE || q === DOLLAR || q === escape) ch = this.next();
      }
      out += chr(ch);
    }
  }

  /** `<<` keeps the blanks after it in the same word, so `<<  EOF` stays one heredoc word. */
  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== LT) return '<';
    this.next();
    let out = '<<';
    for (let c = this.peek(); c === 0x20 || c === 0x09; c = this.peek()) {
      out += chr(c);
      this.next();
    }
    return out;
  }

  private processName(): string {
    let name = '';
    for (let ch = this.peek(); ch !== EOF; ch = this.peek()) {
      if (name === '' && isDigit(ch)) {
        // positional parameters: all the digits, $10 is "10" (unlike sh)
        while (this.peek() !== EOF && isDigit(this.peek())) name += chr(this.next());
        return name;
      }
      if (name === '' && isSpecialParam(ch)) return chr(this.next());
      if (!isLetter(ch) && !isDigit(ch) && ch !== 0x5f) break;
      name += chr(this.next());
    }
    return name;
  }

  processDollar(): string {
    this.next();
    if (this.peek() !== LBRACE) {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.lex.skipUnsetEnv) return '$' + name;
      return value ?? '';
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new LexError("syntax error: missing '}'");
    if (first === LBRACE || first === RBRACE || first === COLON) throw new LexError('syntax error: bad substitution');

    const name = this.processName();
    let ch = this.next();
    // BuildKit says "unsupported modifier (\ufffd)" here; the missing brace is the real problem
    if (ch === EOF) throw new LexError("syntax error: missing '}'");
    let mod = chr(ch);
    switch (ch) {
      case RBRACE: {
        const value = this.getEnv(name);
        if (value === undefined && this.lex.skipUnsetEnv) return '${' + name + '}';
        return value ?? '';
      }
      case COLON:
      case 0x2b /* + */:
      case 0x2d /* - */:
      case 0x3f /* ? */:
      case 0x23 /* # */:
      case 0x25 /* % */: {
        const nullIsUnset = ch === COLON;
        if (nullIsUnset) {
          ch = this.next();
          mod += chr(ch);
        }
        const patternOp = ch === 0x23 || ch === 0x25;
        if (nullIsUnset && patternOp) throw new LexError(`unsupported modifier (${mod}) in substitution`);
        let word: string;
        try {
          word = this.processStopOn(RBRACE, patternOp).text;
        } catch (err) {
          if (this.peek() === EOF) throw new LexError("syntax error: missing '}'");
          throw err;
        }
        const value = this.getEnv(name);
        if (value === undefined && this.lex.skipUnsetEnv) return '${' + name + mod + word + '}';
        const empty = value === undefined || (nullIsUnset && value === '');
        switch (ch) {
          case 0x2d:
            return empty ? word : value!;
          case 0x2b:
            return empty ? '' : word;
          case 0x3f:
            if (value === undefined) throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`, name);
            if (nullIsUnset && value === '') throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`, name);
            return value;
          case 0x23:
          case 0x25: {
            // #/% remove the shortest match, ##/%% the longest
            let greedy = false;
            if (word.length > 0 && word.charCodeAt(0) === ch) {
              greedy = true;
              word = word.slice(1);
            }
            return withPattern(word, () =>
              ch === 0x25 ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy),
            );
          }
          default:
            throw new LexError(`unsupported modifier (${mod}) in substitution`);
        }
      }
      case SLASH: {
        const all = this.peek() === SLASH;
        if (all) this.next();
        let pattern: string;
        try {
          pattern = this.processStopOn(SLASH, true).text;
        } catch (err) {
          if (this.peek() === EOF) throw new LexError("syntax error: missing '/' in ${}");
          throw err;
        }
        let replacement: string;
        try {
          replacement = this.processStopOn(RBRACE, true).text;
        } catch (err) {
          if (this.peek() === EOF) throw new LexError("syntax error: missing '}'");
          throw err;
        }
        const value = this.getEnv(name);
        if (value === undefined && this.lex.skipUnsetEnv) return '${' + name + '/' + pattern + '/' + replacement + '}';
        return withPattern(pattern, () =>
          all ? replaceAll(value ?? '', pattern, replacement) : replaceFirst(value ?? '', pattern, replacement),
        );
      }
      default:
        throw new LexError(`unsupported modifier (${mod}) in substitution`);
    }
  }
}

function withPattern(pattern: string, fn: () => string): string {
  try {
    return fn();
  } catch (err) {
    if (err instanceof PatternError || err instanceof SyntaxError) {
      throw new LexError(`invalid pattern (${pattern}) in substitution: ${err.message}`);
    }
    throw err;
  }
}

export class ShellLex {
  readonly escapeToken: '\\' | '`';
  /** @internal code point of escapeToken */
  readonly escapeCode: number;
  rawQuotes: boolean;
  rawEscapes: boolean;
  skipProcessQuotes: boolean;
  skipUnsetEnv: boolean;

  constructor(escapeToken: '\\' | '`' = '\\', options: ShellLexOptions = {}) {
    this.escapeToken = escapeToken;
    this.escapeCode = escapeToken.charCodeAt(0);
    this.rawQuotes = options.rawQuotes ?? false;
    this.rawEscapes = options.rawEscapes ?? false;
    this.skipProcessQuotes = options.skipProcessQuotes ?? false;
    this.skipUnsetEnv = options.skipUnsetEnv ?? false;
  }

  /** Expands one word and removes its quotes; whitespace is kept, nothing is split. */
  processWord(word: string, env: EnvGetter): ProcessWordResult {
    const st = new WordState(word, env, this);
    const { text } = this.run(st, word);
    return { result: text, matched: st.matched, unmatched: st.unmatched };
  }

  /** Expands and splits into words like a shell: unquoted (or expanded) whitespace separates. */
  processWords(word: string, env: EnvGetter): ProcessWordsResult {
    const st = new WordState(word, env, this);
    const { words } = this.run(st, word);
    return { words, matched: st.matched, unmatched: st.unmatched };
  }

  private run(st: WordState, word: string): { text: string; words: string[] } {
    try {
      return st.processStopOn(EOF, this.rawEscapes);
    } catch (err) {
      if (!(err instanceof LexError)) throw err;
      const message = `failed to process ${goQuote(word)}: ${err.message}`;
      if (err.variable !== undefined) {
        throw new GantryError('BUILD_ARG', message, {
          hint: `set ${err.variable} (for example with --build-arg ${err.variable}=...) or give it a default with ARG ${err.variable}=...`,
          word,
          variable: err.variable,
        });
      }
      throw new GantryError('DOCKERFILE_INVALID', message, {
        hint: `check the quotes and \${...} expressions in this word; escape a literal $ as ${this.escapeToken}$`,
        word,
      });
    }
  }
}
