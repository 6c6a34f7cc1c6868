/** Small value grammars shared by instructions: Go durations, port specs, signals. */
import { InvalidInstruction } from './errors.js';

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration, in nanoseconds: `30s`, `1m30s`, `1.5h`, `0`. */
export function parseGoDuration(text: string): number {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new InvalidInstruction(`time: invalid duration "${text}"`);
  let total = 0;
  const re = /^(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)/;
  while (s !== '') {
    const m = re.exec(s);
    if (!m || m[1] === '' || m[1] === '.') {
      throw new InvalidInstruction(`time: invalid duration "${text}"`, 'use a Go duration such as 30s, 1m30s or 500ms');
    }
    total += parseFloat(m[1]!) * UNIT_NS[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * Math.round(total);
}

/** Docker's minimum for healthcheck intervals: 1ms. */
export const MIN_HEALTH_DURATION_NS = 1e6;

export interface PortSpec {
  start: number;
  end: number;
  proto: 'tcp' | 'udp' | 'sctp';
}

/** `80`, `80/udp`, `8000-8010/tcp`, `127.0.0.1:8080:80/tcp`; see exposedPortKeys. */
export function parsePortSpec(spec: string): PortSpec {
  const slash = spec.lastIndexOf('/');
  const portPart = slash < 0 ? spec : spec.slice(0, slash);
  const protoRaw = slash < 0 ? 'tcp' : spec.slice(slash + 1);
  const proto = protoRaw.toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp') {
    throw new InvalidInstruction(`invalid proto: ${protoRaw}`, 'EXPOSE accepts tcp, udp or sctp, e.g. 53/udp');
  }
  // `ip:hostPort:containerPort` (docker run syntax) is accepted; only the container part counts.
  const container = portPart.slice(portPart.lastIndexOf(':') + 1);
  const m = /^(\d+)(?:-(\d+))?$/.exec(container);
  if (!m) throw new InvalidInstruction(`invalid containerPort: ${container}`, 'EXPOSE takes port numbers or ranges, e.g. 80 or 8000-8010/tcp');
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535 || end < start) throw new InvalidInstruction(`invalid port range: ${portPart}`);
  return { start, end, proto };
}

/** Expands a spec into `port/proto` keys. */
export function exposedPortKeys(spec: string): string[] {
  const p = parsePortSpec(spec);
  const keys: string[] = [];
  for (let port = p.start; port <= p.end; port++) keys.push(`${port}/${p.proto}`);
  return keys;
}

const SIGNALS = [
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL',
  'PROF', 'PWR', 'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1',
  'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ', 'RTMIN', 'RTMAX',
];

/** Docker's signal.ParseSignal: a number, or a name with or without SIG, or RTMIN+n / RTMAX-n. */
export function checkSignal(sig: string): void {
  if (/^\d+$/.test(sig)) {
    if (Number(sig) === 0) throw new InvalidInstruction(`invalid signal: ${sig}`);
    return;
  }
  const name = sig.toUpperCase().replace(/^SIG/, '');
  if (SIGNALS.includes(name)) return;
  const rt = /^RT(MIN\+|MAX-)(\d+)$/.exec(name);
  if (rt && Number(rt[2]) <= 30) return;
  throw new InvalidInstruction(`invalid signal: ${sig}`, 'use a signal name such as SIGTERM or a number');
}
