/**
 * New layers: the paths a step wrote (plus their parent directories, as containerd's differ
 * includes them) read back from the root they were written to, tarred deterministically,
 * compressed and digested in one pass into a blob file under the build's work directory.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createReadStream } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { writeLayer, type LayerEntry, type TarHeader } from '../archive/index.js';
import type { Descriptor } from '../oci/types.js';
import { wrapError } from '../util/errors.js';
import { diskOps, type RootFsOps, type RootStats } from './root-fs-ops.js';
import type { Owner } from './users.js';

/** A layer of the image being built: from the base image or written by this build. */
export interface ImageLayer {
  /** As the manifest that holds it names it. */
  descriptor: Descriptor;
  diffId: string;
  open(signal?: AbortSignal): Promise<Readable>;
  /** Set for layers this build wrote. */
  file?: string;
}

export interface LayerWriteOptions {
  compression: 'gzip' | 'zstd';
  level?: number;
  /** Clamp entry mtimes to this many seconds since the epoch (reproducible builds). */
  clampMtime?: number;
}

/** Byte order of two path components (UTF-8 order equals UTF-16 order below the surrogates). */
function compareComponents(a: string, b: string): number {
  if (!/[\ud800-\uffff]/.test(a) && !/[\ud800-\uffff]/.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function compareSplit(pa: readonly string[], pb: readonly string[]): number {
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = compareComponents(pa[i]!, pb[i]!);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

/** Compares `/`-separated paths component by component, so parents sort before their children. */
export function comparePaths(a: string, b: string): number {
  return compareSplit(a.split('/'), b.split('/'));
}

/** Paths (relative, no leading `/`) plus every ancestor directory, sorted parents first. */
export function withParents(paths: Iterable<string>): string[] {
  const all = new Map<string, string[]>();
  for (const p of paths) {
    const parts = p.split('/').filter(Boolean);
    for (let i = parts.length; i >= 1; i--) {
      const key = i === parts.length ? parts.join('/') : parts.slice(0, i).join('/');
      if (all.has(key)) break; // its ancestors are in already
      all.set(key, parts.slice(0, i));
    }
  }
  return [...all].sort((a, b) => compareSplit(a[1], b[1])).map(([k]) => k);
}

function devNumbers(st: RootStats): { devmajor: number; devminor: number } {
  const rdev = st.rdev;
  return { devmajor: (rdev >> 8) & 0xfff, devminor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00) };
}

/**
 * Tar entries for `paths` as they are now under `root` (on disk, or where `ops` keeps it);
 * `ownerOf` overrides the root's owners. Metadata and small files (up to READ_WHOLE_MAX, larger
 * ones are streamed) are read synchronously: a layer of thousands of small files is otherwise
 * dominated by thread-pool round trips, not by the reads.
 */
export async function* entriesFromRoot(root: string, paths: Iterable<string>, ownerOf: (rel: string) => Owner | undefined, ops: RootFsOps = diskOps): AsyncGenerator<LayerEntry> {
  const links = new Map<string, string>();
  // Directories emitted so far: a path is read only below one (parents sort first), so lstat
  // never goes through a symlink that replaced a directory, possibly out of the root.
  const dirs = new Set<string>(['']);
  for (const rel of withParents(paths)) {
    const cut = rel.lastIndexOf('/');
    if (!dirs.has(cut < 0 ? '' : rel.slice(0, cut))) continue;
    const host = join(root, rel);
    let st: RootStats;
    try {
      st = ops.lstat(host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue; // replaced later in the same step
      throw err;
    }
    if (st.isDirectory()) dirs.add(rel);
    const owner = ownerOf(rel) ?? { uid: st.uid, gid: st.gid };
    const base = { name: rel, mode: st.mode & 0o7777, uid: owner.uid, gid: owner.gid, mtime: st.mtime };
    if (st.isDirectory()) yield { header: { ...base, type: 'dir' } };
    else if (st.isSymbolicLink()) yield { header: { ...base, type: 'symlink', linkname: ops.readlink(host) } };
    else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? links.get(key) : undefined;
      if (first !== undefined) {
        yield { header: { ...base, type: 'hardlink', linkname: first } };
        continue;
      }
      if (st.nlink > 1) links.set(key, rel);
      const header: TarHeader = { ...base, type: 'file', size: st.size };
      yield { header, body: ops.body(host, st) };
    } else if (st.isFIFO()) yield { header: { ...base, type: 'fifo' } };
    else if (st.isCharacterDevice()) yield { header: { ...base, type: 'char', ...devNumbers(st) } };
    else if (st.isBlockDevice()) yield { header: { ...base, type: 'block', ...devNumbers(st) } };
  }
}

/** Where this build's layer blobs live: `<dir>/sha256/<hex>`. */
export class LayerStore {
  private seq = 0;
  private readonly stage = new AsyncLocalStorage<number>();
  private readonly listeners: Array<(layer: ImageLayer, stage: number | undefined) => void> = [];
  constructor(readonly dir: string) {}

  /** Runs a stage: layers written from within `fn` are reported to onWrite as that stage's. */
  inStage<T>(index: number, fn: () => Promise<T>): Promise<T> {
    return this.stage.run(index, fn);
  }

  /** Calls `fn` with every layer as soon as its blob is complete (e.g. to start uploading it). */
  onWrite(fn: (layer: ImageLayer, stage: number | undefined) => void): void {
    this.listeners.push(fn);
  }

  async write(entries: AsyncIterable<LayerEntry>, opts: LayerWriteOptions): Promise<ImageLayer> {
    let layer: ImageLayer;
    try {
      await mkdir(join(this.dir, 'sha256'), { recursive: true });
      const tmp = join(this.dir, `.layer-${process.pid}-${this.seq++}`);
      const r = await writeLayer(entries, tmp, { compression: opts.compression, level: opts.level, clampMtime: opts.clampMtime });
      const file = join(this.dir, 'sha256', r.digest.slice('sha256:'.length));
      await rename(tmp, file);
      const descriptor: Descriptor = { mediaType: r.mediaType, digest: r.digest, size: r.size };
      layer = { descriptor, diffId: r.diffId, file, open: async () => createReadStream(file) };
    } catch (err) {
      throw wrapError(err, 'writing layer');
    }
    for (const fn of this.listeners) fn(layer, this.stage.getStore());
    return layer;
  }
}
