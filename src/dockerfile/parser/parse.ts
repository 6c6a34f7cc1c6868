/**
 * Dockerfile text -> parse tree, with BuildKit's line semantics: parser directives in the leading
 * comment block, the escape character as line continuation (unless itself escaped), comments and
 * blank lines dropped inside continuations, heredoc bodies read after RUN/COPY/ADD lines, and
 * the per-instruction argument rules of line-parsers.ts.
 */
import { goTrimLeft, goTrimSpace, isGoSpace } from '../shell/go-text.js';
import { DirectiveParser, type Directive } from './directives.js';
import { chompHeredocContent, heredocsFromLine } from './heredoc.js';
import {
  parseHealthConfig,
  parseMaybeJSON,
  parseMaybeJSONToList,
  parseNameOrNameValue,
  parseNameValue,
  parseString,
  parseStringsWhitespaceDelimited,
  type ParsedArgs,
} from './line-parsers.js';
import { splitCommand } from './split-command.js';
import { LineParseError, dockerfileSyntaxError } from './syntax-error.js';
import type { Heredoc, InstructionNode, ParsedDockerfile, ParserWarning, SourceRange } from './types.js';

export { chompHeredocContent };

/** bufio.Scanner's default token limit, minus the newline. */
export const MAX_LINE_BYTES = 65535;

export interface ParseOptions {
  /** Name used in locations and error messages; default "Dockerfile". */
  file?: string;
}

type LineParser = (rest: string, escapeToken: string, keyword: string) => ParsedArgs;

const LINE_PARSERS: Record<string, LineParser> = {
  add: parseMaybeJSONToList,
  arg: (rest, esc) => parseNameOrNameValue(rest, esc),
  cmd: parseMaybeJSON,
  copy: parseMaybeJSONToList,
  entrypoint: parseMaybeJSON,
  env: (rest, esc) => parseNameValue(rest, 'ENV', esc),
  expose: parseStringsWhitespaceDelimited,
  from: parseStringsWhitespaceDelimited,
  healthcheck: parseHealthConfig,
  label: (rest, esc) => parseNameValue(rest, 'LABEL', esc),
  maintainer: parseString,
  run: parseMaybeJSON,
  shell: parseMaybeJSON,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJSONToList,
  workdir: parseString,
};

const HEREDOC_KEYWORDS = new Set(['run', 'copy', 'add']);

const NO_INSTRUCTIONS_HINT = 'a Dockerfile needs at least one instruction, usually starting with FROM';

/** Builds the node for one logical line (continuations joined), recursing for ONBUILD. */
function nodeFromLine(line: string, escapeToken: string, comments: string[], range: SourceRange): InstructionNode {
  const { keyword, flags, rest } = splitCommand(line);
  const node: InstructionNode = {
    keyword,
    flags,
    args: [],
    json: false,
    heredocs: [],
    original: line,
    range,
    comments,
  };
  if (keyword === 'onbuild') {
    if (rest !== '') node.inner = nodeFromLine(rest, escapeToken, [], range);
    return node;
  }
  const parser = LINE_PARSERS[keyword];
  if (parser === undefined) {
    // unknown keywords still parse (the instructions layer reports them), with one empty argument
    node.args = [''];
    return node;
  }
  const parsed = parser(rest, escapeToken, keyword);
  node.args = parsed.args.length === 0 ? [] : parsed.args;
  node.json = parsed.json;
  return node;
}

function canContainHeredoc(node: InstructionNode): boolean {
  const target = node.keyword === 'onbuild' && node.inner ? node.inner : node;
  return HEREDOC_KEYWORDS.has(target.keyword) && !target.json;
}

function isCommentLine(s: string): boolean {
  let i = 0;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  return i < s.length && s.charCodeAt(i) === 0x23;
}

/** Go's bytes.TrimRight(line, "\r\n"); lines are already split on \n. */
function trimNewline(s: string): string {
  let j = s.length;
  while (j > 0 && s.charCodeAt(j - 1) === 0x0d) j--;
  return j === s.length ? s : s.slice(0, j);
}

/**
 * Removes a trailing line-continuation escape (optionally followed by blanks). A doubled escape
 * is an escaped escape and does not continue the line. Returns [text, endOfInstruction].
 */
function trimContinuation(line: string, escapeCode: number): [string, boolean] {
  let end = line.length;
  while (end > 0) {
    const c = line.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x09) break;
    end--;
  }
  if (end === 0 || line.charCodeAt(end - 1) !== escapeCode) return [line, true];
  if (end === 1) return ['', false];
  if (line.charCodeAt(end - 2) === escapeCode) return [line, true];
  return [line.slice(0, end - 1), false];
}

function firstColumn(s: string): number {
  let i = 0;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  return i + 1;
}

function utf8Length(s: string): number {
  // 3 bytes per UTF-16 unit is the worst case: skip the exact count for ordinary lines
  return s.length * 3 <= MAX_LINE_BYTES ? s.length : Buffer.byteLength(s, 'utf8');
}

