export * from './types.js';
export { parseInstruction, unknownInstructionError } from './parse.js';
export { expandInstruction, EXPANDED_KINDS, type ExpandResult } from './expand.js';
export { parseFlags, type FlagSpec, type FlagValues } from './flags.js';
export { parseMount, parseByteSize, splitCsvRecord } from './mounts.js';
export { parseGoDuration, parsePortSpec, exposedPortKeys, checkSignal, type PortSpec } from './values.js';
export { formatLocation, instructionError, locateError } from './errors.js';
export { closest, levenshtein } from './suggest.js';
