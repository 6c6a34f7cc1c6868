/**
 * Libraries never print; they accept a Logger. The default is silent. The CLI/Action supply one
 * that writes text or JSON lines.
 */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export const LEVELS: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 };

export interface Logger {
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { log() {} };

export interface LineLoggerOptions {
  level?: LogLevel;
  format?: 'text' | 'json';
  write?: (line: string) => void;
  now?: () => Date;
}

export function lineLogger(opts: LineLoggerOptions = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const now = opts.now ?? (() => new Date());
  return {
    log(level, message, fields) {
      if (LEVELS[level] < min) return;
      if (opts.format === 'json') {
        write(JSON.stringify({ time: now().toISOString(), level, msg: message, ...fields }));
      } else {
        const prefix = level === 'info' ? '' : `${level.toUpperCase()}: `;
        write(prefix + message);
      }
    },
  };
}
