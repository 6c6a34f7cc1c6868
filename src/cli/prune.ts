/**
 * `gantry prune`: frees the disk space of gantry's local caches, all under
 * `$XDG_CACHE_HOME/gantry/` (default `~/.cache/gantry/`): the directories of
 * `RUN --mount=type=cache` (run-cache), the store of unpacked base layers (layers), the
 * build-context hash indexes (context-index), the per-layer path indexes (layer-index) and the V8
 * code cache of the CLI bundle (code-cache). Every one gets the same rules (`--all`,
 * `--older-than`, `--keep-storage` across all of them, least recently used first, `--dry-run`)
 * and a summary line. Registry and `type=local` layer caches and Kaniko's base-image cache
 * (`--cache-dir`) are not touched: they are shared, and their owner prunes them; only warms that a
 * killed `gantry warmer` left in `--cache-dir` are cleaned, when that directory is named.
 *
 * Files written by rootless builds may belong to the user's subordinate ids: src/cli/userns.ts
 * re-executes prune in the same user namespace as builds, where they can be removed.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultContextIndexDir } from '../build/cache.js';
import { defaultRunCacheDir } from '../build/run-context.js';
import { parseGoDuration } from '../cache/duration.js';
import { UnpackedLayerStore, defaultLayerStoreDir } from '../cache/layer-store.js';
import { defaultLayerIndexDir, listLayerIndexes, pruneLayerIndexes } from '../fs/index.js';
import { GantryError } from '../util/errors.js';
import { formatHelp, parseFlags, UsageError, type FlagSpec } from './flags.js';
import type { CliIO } from './main.js';

const flags: FlagSpec[] = [
  { name: 'all', short: 'a', kind: 'bool', help: 'remove everything, whatever --keep-storage and --older-than say (the default without them too)' },
  { name: 'keep-storage', kind: 'string', valueName: 'size', help: 'keep the most recently used entries of all caches together up to this total size (e.g. 512MB, 10GB)' },
  { name: 'older-than', kind: 'string', valueName: 'duration', help: 'remove only entries not used for this long (e.g. 24h, 336h); with --keep-storage, then more until the rest fits' },
  { name: 'dry-run', kind: 'bool', help: 'print what would be removed, remove nothing' },
  { name: 'run-cache-dir', kind: 'string', valueName: 'dir', help: 'the RUN cache directory (default ~/.cache/gantry/run-cache)' },
  { name: 'layer-store', kind: 'string', valueName: 'dir', help: 'the unpacked-layer store (default ~/.cache/gantry/layers)' },
  { name: 'context-index-dir', kind: 'string', valueName: 'dir', help: 'the build-context hash indexes (default ~/.cache/gantry/context-index)' },
  { name: 'layer-index-dir', kind: 'string', valueName: 'dir', help: 'the per-layer path indexes (default ~/.cache/gantry/layer-index)' },
  { name: 'cache-dir', kind: 'string', valueName: 'dir', help: 'a base-image cache (`gantry warmer --cache-dir`): only removes warms left there by killed warmers (over an hour old); its images stay' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = 'gantry prune [flags]';
const DESCRIPTION = `Removes gantry's local caches under $XDG_CACHE_HOME/gantry (default ~/.cache/gantry):
  run-cache      RUN --mount=type=cache directories
  layers         unpacked base layers
  context-index  build-context hash indexes
  layer-index    per-layer path indexes
  code-cache     compiled code of the CLI itself
All of them are only caches: a later build recreates what it needs. Without --keep-storage or
--older-than everything goes; otherwise entries go least recently used first, across all caches.
Every entry removed gets a line, every cache a summary line. The base-image cache of
--cache-dir (gantry warmer) is never pruned. Files left by rootless builds (owned by your
subordinate ids) are removed in the same user namespace builds use. Do not run it during a build.`;

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** Docker-style sizes: `1024`, `512MB`, `1.5GiB` (k/m/g/t are decimal, *iB binary). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`invalid size "${text}"`, 'give a number of bytes with an optional unit, e.g. 512MB or 10GiB');
  return Math.floor(Number(m[1]) * unit);
}

/** `warm`: a base image half-downloaded by a killed `gantry warmer` (only with --cache-dir). */
export type PruneKind = 'run-cache' | 'layer' | 'context-index' | 'layer-index' | 'code-cache' | 'warm';

