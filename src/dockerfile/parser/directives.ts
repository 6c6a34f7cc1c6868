/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`): only in the leading block of comment
 * lines; the first line that is not a directive (instruction, blank line, other comment) ends
 * the block for good. Each directive may appear once.
 */
import { isGoSpace } from '../shell/go-text.js';
import { LineParseError } from './syntax-error.js';

const VALID = new Set(['syntax', 'escape', 'check']);
// Go's \s is [\t\n\f\r ]; `.` must also match \r as Go's does.
const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;

export interface Directive {
  name: string;
  value: string;
}

export class DirectiveParser {
  private done = false;
  readonly seen: Record<string, string> = {};

  /**
   * Looks at one (left-trimmed) line; returns the directive it holds, if the block is still open.
   * Throws LineParseError for a repeated directive.
   */
  parseLine(line: string): Directive | undefined {
    if (this.done) return undefined;
    if (!line.startsWith('#')) {
      this.done = true;
      return undefined;
    }
    let i = 1;
    while (i < line.length && isGoSpace(line.charCodeAt(i))) i++;
    const m = DIRECTIVE.exec(line.slice(i));
    const name = m?.[1]?.toLowerCase();
    if (!m || name === undefined || !VALID.has(name)) {
      this.done = true;
      return undefined;
    }
    if (Object.prototype.hasOwnProperty.call(this.seen, name)) {
      throw new LineParseError(
        `only one ${name} parser directive can be used`,
        `remove the second "# ${name}=" line`,
      );
    }
    const value = m[2]!;
    this.seen[name] = value;
    return { name, value };
  }
}
