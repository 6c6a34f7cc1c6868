import { lineLogger, type Logger, type LogLevel } from '../util/logger.js';
import { UsageError } from './flags.js';

const LEVEL_NAMES: Record<string, LogLevel> = {
  trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error', fatal: 'error', panic: 'error',
};

/** Kaniko's --verbosity / --log-format / --log-timestamp mapped to our line logger. */
export function cliLogger(verbosity: string, format: string, timestamps: boolean, write: (line: string) => void): Logger {
  const level = LEVEL_NAMES[verbosity.toLowerCase()];
  if (!level) throw new UsageError(`invalid --verbosity "${verbosity}": expected one of ${Object.keys(LEVEL_NAMES).join(', ')}`);
  if (!['text', 'color', 'json'].includes(format)) throw new UsageError(`invalid --log-format "${format}": expected text, color or json`);
  const base = lineLogger({ level, format: format === 'json' ? 'json' : 'text', write });
  if (!timestamps || format === 'json') return base;
  return { log: (lvl, msg, fields) => base.log(lvl, `${new Date().toISOString()} ${msg}`, fields) };
}
