import { GantryError, type ErrorCode } from '../../util/errors.js';
import type { InstructionNode, SourceRange } from '../parser/types.js';

const SNIPPET_MAX = 200;

/** `Dockerfile:12:1` */
export function formatLocation(range: SourceRange): string {
  return `${range.file}:${range.startLine}:${range.startColumn}`;
}

/**
 * An error located at an instruction, formatted like the parser's syntax errors: the message
 * starts with `file:line:col: ` and quotes the instruction, so it reads without the file open.
 * Details carry file/line/column (numbers), the range and the instruction text.
 */
export function instructionError(node: InstructionNode, message: string, hint?: string, code: ErrorCode = 'DOCKERFILE_INVALID'): GantryError {
  const r = node.range;
  let text = `${formatLocation(r)}: ${message}`;
  const first = node.original.split('\n', 1)[0] ?? '';
  if (first.trim() !== '') text += `\n  ${r.startLine} | ${first.length > SNIPPET_MAX ? first.slice(0, SNIPPET_MAX) + '…' : first}`;
  const details: Record<string, unknown> = { file: r.file, line: r.startLine, column: r.startColumn, range: r, source: node.original };
  if (hint) details.hint = hint;
  return new GantryError(code, text, details);
}

/** Re-throws a lower-level GantryError (e.g. from the shell lexer) located at `node`, keeping its code. */
export function locateError(err: GantryError, node: InstructionNode): GantryError {
  const e = instructionError(node, err.message, err.hint, err.code);
  return new GantryError(e.code, e.message, { ...err.details, ...e.details }, { cause: err });
}

/** Thrown by parsers that do not know the node; the instruction parser adds the location. */
export class InvalidInstruction extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