export interface PruneEntry {
  kind: PruneKind;
  /** Cache mount directory name, layer diffID, or file name. */
  name: string;
  path: string;
  bytes: number;
  lastUsed: Date;
}

export interface PrunePlan {
  remove: PruneEntry[];
  keep: PruneEntry[];
}

export interface PrunePolicy {
  /** Keep the most recently used entries up to this many bytes; undefined = no budget. */
  keepBytes?: number;
  /** Remove entries unused for longer than this. */
  olderThanMs?: number;
  now?: Date;
}

/** Bytes of a tree (regular files and symlinks as lstat reports them) and its newest mtime; never follows links. */
async function treeStats(path: string): Promise<{ bytes: number; newestMs: number }> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return { bytes: 0, newestMs: 0 };
  if (!st.isDirectory()) return { bytes: st.size, newestMs: st.mtimeMs };
  const total = { bytes: 0, newestMs: st.mtimeMs };
  for (const name of await readdir(path).catch(() => [] as string[])) {
    const sub = await treeStats(join(path, name));
    total.bytes += sub.bytes;
    total.newestMs = Math.max(total.newestMs, sub.newestMs);
  }
  return total;
}

/** The names in a cache directory; none when it does not exist. */
async function namesIn(dir: string, what: string, flag: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new GantryError('IO', `reading the ${what} directory ${dir}: ${(err as Error).message}`, { hint: `check its permissions${flag ? `, or pass ${flag}` : ''}` });
  }
}

/** Files of a directory whose names match, one entry each (index files, code cache files). */
async function fileEntries(kind: PruneKind, dir: string, match: RegExp, what: string, flag: string): Promise<PruneEntry[]> {
  const out: PruneEntry[] = [];
  for (const name of (await namesIn(dir, what, flag)).filter((n) => match.test(n))) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) out.push({ kind, name, path, bytes: st.size, lastUsed: st.mtime });
  }
  return out;
}

async function runCacheEntries(dir: string): Promise<PruneEntry[]> {
  const out: PruneEntry[] = [];
  for (const name of await namesIn(dir, 'RUN cache', '--run-cache-dir')) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    out.push({ kind: 'run-cache', name, path, bytes: (await treeStats(path)).bytes, lastUsed: st.mtime });
  }
  return out;
}

/**
 * Chooses what goes: everything without a policy; else the entries unused for `olderThanMs`, then
 * the least recently used of all caches together until the rest fits in `keepBytes`.
 */
export function planPrune(entries: PruneEntry[], policy: PrunePolicy | number = {}): PrunePlan {
  const { keepBytes, olderThanMs, now = new Date() } = typeof policy === 'number' ? { keepBytes: policy } : policy;
  const byAge = [...entries].sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
  if (keepBytes === undefined && olderThanMs === undefined) return { remove: byAge, keep: [] };
  let total = byAge.reduce((s, e) => s + e.bytes, 0);
  const plan: PrunePlan = { remove: [], keep: [] };
  for (const e of byAge) {
    const old = olderThanMs !== undefined && now.getTime() - e.lastUsed.getTime() > olderThanMs;
    if (old || (keepBytes !== undefined && total > keepBytes)) {
      plan.remove.push(e);
      total -= e.bytes;
    } else plan.keep.push(e);
  }
  return plan;
}

