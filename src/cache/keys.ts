/**
 * Layer cache keys. A key names "the layer this step produces", so it covers everything the
 * step's output depends on and nothing else: the chain of earlier steps (parent key), the step
 * itself after variable expansion, the build args and env it can see, the platform, and the
 * content it reads (copied files, mount identities, heredoc bodies). docs/cache.md describes the
 * scheme; any change to what is hashed or how bumps CACHE_KEY_VERSION so old entries simply miss.
 */
import { GantryError } from '../util/errors.js';
import { isDigest } from '../util/digest.js';
import { formatPlatform, normalizePlatform, parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { byteCompare, FramedHash } from './framing.js';

/** `sha256:<64 hex>`; the registry/OCI-layout tag is the hex part (see keyTag). */
export type CacheKey = `sha256:${string}`;

export const CACHE_KEY_VERSION = 'gantry-cache-key/v1';

/** A flag value as the instruction carries it after expansion; undefined = flag absent. */
export type FlagValue = string | number | boolean | readonly string[] | undefined;

/** The instruction after expansion, in canonical form: what it does, not how it was spelled. */
export interface InstructionIdentity {
  /** Lower-case keyword: `run`, `copy`, `add`, ... */
  kind: string;
  /** Expanded arguments in order (RUN: the command words, or one shell string; COPY: sources then dest). */
  args: readonly string[];
  /** Whether `args` is a shell-form command (RUN/CMD) rather than exec form. */
  shell?: boolean;
  /** Flags that change the result (`--chmod`, `--link`, `--network`, `--exclude`...); absent ones are left out. */
  flags?: Readonly<Record<string, FlagValue>>;
}

/**
 * What identifies a RUN mount without its content: ids, targets and options. Secret values never
 * enter the key (only the id), and neither do cache mount contents (they are caches, not inputs).
 * A bind mount of the context or of a stage does read content: pass that content's digest.
 */
export interface MountIdentity {
  type: string;
  target?: string;
  id?: string;
  source?: string;
  from?: string;
  readOnly?: boolean;
  sharing?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  required?: boolean;
  env?: string;
  size?: number;
  /** Content digest of what a bind mount exposes (contextDigest of the source, or a stage's key). */
  digest?: string;
}

export interface HeredocIdentity {
  name: string;
  body: string;
  /** False when the delimiter was quoted (no expansion of the body). */
  expand?: boolean;
}

export interface CacheKeyInput {
  /** The previous step's key, or for a stage's first step the base image's manifest digest (`scratch` for FROM scratch). */
  parent: string;
  platform: Platform | string;
  instruction: InstructionIdentity;
  /** Environment the step sees (`KEY=VALUE` list as in the image config, or a record). */
  env?: readonly string[] | Readonly<Record<string, string>>;
  /** Resolved values of build args (`--build-arg` plus ARG defaults). */
  buildArgs?: Readonly<Record<string, string>>;
  /**
   * Names of the ARGs declared in this stage up to this step: only those can reach the step, so
   * only those enter the key (a changing `--build-arg GIT_SHA=...` that this stage never declares
   * must not invalidate it: kaniko#1008). Undefined = every build arg is in scope.
   */
  argsInScope?: readonly string[];
  /** COPY/ADD: contextDigest(...).digest of the files the step copies from the context. */
  files?: string;
  /** Other content the step reads, in order: `COPY --from` stage keys, `ADD` URL checksums... */
  inputs?: ReadonlyArray<{ name: string; digest: string }>;
  mounts?: readonly MountIdentity[];
  heredocs?: readonly HeredocIdentity[];
}

/** The tag a key is stored under: its hex part (Kaniko tags cache images the same way). */
export function keyTag(key: string): string {
  return key.startsWith('sha256:') ? key.slice('sha256:'.length) : key;
}

function canonicalPlatform(p: Platform | string): string {
  const platform = typeof p === 'string' ? parsePlatform(p) : p;
  return formatPlatform(normalizePlatform(platform));
}

function canonicalParent(parent: string): string {
  if (parent === 'scratch') return parent;
  const withAlg = /^[a-f0-9]{64}$/.test(parent) ? `sha256:${parent}` : parent;
  if (!isDigest(withAlg)) {
    throw new GantryError('INVALID_ARGUMENT', `cache key parent "${parent}" is neither a digest, a cache key nor "scratch"`);
  }
  return withAlg;
}

function envPairs(env: CacheKeyInput['env']): Array<[string, string]> {
  const map = new Map<string, string>();
  if (Array.isArray(env)) {
    for (const kv of env as readonly string[]) {
      const eq = kv.indexOf('=');
      if (eq < 0) map.set(kv, '');
      else map.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
  } else if (env) {
    for (const [k, v] of Object.entries(env)) map.set(k, v);
  }
  return [...map].sort((a, b) => byteCompare(a[0], b[0]));
}

function scopedArgs(args: CacheKeyInput['buildArgs'], scope: CacheKeyInput['argsInScope']): Array<[string, string]> {
  const visible = scope ? new Set(scope) : undefined;
  return Object.entries(args ?? {})
    .filter(([k]) => !visible || visible.has(k))
    .sort((a, b) => byteCompare(a[0], b[0]));
}

function writeFlag(h: FramedHash, name: string, v: Exclude<FlagValue, undefined>): void {
  h.value(name);
  if (typeof v === 'string') h.field('s', v);
  else if (typeof v === 'number') h.field('n', String(v));
  else if (typeof v === 'boolean') h.field('b', v ? '1' : '0');
  else h.list('l', v, (item, hh) => hh.value(item));
}

const MOUNT_FIELDS = ['type', 'target', 'id', 'source', 'from', 'readOnly', 'sharing', 'mode', 'uid', 'gid', 'required', 'env', 'size', 'digest'] as const;

/** Computes the cache key of one build step. Deterministic: same input, same key, on any machine. */
export function cacheKey(input: CacheKeyInput): CacheKey {
  const h = new FramedHash();
  h.value(CACHE_KEY_VERSION);
  h.field('parent', canonicalParent(input.parent));
  h.field('platform', canonicalPlatform(input.platform));
  const inst = input.instruction;
  h.field('kind', inst.kind.toLowerCase());
  h.field('shell', inst.shell ? '1' : '0');
  h.list('args', inst.args, (a, hh) => hh.value(a));
  const flags = Object.entries(inst.flags ?? {})
    .filter((e): e is [string, Exclude<FlagValue, undefined>] => e[1] !== undefined)
    .sort((a, b) => byteCompare(a[0], b[0]));
  h.list('flags', flags, ([name, v], hh) => writeFlag(hh, name, v));
  h.list('env', envPairs(input.env), ([k, v], hh) => hh.value(k).value(v));
  h.list('args-in-scope', scopedArgs(input.buildArgs, input.argsInScope), ([k, v], hh) => hh.value(k).value(v));
  h.field('files', input.files ?? '');
  h.list('inputs', input.inputs ?? [], (i, hh) => hh.value(i.name).value(i.digest));
  h.list('mounts', input.mounts ?? [], (m, hh) => {
    // Every field is framed, present or not, so moving a value between fields changes the key.
    for (const f of MOUNT_FIELDS) {
      const v = m[f];
      hh.field(f, v === undefined ? '' : typeof v === 'boolean' ? (v ? 'true' : 'false') : `=${v}`);
    }
  });
  h.list('heredocs', input.heredocs ?? [], (d, hh) => hh.value(d.name).value(d.body).value(d.expand === false ? 'raw' : 'expand'));
  return `sha256:${h.hex()}`;
}
