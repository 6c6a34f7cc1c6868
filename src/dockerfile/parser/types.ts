/**
 * The parse tree the parser produces: one node per instruction, arguments split by BuildKit's
 * per-instruction rules but not expanded or unquoted (expansion happens in instructions/ with the
 * shell lexer, once the build args are known).
 */

/**
 * 1-based lines and columns (columns count UTF-16 code units); endLine is inclusive, endColumn is
 * one past the last character of the range on endLine.
 */
export interface SourceRange {
  file: string;
  startLine: number;
  startColumn: number;
  endLine: number;
  endColumn: number;
}

export interface Heredoc {
  /** The delimiter word without quotes, e.g. EOF. */
  name: string;
  /** The body exactly as written, every line with its line ending; leading tabs kept even for `<<-`. */
  content: string;
  /** False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no variable expansion. */
  expand: boolean;
  /**
   * True for `<<-`. Only the terminator is matched after stripping tabs; `content` keeps them
   * (as BuildKit does): apply chompHeredocContent() where the body is used.
   */
  chomp: boolean;
  /** The file descriptor written before `<<` (`3<<EOF`), 0 when none was given. */
  fileDescriptor: number;
}

export interface InstructionNode {
  /** The keyword lower-cased as written, e.g. `from`, `run`; unknown keywords are kept. */
  keyword: string;
  /** `--name` / `--name=value` words directly after the keyword, as written. */
  flags: string[];
  /** Arguments as BuildKit's parser splits them (see conformance README): not expanded. */
  args: string[];
  /** True when the arguments came from a JSON array (exec form). */
  json: boolean;
  /** Heredoc bodies attached to this instruction, in order (for ONBUILD: on both the outer and the inner node). */
  heredocs: Heredoc[];
  /** For ONBUILD: the nested instruction. */
  inner?: InstructionNode;
  /** The instruction text as written, continuation lines joined (used in history/errors). */
  original: string;
  range: SourceRange;
  /** Comment lines directly above the instruction, without the `#`. */
  comments: string[];
}

export interface ParserWarning {
  /** Short rule name as BuildKit's linter names it where one exists, e.g. `NoEmptyContinuation`. */
  rule: string;
  message: string;
  /** Longer explanation, e.g. "Empty continuation lines will become errors in a future release". */
  detail?: string;
  /** Documentation of the rule. */
  url?: string;
  range: SourceRange;
}

export interface ParsedDockerfile {
  file: string;
  /** `#`-directives from the leading comment block, keys lower-cased (`syntax`, `escape`, `check`). */
  directives: Record<string, string>;
  escapeToken: '\\' | '`';
  instructions: InstructionNode[];
  warnings: ParserWarning[];
  /** The source split into lines, for error snippets. */
  lines: string[];
}