/** Parses a Dockerfile. Throws GantryError('DOCKERFILE_SYNTAX') with file:line:col on failure. */
export function parseDockerfile(text: string, opts: ParseOptions = {}): ParsedDockerfile {
  const file = opts.file ?? 'Dockerfile';
  const pieces = text.split('\n');
  // a final newline ends the last line; it does not start an empty one
  const count = text.endsWith('\n') ? pieces.length - 1 : pieces.length;
  if (count > 0 && pieces[0]!.charCodeAt(0) === 0xfeff) pieces[0] = pieces[0]!.slice(1);
  const lines: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) lines[i] = trimNewline(pieces[i]!);
  const hasNewline = (i: number): boolean => i < pieces.length - 1;

  function fail(line: number, column: number, err: unknown): never {
    if (err instanceof LineParseError) throw dockerfileSyntaxError({ file, line, column }, lines, err.message, err.hint);
    throw err;
  }
  const checkLength = (i: number): void => {
    if (utf8Length(pieces[i]!) > MAX_LINE_BYTES) {
      fail(i + 1, 1, new LineParseError(
        `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`,
        'split the line with a trailing escape character, or move long content into a file that COPY adds',
      ));
    }
  };

  const directives = new DirectiveParser();
  let escapeToken: '\\' | '`' = '\\';
  let escapeCode = 0x5c;
  const instructions: InstructionNode[] = [];
  const warnings: ParserWarning[] = [];
  let comments: string[] = [];

  let i = 0;
  for (; i < count; i++) {
    checkLength(i);
    const raw = pieces[i]!;
    const lineNo = i + 1;
    const rawIsComment = isCommentLine(raw);
    if (rawIsComment) {
      const comment = goTrimSpace(raw.slice(1));
      if (comment === '') comments = [];
      else comments.push(comment);
    }
    const token = goTrimLeft(lines[i]!);
    let directive: Directive | undefined;
    try {
      directive = directives.parseLine(token);
    } catch (err) {
      fail(lineNo, firstColumn(raw), err);
    }
    if (directive) {
      comments.pop();
      if (directive.name === 'escape') {
        if (directive.value !== '\\' && directive.value !== '`') {
          fail(lineNo, firstColumn(raw), new LineParseError(
            `invalid escape token '${directive.value}' does not match \` or \\`,
            'use "# escape=\\" (the default) or "# escape=`"',
          ));
        }
        escapeToken = directive.value as '\\' | '`';
        escapeCode = escapeToken.charCodeAt(0);
      }
    }
    const startIndex = i;
    const first = token.length > 0 && token.charCodeAt(0) === 0x23 ? '' : token;
    let [part, isEnd] = trimContinuation(first, escapeCode);
    if (isEnd && part === '') continue;

    // join continuation lines without quadratic concatenation
    const parts = [part];
    let hasEmptyContinuation = false;
    while (!isEnd && i + 1 < count) {
      i++;
      checkLength(i);
      const cont = lines[i]!;
      if (isCommentLine(pieces[i]!)) continue;
      if (goTrimLeft(cont).length === 0) {
        hasEmptyContinuation = true;
        continue;
      }
      [part, isEnd] = trimContinuation(cont, escapeCode);
      parts.push(part);
    }
    const line = parts.length === 1 ? parts[0]! : parts.join('');
    const startLine = startIndex + 1;
    const startColumn = firstColumn(pieces[startIndex]!);

    if (hasEmptyContinuation) {
      warnings.push({
        rule: 'NoEmptyContinuation',
        message: `Empty continuation line found in: ${line}`,
        detail: 'Empty continuation lines will become errors in a future release',
        url: 'https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/',
        range: { file, startLine: i + 1, startColumn: 1, endLine: i + 1, endColumn: lines[i]!.length + 1 },
      });
    }

    const range: SourceRange = { file, startLine, startColumn, endLine: i + 1, endColumn: lines[i]!.length + 1 };
    let node: InstructionNode;
    try {
      node = nodeFromLine(line, escapeToken, comments, range);
    } catch (err) {
      fail(startLine, startColumn, err);
    }

    if (canContainHeredoc(node) && line.includes('<<')) {
      let docs: Heredoc[] = [];
      try {
        docs = heredocsFromLine(line);
      } catch (err) {
        fail(startLine, startColumn, err);
      }
      for (const doc of docs) {
        const body: string[] = [];
        let terminated = false;
        while (i + 1 < count) {
          i++;
          checkLength(i);
          let candidate = lines[i]!;
          if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          body.push(hasNewline(i) ? pieces[i]! + '\n' : pieces[i]!);
        }
        if (!terminated) {
          fail(startLine, startColumn, new LineParseError(
            `unterminated heredoc ${doc.name}`,
            `end the heredoc with a line containing only ${doc.name}`,
          ));
        }
        doc.content = body.join('');
      }
      node.heredocs = docs;
      if (node.inner) node.inner.heredocs = docs;
      range.endLine = i + 1;
      range.endColumn = lines[i]!.length + 1;
    }

    instructions.push(node);
    comments = [];
  }

  if (instructions.length === 0) {
    const line = Math.max(count, 1);
    fail(line, 1, new LineParseError('file with no instructions', NO_INSTRUCTIONS_HINT));
  }

  return {
    file,
    directives: { ...directives.seen },
    escapeToken,
    instructions,
    warnings,
    lines,
  };
}
