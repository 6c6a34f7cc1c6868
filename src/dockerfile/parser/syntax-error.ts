import { GantryError } from '../../util/errors.js';

const SNIPPET_MAX = 200;

export interface ErrorLocation {
  file: string;
  /** 1-based */
  line: number;
  /** 1-based */
  column: number;
}

/**
 * A DOCKERFILE_SYNTAX error whose message starts with `file:line:col: ` and quotes the offending
 * source line, the way compilers report errors, so it can be read without opening the file.
 */
export function dockerfileSyntaxError(
  loc: ErrorLocation,
  lines: readonly string[],
  message: string,
  hint?: string,
): GantryError {
  let text = `${loc.file}:${loc.line}:${loc.column}: ${message}`;
  const source = lines[loc.line - 1];
  if (source !== undefined && source.trim() !== '') {
    const shown = source.length > SNIPPET_MAX ? source.slice(0, SNIPPET_MAX) + '…' : source;
    text += `\n  ${loc.line} | ${shown}`;
  }
  const details: Record<string, unknown> = { file: loc.file, line: loc.line, column: loc.column };
  if (hint !== undefined) details.hint = hint;
  return new GantryError('DOCKERFILE_SYNTAX', text, details);
}

/** A parse failure found below the line loop; the loop adds the location. */
export class LineParseError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
