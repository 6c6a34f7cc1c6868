export { ShellLex } from './lex.js';
export type { ShellLexOptions, ProcessWordResult, ProcessWordsResult } from './lex.js';
export { envFromRecord, envFromMap, envFromList, emptyEnv } from './env.js';
export type { EnvGetter } from './env.js';
export { goQuote } from './go-text.js';
