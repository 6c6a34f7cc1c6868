import { GantryError } from '../util/errors.js';
import { UsageError } from './flags.js';

/** Exit statuses: 0 success, 1 the operation failed, 2 the command line was wrong or asks for something unsupported. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return 2;
  if (err instanceof GantryError && (err.code === 'UNSUPPORTED' || err.code === 'INVALID_ARGUMENT')) return 2;
  return 1;
}

/** One readable error block: the chain of what was being done, then what to do about it. */
export function formatError(err: unknown, program = 'gantry'): string {
  if (err instanceof GantryError) {
    const lines = [`${program}: error: ${err.message}`];
    if (err.hint) lines.push(`hint: ${err.hint}`);
    if (process.env.GANTRY_DEBUG && err.stack) lines.push(err.stack);
    return lines.join('\n');
  }
  const e = err as Error;
  return `${program}: internal error: ${e?.stack ?? String(err)}`;
}
