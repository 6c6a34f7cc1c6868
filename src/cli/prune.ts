/**
 * `gantry prune`: frees the disk space gantry's local caches use: the directories of
 * `RUN --mount=type=cache` (run cache), the store of unpacked base layers and the build-context
 * hash indexes (one small file per context directory). Registry and
 * `type=local` layer caches are not touched: they are shared, and their owner prunes them.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultContextIndexDir } from '../build/cache.js';
import { defaultRunCacheDir } from '../build/run-context.js';
import { UnpackedLayerStore } from '../cache/layer-store.js';
import { GantryError } from '../util/errors.js';
import { formatHelp, parseFlags, UsageError, type FlagSpec } from './flags.js';
import type { CliIO } from './main.js';

const flags: FlagSpec[] = [
  { name: 'all', short: 'a', kind: 'bool', help: 'remove everything, whatever --keep-storage says (the default without --keep-storage too)' },
  { name: 'keep-storage', kind: 'string', valueName: 'size', help: 'keep the most recently used entries up to this total size (e.g. 512MB, 10GB)' },
  { name: 'dry-run', kind: 'bool', help: 'print what would be removed, remove nothing' },
  { name: 'run-cache-dir', kind: 'string', valueName: 'dir', help: 'the RUN cache directory (default ~/.cache/gantry/run-cache)' },
  { name: 'layer-store', kind: 'string', valueName: 'dir', help: 'the unpacked-layer store (default ~/.cache/gantry/layers)' },
  { name: 'context-index-dir', kind: 'string', valueName: 'dir', help: 'the build-context hash indexes (default ~/.cache/gantry/context-index)' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = 'gantry prune [flags]';
const DESCRIPTION = `Removes gantry's local caches: the RUN --mount=type=cache directories, the unpacked base
layers and the build-context hash indexes (they only spare re-reading unchanged context files).
Entries are removed least recently used first. Do not run it while a build is running.`;

/** `~/.cache/gantry/layers`, or `$XDG_CACHE_HOME/gantry/layers`. */
export function defaultLayerStoreDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'layers');
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** Docker-style sizes: `1024`, `512MB`, `1.5GiB` (k/m/g/t are decimal, *iB binary). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`invalid size "${text}"`, 'give a number of bytes with an optional unit, e.g. 512MB or 10GiB');
  return Math.floor(Number(m[1]) * unit);
}

export interface PruneEntry {
  kind: 'run-cache' | 'layer' | 'context-index';
  /** Cache mount directory name, layer diffID, or index file name. */
  name: string;
  path: string;
  bytes: number;
  lastUsed: Date;
}

export interface PrunePlan {
  remove: PruneEntry[];
  keep: PruneEntry[];
}

/** Bytes of a tree (regular files and symlinks as lstat reports them); never follows links. */
async function treeBytes(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of await readdir(path).catch(() => [] as string[])) total += await treeBytes(join(path, name));
  return total;
}

/** The index files (and temp files of interrupted writes) of the context-index directory. */
async function contextIndexEntries(dir: string): Promise<PruneEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new GantryError('IO', `reading the context index directory ${dir}: ${(err as Error).message}`, { hint: 'check its permissions, or pass --context-index-dir' });
  }
  const out: PruneEntry[] = [];
  for (const name of names.filter((n) => /^context-[0-9a-f]+\.json/.test(n))) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) out.push({ kind: 'context-index', name, path, bytes: st.size, lastUsed: st.mtime });
  }
  return out;
}

async function runCacheEntries(dir: string): Promise<PruneEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new GantryError('IO', `reading the RUN cache directory ${dir}: ${(err as Error).message}`, { hint: 'check its permissions, or pass --run-cache-dir' });
  }
  const out: PruneEntry[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    out.push({ kind: 'run-cache', name, path, bytes: await treeBytes(path), lastUsed: st.mtime });
  }
  return out;
}

/**
 * Chooses what goes: everything, or the least recently used entries of both stores together until
 * the rest fits in `keepBytes`.
 */
export function planPrune(entries: PruneEntry[], keepBytes?: number): PrunePlan {
  const byAge = [...entries].sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
  if (keepBytes === undefined) return { remove: byAge, keep: [] };
  let total = byAge.reduce((s, e) => s + e.bytes, 0);
  const plan: PrunePlan = { remove: [], keep: [] };
  for (const e of byAge) {
    if (total > keepBytes) {
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

export async function pruneCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, flags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, flags));
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`prune takes no arguments, got "${p.positionals[0]}"`, `usage: ${USAGE}`);
  const keepBytes = p.given.has('keep-storage') && !p.values.all ? parseSize(p.values['keep-storage'] as string) : undefined;
  const dryRun = p.values['dry-run'] === true;
  const runCacheDir = (p.values['run-cache-dir'] as string | undefined) || defaultRunCacheDir(io.env);
  // Pruning never unpacks: a store opened here only lists and removes.
  const layers = new UnpackedLayerStore((p.values['layer-store'] as string | undefined) || defaultLayerStoreDir(io.env), {
    unpack: async () => {
      throw new GantryError('INTERNAL', 'the prune command does not unpack layers');
    },
  });

  const layerEntries: PruneEntry[] = (await layers.list()).map((l) => ({ kind: 'layer', name: l.diffId, path: l.path, bytes: l.bytes, lastUsed: l.lastUsed }));
  const indexDir = (p.values['context-index-dir'] as string | undefined) || defaultContextIndexDir(io.env);
  const plan = planPrune([...(await runCacheEntries(runCacheDir)), ...layerEntries, ...(await contextIndexEntries(indexDir))], keepBytes);
  const freed = plan.remove.reduce((s, e) => s + e.bytes, 0);
  for (const e of plan.remove) io.stdout(`${dryRun ? 'would remove' : 'removed'} ${e.kind} ${e.name} (${human(e.bytes)})\n`);

  if (!dryRun) {
    for (const e of plan.remove.filter((x) => x.kind === 'run-cache' || x.kind === 'context-index')) {
      await rm(e.path, { recursive: true, force: true, maxRetries: 2 }).catch((err: Error) => {
        throw new GantryError('IO', `removing the ${e.kind === 'run-cache' ? 'RUN cache entry' : 'context index'} ${e.path}: ${err.message}`, { hint: 'check its permissions and remove it by hand' });
      });
    }
    // Layers go through the store (atomic rename first, size files, interrupted unpacks); its LRU
    // order is the one planned, so a byte budget removes exactly the planned layers.
    const keptLayerBytes = plan.keep.filter((e) => e.kind === 'layer').reduce((s, e) => s + e.bytes, 0);
    const layersToGo = plan.remove.some((e) => e.kind === 'layer');
    await layers.prune(keepBytes === undefined ? { all: true } : layersToGo ? { maxBytes: keptLayerBytes } : { maxBytes: Number.MAX_SAFE_INTEGER });
  }
  io.stdout(`${dryRun ? 'would free' : 'total reclaimed space'}: ${human(freed)} (${plan.remove.length} entr${plan.remove.length === 1 ? 'y' : 'ies'}${plan.keep.length ? `, ${plan.keep.length} kept` : ''})\n`);
  return 0;
}
