/**
 * The image-history strings BuildKit's Dockerfile frontend writes (`created_by`), reproduced
 * exactly so tools that read history (docker history, dive, scanners) see what they expect.
 * BuildKit builds most of them with Go's fmt verbs (`%q` of a []string, `%v` of a map), so the
 * small Go formatters they depend on live here too.
 */
import type { HealthConfig } from '../dockerfile/index.js';

/** The `comment` of every history entry BuildKit's Dockerfile frontend adds. */
export const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
/** BuildKit appends this to entries of steps that produced a filesystem state (COPY, ADD, RUN). */
export const BUILDKIT_SUFFIX = ' # buildkit';

const ESCAPES: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '\\': '\\\\' };

function isPrintable(code: number): boolean {
  if (code < 0x20 || code === 0x7f) return false;
  if (code >= 0x80 && code <= 0x9f) return false;
  // Lone surrogates, non-characters and unassigned format characters print as escapes in Go.
  if ((code >= 0xd800 && code <= 0xdfff) || code === 0xfffe || code === 0xffff) return false;
  if (code === 0xad || (code >= 0x200b && code <= 0x200f) || (code >= 0x2028 && code <= 0x202e) || code === 0xfeff) return false;
  return true;
}

function escapeCode(code: number): string {
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
  if (code < 0x80) return `\\x${hex(code, 2)}`;
  if (code <= 0xffff) return `\\u${hex(code, 4)}`;
  return `\\U${hex(code, 8)}`;
}

function quoteWith(s: string, quote: '"' | "'"): string {
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === quote) out += '\\' + ch;
    else if (ESCAPES[ch]) out += ESCAPES[ch];
    else if (isPrintable(code)) out += ch;
    else out += escapeCode(code);
  }
  return out + quote;
}

/** Go's strconv.Quote (what `%q` does to a string). */
export function goQuote(s: string): string {
  return quoteWith(s, '"');
}

/** Go's strconv.QuoteRune (what `%q` does to an integer). */
export function goQuoteRune(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0x10ffff) return "'\\ufffd'";
  return quoteWith(String.fromCodePoint(n), "'");
}

/** `%q` of a []string: `["a" "b"]`. */
export function goQuoteList(list: readonly string[] | undefined | null): string {
  return `[${(list ?? []).map(goQuote).join(' ')}]`;
}

/** `%v` of a []string: `[a b]`. */
export function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

/** Go's time.Duration.String for a count of nanoseconds. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = BigInt(Math.round(Math.abs(ns)));
  const frac = (v: bigint, prec: number): [string, bigint] => {
    let digits = '';
    let print = false;
    for (let i = 0; i < prec; i++) {
      const d = v % 10n;
      print = print || d !== 0n;
      if (print) digits = d.toString() + digits;
      v /= 10n;
    }
    return [print ? '.' + digits : '', v];
  };
  let out: string;
  if (u < 1_000_000_000n) {
    if (u < 1000n) out = `${u}ns`;
    else if (u < 1_000_000n) {
      const [f, whole] = frac(u, 3);
      out = `${whole}${f}µs`;
    } else {
      const [f, whole] = frac(u, 6);
      out = `${whole}${f}ms`;
    }
  } else {
    const [f, secs] = frac(u, 9);
    u = secs;
    out = `${u % 60n}${f}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? '-' + out : out;
}

/**
 * `HEALTHCHECK %q` of BuildKit's *HealthcheckConfig: Go prints the struct pointer as
 * `&{["CMD-SHELL" "curl -f http://x/"] "30s" "3s" "0s" "0s" '\x03'}` (durations through their
 * String method, Retries as a quoted rune).
 */
export function healthcheckCreatedBy(h: HealthConfig): string {
  const d = (v: number | undefined) => goQuote(goDuration(v ?? 0));
  return `HEALTHCHECK &{${goQuoteList(h.test)} ${d(h.interval)} ${d(h.timeout)} ${d(h.startPeriod)} ${d(h.startInterval)} ${goQuoteRune(h.retries ?? 0)}}`;
}

/** `EXPOSE %v` of a nat.PortSet: `map[443/tcp:{} 80/tcp:{}]`, keys in Go's sorted map order. */
export function exposeCreatedBy(ports: readonly string[]): string {
  const keys = [...new Set(ports)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `EXPOSE map[${keys.map((k) => `${k}:{}`).join(' ')}]`;
}

export interface FileOpHistory {
  kind: 'copy' | 'add';
  parents?: boolean;
  chown?: string;
  chmod?: string;
  sources: readonly string[];
  /** Heredoc source names. */
  contents: readonly string[];
  dest: string;
}

/**
 * `COPY [--parents] [--chown=…] [--chmod=…] src… [<<EOF…] dest # buildkit`. BuildKit leaves out
 * --from, --link, --exclude and --checksum, and writes the sources and destination as expanded.
 */
export function fileOpCreatedBy(op: FileOpHistory): string {
  let s = op.kind === 'add' ? 'ADD' : 'COPY';
  if (op.parents) s += ' --parents';
  if (op.chown) s += ` --chown=${op.chown}`;
  if (op.chmod) s += ` --chmod=${op.chmod}`;
  for (const src of op.sources) s += ' ' + src;
  for (const c of op.contents) s += ' <<' + c;
  return s + ' ' + op.dest + BUILDKIT_SUFFIX;
}
