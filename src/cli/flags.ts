import { GantryError } from '../util/errors.js';

/**
 * A small flag parser with Go pflag semantics, because Kaniko recipes are written for pflag:
 * `--flag=value`, `--flag value`, bools as `--flag` / `--flag=false` (never `--flag false`),
 * `-d value` / `-d=value` / `-dvalue`, repeated flags accumulate, `--` ends flags. Kaniko's
 * `--no-push` is a flag of its own, not the negation of `--push`. (commander, chosen in deps.md,
 * needed a normalizer for exactly these cases; owning the ~150 lines is simpler than fighting it.)
 */
export type FlagKind = 'bool' | 'string' | 'list' | 'map';

export interface FlagSpec {
  name: string;
  short?: string;
  /** Deprecated or alternative spellings that set the same value (e.g. Kaniko's --tarPath). */
  aliases?: string[];
  kind: FlagKind;
  /** Environment variable read when the flag is not given (flag wins). */
  env?: string;
  /** For map flags: separator between several `k=v` pairs in one value (Kaniko's `;` in --registry-map). */
  mapSeparator?: string;
  help: string;
  valueName?: string;
  hidden?: boolean;
  /** Set when the flag parses but the feature is not available yet: using it exits 2 with this text. */
  unsupported?: string;
  default?: string | boolean;
}

export type FlagValue = boolean | string | string[] | Record<string, string[]>;

export interface ParsedFlags {
  values: Record<string, FlagValue>;
  /** Names (canonical) given on the command line or through their env var. */
  given: Set<string>;
  positionals: string[];
}

export class UsageError extends GantryError {
  constructor(message: string, hint?: string) {
    super('INVALID_ARGUMENT', message, hint ? { hint } : {});
    this.name = 'UsageError';
  }
}

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

export function parseBool(value: string, flag: string): boolean {
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new UsageError(`invalid value "${value}" for flag --${flag}: expected true or false`);
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function suggest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const d = levenshtein(name.toLowerCase(), c.toLowerCase());
    if (d < bestScore) {
      bestScore = d;
      best = c;
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function initialValue(spec: FlagSpec): FlagValue {
  switch (spec.kind) {
    case 'bool':
      return spec.default === true;
    case 'string':
      return typeof spec.default === 'string' ? spec.default : '';
    case 'list':
      return [];
    case 'map':
      return {};
  }
}

function assign(spec: FlagSpec, values: Record<string, FlagValue>, raw: string, shownAs: string): void {
  switch (spec.kind) {
    case 'bool':
      values[spec.name] = parseBool(raw, shownAs);
      return;
    case 'string':
      values[spec.name] = raw;
      return;
    case 'list':
      (values[spec.name] as string[]).push(raw);
      return;
    case 'map': {
      const map = values[spec.name] as Record<string, string[]>;
      const pairs = spec.mapSeparator ? raw.split(spec.mapSeparator) : [raw];
      for (const pair of pairs) {
        if (pair === '') continue;
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new UsageError(`invalid value "${pair}" for flag --${shownAs}: expected key=value`);
        (map[pair.slice(0, eq)] ??= []).push(pair.slice(eq + 1));
      }
      return;
    }
  }
}

export function parseFlags(argv: string[], specs: FlagSpec[], env: NodeJS.ProcessEnv = {}): ParsedFlags {
  const byLong = new Map<string, FlagSpec>();
  const byShort = new Map<string, FlagSpec>();
  for (const s of specs) {
    byLong.set(s.name, s);
    for (const a of s.aliases ?? []) byLong.set(a, s);
    if (s.short) byShort.set(s.short, s);
  }
  const values: Record<string, FlagValue> = {};
  for (const s of specs) values[s.name] = initialValue(s);
  const given = new Set<string>();
  const positionals: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let spec: FlagSpec | undefined;
    let shownAs: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      shownAs = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      spec = byLong.get(shownAs);
      if (!spec) {
        const s = suggest(shownAs, [...byLong.keys()]);
        throw new UsageError(`unknown flag: --${shownAs}`, s ? `did you mean --${s}?` : 'run with --help to list the flags');
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      shownAs = arg[1]!;
      spec = byShort.get(shownAs);
      if (!spec) throw new UsageError(`unknown shorthand flag: '${shownAs}' in ${arg}`, 'run with --help to list the flags');
      const rest = arg.slice(2);
      if (rest !== '') inline = rest.startsWith('=') ? rest.slice(1) : rest;
    } else {
      positionals.push(arg);
      continue;
    }
    if (spec.kind === 'bool') {
      assign(spec, values, inline ?? 'true', shownAs);
    } else {
      let v = inline;
      if (v === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: --${shownAs}`);
        v = argv[++i]!;
      }
      assign(spec, values, v, shownAs);
    }
    given.add(spec.name);
  }

  for (const s of specs) {
    if (given.has(s.name) || !s.env) continue;
    const v = env[s.env];
    if (v === undefined || v === '') continue;
    if (s.kind === 'list') for (const part of v.split(',')) assign(s, values, part.trim(), s.env);
    else assign(s, values, v, s.env);
    given.add(s.name);
  }
  return { values, given, positionals };
}

/** Fails (exit 2) when a flag whose feature is not available yet was used. Never silently ignored. */
export function rejectUnsupported(parsed: ParsedFlags, specs: FlagSpec[], command: string): void {
  for (const s of specs) {
    if (s.unsupported && parsed.given.has(s.name)) {
      throw new UsageError(`${command}: flag --${s.name} is not supported yet: ${s.unsupported}`);
    }
  }
}

export function formatHelp(usage: string, description: string, specs: FlagSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden)
    .map((s) => {
      const names = [s.short ? `-${s.short}, ` : '    ', `--${s.name}`].join('');
      const val = s.kind === 'bool' ? '' : ` ${s.valueName ?? (s.kind === 'map' ? 'key=value' : 'string')}`;
      const extra = [s.env ? `env ${s.env}` : '', s.unsupported ? 'not supported yet' : '', s.kind === 'list' || s.kind === 'map' ? 'repeatable' : '']
        .filter(Boolean)
        .join('; ');
      return [`  ${names}${val}`, `${s.help}${extra ? ` (${extra})` : ''}`] as const;
    });
  const width = Math.min(44, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = rows.map(([l, r]) => (l.length >= width ? `${l}\n${' '.repeat(width)}${r}` : l.padEnd(width) + r));
  return `Usage: ${usage}\n\n${description}\n\nFlags:\n${lines.join('\n')}\n`;
}
