import { GantryError } from '../util/errors.js';

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration (`336h`, `1h30m`, `90s`, `1.5h`, `0`) into milliseconds, because Kaniko's
 * `--cache-ttl` takes Go's time.ParseDuration syntax and recipes carry those values over.
 * Go has no day unit, and neither do we: `14d` is rejected with a hint.
 */
export function parseGoDuration(text: string): number {
  const s = text.trim();
  const bad = (why: string) =>
    new GantryError('INVALID_ARGUMENT', `invalid duration "${text}": ${why}`, { hint: 'use Go duration syntax, e.g. 336h, 24h, 90m or 1h30m (units: ns, us, ms, s, m, h)' });
  if (s === '0') return 0;
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '') throw bad('empty');
  let total = 0;
  const part = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== '') {
    const m = part.exec(rest);
    if (!m) throw bad(/^\d/.test(rest) ? `missing or unknown unit in "${rest}"` : `unexpected "${rest}"`);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (sign < 0) throw bad('a negative duration makes no sense here');
  return total;
}