function human(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)}${units[i]}`;
}

const entries = (n: number) => `${n} entr${n === 1 ? 'y' : 'ies'}`;

interface Removed {
  /** Entry names removed. */
  names: Set<string>;
  bytes: number;
  /** The first failure: the entries it concerns stay, the others are removed anyway. */
  error?: unknown;
}

/** One local cache: where it is, what it holds, and how its entries are removed safely. */
interface LocalCache {
  label: string;
  dir: string;
  list(): Promise<PruneEntry[]>;
  /**
   * Removes the planned entries: all unused since `cutoff`, the newest planned one's last use.
   * Called with none too (then `cutoff` is undefined), for leftovers of interrupted writes.
   */
  remove(planned: PruneEntry[], cutoff: Date | undefined): Promise<Removed>;
}

/** Removes entries one by one; a missing one was removed by someone else. */
async function removePaths(planned: PruneEntry[]): Promise<Removed> {
  const done: Removed = { names: new Set(), bytes: 0 };
  for (const e of planned) {
    try {
      await rm(e.path, { recursive: true, force: true, maxRetries: 2 });
    } catch (err) {
      done.error ??= err;
      continue;
    }
    done.names.add(e.name);
    done.bytes += e.bytes;
  }
  return done;
}

/** What a store's own prune reports, or its failure. */
async function viaStore(prune: () => Promise<{ removed: string[]; freedBytes: number }>): Promise<Removed> {
  try {
    const r = await prune();
    return { names: new Set(r.removed), bytes: r.freedBytes };
  } catch (err) {
    return { names: new Set(), bytes: 0, error: err };
  }
}

/** Just after `cutoff`, so that "unused for more than 0 ms" selects exactly what was last used by then. */
const justAfter = (cutoff: Date) => new Date(cutoff.getTime() + 1);
/** Prune options removing what was last used by `cutoff`, or nothing but leftovers. */
const upTo = (cutoff: Date | undefined) => (cutoff ? { olderThanMs: 0, now: justAfter(cutoff) } : { maxBytes: Number.MAX_SAFE_INTEGER });

function localCaches(values: Record<string, unknown>, env: NodeJS.ProcessEnv): LocalCache[] {
  const dirOf = (flag: string, fallback: string) => (values[flag] as string | undefined) || fallback;
  const layerDir = dirOf('layer-store', defaultLayerStoreDir(env));
  // Pruning never unpacks: a store opened here only lists and removes.
  const layers = new UnpackedLayerStore(layerDir, {
    unpack: async () => {
      throw new GantryError('INTERNAL', 'the prune command does not unpack layers');
    },
  });
  const layerIndexDir = dirOf('layer-index-dir', defaultLayerIndexDir(env));
  // bin/gantry.js computes the same path itself: it runs before any of dist/ is loaded.
  const codeCacheDir = join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'gantry', 'code-cache');
  const runCacheDir = dirOf('run-cache-dir', defaultRunCacheDir(env));
  const contextIndexDir = dirOf('context-index-dir', defaultContextIndexDir(env));
  return [
    { label: 'run-cache', dir: runCacheDir, list: () => runCacheEntries(runCacheDir), remove: removePaths },
    {
      label: 'layers',
      dir: layers.dir,
      list: async () => (await layers.list()).map((l) => ({ kind: 'layer', name: l.diffId, path: l.path, bytes: l.bytes, lastUsed: l.lastUsed })),
      // Through the store (rename first, side files, interrupted unpacks). By last use, not by
      // name: a layer a build touched since the listing stays.
      remove: (_planned, cutoff) => viaStore(() => layers.prune(upTo(cutoff))),
    },
    {
      label: 'context-index',
      dir: contextIndexDir,
      list: () => fileEntries('context-index', contextIndexDir, /^context-[0-9a-f]+\.json/, 'context index', '--context-index-dir'),
      remove: removePaths,
    },
    {
      label: 'layer-index',
      dir: layerIndexDir,
      list: async () => {
        const files = await listLayerIndexes(layerIndexDir).catch((err: Error) => {
          throw new GantryError('IO', `reading the layer index directory ${layerIndexDir}: ${err.message}`, { hint: 'check its permissions, or pass --layer-index-dir' });
        });
        return files.map((f) => ({ kind: 'layer-index', ...f }));
      },
      remove: (_planned, cutoff) => viaStore(() => pruneLayerIndexes(layerIndexDir, upTo(cutoff))),
    },
    // bin/gantry.js writes `<hash>.bin` (and `<hash>.bin.<pid>` while writing); it reads only files it can verify.
    { label: 'code-cache', dir: codeCacheDir, list: () => fileEntries('code-cache', codeCacheDir, /\.bin(\.\d+)?$/, 'code cache', ''), remove: removePaths },
  ];
}

/** A warm is assembled in `<cache-dir>/gantry/tmp/warm-*` (src/cache/base-images.ts); older than this, its warmer was killed. */
const STALE_WARM_MS = 3600_000;

async function staleWarms(cacheDir: string, now: Date): Promise<PruneEntry[]> {
  const tmp = join(cacheDir, 'gantry', 'tmp');
  const out: PruneEntry[] = [];
  for (const name of (await namesIn(tmp, 'base-image cache tmp', '')).filter((n) => n.startsWith('warm-'))) {
    const path = join(tmp, name);
    if (!(await lstat(path).catch(() => undefined))?.isDirectory()) continue;
    // The newest file, not the directory: a long download writes below it for hours.
    const { bytes, newestMs } = await treeStats(path);
    if (now.getTime() - newestMs > STALE_WARM_MS) out.push({ kind: 'warm', name, path, bytes, lastUsed: new Date(newestMs) });
  }
  return out;
}

/** EACCES/EPERM on a cache file: most likely a rootless build's file owned by a subordinate id. */
function removalError(label: string, dir: string, err: unknown): GantryError {
  const code = (err as NodeJS.ErrnoException).code;
  const denied = code === 'EACCES' || code === 'EPERM';
  return new GantryError('IO', `pruning ${label} in ${dir}: ${(err as Error).message}`, {
    hint: denied
      ? 'files of rootless builds belong to your subordinate ids; prune enters the build user namespace only when you have a range in /etc/subuid and /etc/subgid and uidmap is installed: add one, or run gantry prune as root'
      : 'check its permissions and remove it by hand',
  });
}

export async function pruneCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, flags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, flags));
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`prune takes no arguments, got "${p.positionals[0]}"`, `usage: ${USAGE}`);
  const all = p.values.all === true;
  const policy: PrunePolicy = { now: new Date() };
  if (!all && p.given.has('keep-storage')) policy.keepBytes = parseSize(p.values['keep-storage'] as string);
  if (!all && p.given.has('older-than')) {
    try {
      policy.olderThanMs = parseGoDuration(p.values['older-than'] as string);
    } catch (err) {
      throw new UsageError((err as GantryError).message, 'give a duration such as 24h, 90m or 336h');
    }
  }
  const dryRun = p.values['dry-run'] === true;
  const caches = localCaches(p.values, io.env);

  const listed = new Map<LocalCache, PruneEntry[]>();
  for (const c of caches) listed.set(c, await c.list());
  const plan = planPrune([...listed.values()].flat(), policy);
  const planned = new Set(plan.remove);

  let freed = 0;
  let removedCount = 0;
  let failure: GantryError | undefined;
  for (const c of caches) {
    const mine = listed.get(c)!;
    const go = mine.filter((e) => planned.has(e));
    let done: Removed = { names: new Set(go.map((e) => e.name)), bytes: go.reduce((s, e) => s + e.bytes, 0) };
    if (!dryRun) {
      const cutoff = go.length ? new Date(Math.max(...go.map((e) => e.lastUsed.getTime()))) : undefined;
      done = await c.remove(go, cutoff);
      if (done.error !== undefined) {
        // The other caches are still pruned; the first failure is the command's error.
        const e = removalError(c.label, c.dir, done.error);
        if (failure) io.stderr(`error: ${e.message}\n`);
        failure ??= e;
      }
    }
    for (const e of go) if (done.names.has(e.name)) io.stdout(`${dryRun ? 'would remove' : 'removed'} ${e.kind} ${e.name} (${human(e.bytes)})\n`);
    // done.names may also hold damaged entries the store removed without listing them.
    const left = mine.filter((e) => !done.names.has(e.name)).length;
    io.stdout(`${c.label}: ${dryRun ? 'would free' : 'freed'} ${human(done.bytes)} (${entries(done.names.size)}${left ? `, ${left} kept` : ''}) in ${c.dir}\n`);
    freed += done.bytes;
    removedCount += done.names.size;
  }

  const cacheDir = p.values['cache-dir'] as string | undefined;
  if (cacheDir) {
    const warms = await staleWarms(cacheDir, policy.now!);
    const done: Removed = dryRun ? { names: new Set(warms.map((w) => w.name)), bytes: warms.reduce((s, w) => s + w.bytes, 0) } : await removePaths(warms);
    if (done.error !== undefined) {
      const e = removalError('base-image warms', cacheDir, done.error);
      if (failure) io.stderr(`error: ${e.message}\n`);
      failure ??= e;
    }
    for (const w of warms) if (done.names.has(w.name)) io.stdout(`${dryRun ? 'would remove' : 'removed'} ${w.kind} ${w.name} (${human(w.bytes)})\n`);
    io.stdout(`base-image cache (warms of killed warmers only): ${dryRun ? 'would free' : 'freed'} ${human(done.bytes)} (${entries(done.names.size)}) in ${join(cacheDir, 'gantry', 'tmp')}\n`);
    freed += done.bytes;
    removedCount += done.names.size;
  }

  io.stdout(`${dryRun ? 'would free' : 'total reclaimed space'}: ${human(freed)} (${entries(removedCount)}${plan.keep.length ? `, ${plan.keep.length} kept` : ''})\n`);
  if (failure) throw failure;
  return 0;
}
