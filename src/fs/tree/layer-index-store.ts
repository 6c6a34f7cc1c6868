/**
 * Layer indexes kept across builds, one small JSON file per diffID (content-addressed, so a file
 * is either right or unreadable): a build records the index of every layer it unpacks or writes,
 * and a later build that only needs paths reads them instead of downloading and unpacking
 * layers. It is a cache: unreadable or foreign files count as missing, failed writes are ignored.
 */
import { readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IndexEntry, IndexEntryType, LayerIndex } from './path-tree.js';

const VERSION = 1;
const TYPES: readonly IndexEntryType[] = ['dir', 'file', 'symlink', 'hardlink', 'char', 'block', 'fifo'];

type Row = [name: string, type: number, mode: number, uid: number, gid: number, mtime: number, linkname?: string];
interface IndexFile {
  v: number;
  diffId: string;
  rows: Row[];
  /** Kept contents (base64) by entry position. */
  content?: Record<string, string>;
}

/** `$XDG_CACHE_HOME/gantry/layer-index`, else `~/.cache/gantry/layer-index`. */
export function defaultLayerIndexDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'gantry', 'layer-index');
}

function encode(diffId: string, index: LayerIndex): string {
  const content: Record<string, string> = {};
  const rows = index.entries.map((e, i): Row => {
    if (e.content) content[i] = e.content.toString('base64');
    const row: Row = [e.name, TYPES.indexOf(e.type), e.mode, e.uid, e.gid, e.mtime];
    if (e.linkname !== undefined) row.push(e.linkname);
    return row;
  });
  const file: IndexFile = { v: VERSION, diffId, rows, ...(Object.keys(content).length ? { content } : {}) };
  return JSON.stringify(file);
}

function decode(diffId: string, text: string): LayerIndex | undefined {
  const f = JSON.parse(text) as IndexFile;
  if (f.v !== VERSION || f.diffId !== diffId || !Array.isArray(f.rows)) return undefined;
  const entries = f.rows.map((r, i): IndexEntry => {
    const e: IndexEntry = { name: r[0], type: TYPES[r[1]]!, mode: r[2], uid: r[3], gid: r[4], mtime: r[5] };
    if (r[6] !== undefined) e.linkname = r[6];
    const c = f.content?.[i];
    if (c !== undefined) e.content = Buffer.from(c, 'base64');
    return e;
  });
  return entries.every((e) => e.type !== undefined) ? { entries } : undefined;
}

export class LayerIndexStore {
  private readonly mem = new Map<string, LayerIndex>();
  private readonly writes = new Set<Promise<void>>();

  constructor(readonly dir: string) {}

  private file(diffId: string): string {
    return join(this.dir, `${diffId.replace(/^sha256:/, '').replace(/[^a-zA-Z0-9]/g, '_')}.json`);
  }

  /** The index of a layer, from memory or disk; undefined when unknown. */
  get(diffId: string): LayerIndex | undefined {
    const known = this.mem.get(diffId);
    if (known) return known;
    let index: LayerIndex | undefined;
    try {
      index = decode(diffId, readFileSync(this.file(diffId), 'utf8'));
    } catch {
      return undefined;
    }
    if (index) {
      this.mem.set(diffId, index);
      // The mtime is the last use, so pruning drops the indexes of layers no build needs any more.
      const now = new Date();
      void utimes(this.file(diffId), now, now).catch(() => undefined);
    }
    return index;
  }

  /** Remembers an index and saves it in the background (see `flush`). */
  put(diffId: string, index: LayerIndex): void {
    if (this.mem.has(diffId)) return;
    this.mem.set(diffId, index);
    const p = this.save(diffId, index).finally(() => this.writes.delete(p));
    this.writes.add(p);
  }

  private async save(diffId: string, index: LayerIndex): Promise<void> {
    const file = this.file(diffId);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(tmp, encode(diffId, index));
      await rename(tmp, file);
    } catch {
      // A cache: the next build records it again.
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  /** Waits for background saves. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.writes]);
  }
}

export interface StoredLayerIndexInfo {
  /** File name: the diffID's hex, or a temporary file of an interrupted save (`*.tmp`). */
  name: string;
  path: string;
  bytes: number;
  /** File mtime: written, or last read by a build. */
  lastUsed: Date;
}

export interface LayerIndexPruneOptions {
  /** Remove every index. */
  all?: boolean;
  /** Remove indexes not used for this long. */
  olderThanMs?: number;
  /** Then remove least recently used ones until the total fits. */
  maxBytes?: number;
  now?: Date;
}

/** A save still running is recent; older temporary files belong to killed builds. */
const STALE_TMP_MS = 3600_000;

/** Every index file (and temporary file) in `dir`; none when it does not exist. */
export async function listLayerIndexes(dir: string): Promise<StoredLayerIndexInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: StoredLayerIndexInfo[] = [];
  for (const name of names) {
    if (!name.endsWith('.json') && !name.endsWith('.tmp')) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) out.push({ name, path, bytes: st.size, lastUsed: st.mtime });
  }
  return out;
}

/**
 * Removes layer indexes: all, those unused for `olderThanMs`, then least recently used ones until
 * the rest fits in `maxBytes` (the layer store's rules). Temporary files of interrupted saves go
 * once they are an hour old. A build reading a removed index meanwhile only reads the layer again.
 */
export async function pruneLayerIndexes(dir: string, opts: LayerIndexPruneOptions = {}): Promise<{ removed: string[]; freedBytes: number }> {
  const now = (opts.now ?? new Date()).getTime();
  const files = (await listLayerIndexes(dir)).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
  const result = { removed: [] as string[], freedBytes: 0 };
  let total = files.reduce((s, f) => s + f.bytes, 0);
  for (const f of files) {
    const age = now - f.lastUsed.getTime();
    const staleTmp = f.name.endsWith('.tmp') && age > STALE_TMP_MS;
    const old = opts.olderThanMs !== undefined && age > opts.olderThanMs;
    const over = opts.maxBytes !== undefined && total > opts.maxBytes;
    if (!(opts.all || staleTmp || old || over)) continue;
    try {
      await rm(f.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      continue;
    }
    result.removed.push(f.name);
    result.freedBytes += f.bytes;
    total -= f.bytes;
  }
  return result;
}
