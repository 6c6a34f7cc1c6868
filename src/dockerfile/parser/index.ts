export { parseDockerfile, MAX_LINE_BYTES } from './parse.js';
export type { ParseOptions } from './parse.js';
export { dumpParsed, dumpInstruction } from './dump.js';
export { chompHeredocContent, heredocsFromLine, parseHeredocWord } from './heredoc.js';
export { parseWords, parseJSONArray } from './line-parsers.js';
export type { Heredoc, InstructionNode, ParsedDockerfile, ParserWarning, SourceRange } from './types.js';
