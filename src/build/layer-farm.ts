/**
 * Stage roots populated from the store of unpacked layers (src/cache/layer-store.ts) instead of
 * from the layer blobs: a regular file becomes a hard link to the stored copy (one syscall, no
 * bytes written, no decompression), directories and symlinks are made anew with the stored
 * metadata, device nodes and FIFOs are hard-linked too (making them takes a child process each).
 *
 * Hard links are safe because nothing writes into an existing file of a stage root in place:
 * - RUN (ns, rootless) mounts the root as an overlay lowerdir: writes, chmod and chown copy the
 *   file up into the upperdir (metacopy=off, index=off), whose diff is then unpacked onto the root;
 * - the unpacker creates with O_EXCL and unlinks whatever is in the way first (never truncates);
 * - COPY/ADD (copy.ts RootWriter) unlink before writing, and only re-stamp directories in place;
 * - read-only RUN bind mounts of a stage bind its files read-only, `rw` ones bind a copy.
 * The inplace sandbox, which runs on its root directly, never uses the store (InplaceRootFs).
 * test/cache/layer-farm.test.ts checks the store after a RUN that rewrites, chmods and deletes
 * base files.
 *
 * Applying a layer from its directory must give what unpacking its tar onto the same root gives
 * (unpack-layer.ts). The directory alone loses three things, recorded as the layer's notes while
 * it is unpacked into the store: its whiteouts and opaque markers (nothing to delete in an empty
 * directory), which directories it has an entry for (a parent made only because an entry needs
 * it keeps the lower directory's metadata and follows a lower symlink), and its entry for the
 * root. Whiteouts only ever delete what lower layers put there, so they are applied first, then
 * the layer's own entries.
 */
import {
  chmodSync,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { readTar, type TarEntry } from '../archive/index.js';
import { UnpackedLayerStore, defaultLayerStoreDir } from '../cache/layer-store.js';
import { classifyWhiteout, normalizeEntryName } from '../fs/unpack/entry-name.js';
import { keptXattrs } from '../fs/unpack/xattrs.js';
import { resolveComponentsInRoot, unpackLayer } from '../fs/unpack/index.js';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { lstatOrUndefined } from '../fs/index.js';

/** The store's default size: the uncompressed size of a handful of large base images. */
export const DEFAULT_LAYER_STORE_BYTES = 10 * 1024 ** 3;

/** Layer entries as the tar reader yields them and the unpacker takes them. */
type Entries = AsyncIterable<TarEntry>;

export interface LayerNotes {
  v: 1;
  /** Paths (`a/b`, relative to the root) the layer deletes from lower layers. */
  whiteouts: string[];
  /** Directories whose lower content the layer hides. */
  opaque: string[];
  /** Directories of the stored tree the layer has no entry for. */
  implicit: string[];
  /** The layer's entry for the root directory. */
  root?: { mode: number; uid: number; gid: number; mtime: number };
  /** Why the stored tree cannot stand for the layer (the tar is then unpacked as before). */
  unsupported?: string;
}

const mtimeSeconds = (m: Date | number): number => (typeof m === 'number' ? m : m.getTime() / 1000);

/** Checks notes read back from disk (another version may have written them). */
export function parseNotes(value: unknown): LayerNotes | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const n = value as Partial<LayerNotes>;
  const strings = (a: unknown) => Array.isArray(a) && a.every((x) => typeof x === 'string');
  if (n.v !== 1 || !strings(n.whiteouts) || !strings(n.opaque) || !strings(n.implicit)) return undefined;
  return n as LayerNotes;
}

/**
 * Unpacks a layer into an empty store directory (as root: owners kept) and returns its notes.
 * `entries` is the layer's tar, already read (so the caller can record its index on the way).
 */
export async function unpackIntoStore(dir: string, entries: Entries, opts: { signal?: AbortSignal; layerName?: string } = {}): Promise<LayerNotes> {
  const notes: LayerNotes = { v: 1, whiteouts: [], opaque: [], implicit: [] };
  const explicit = new Set<string>();
  /** Non-directories of this layer so far: the only targets a hard link can have in an empty directory. */
  const files = new Set<string>();
  /** Set when the layer cannot be unpacked alone: the rest of the tar is read (for the digest and the index) but not unpacked. */
  let lowerLink: string | undefined;
  const observe = async function* (input: Entries): Entries {
    for await (const e of input) {
      if (lowerLink !== undefined) continue;
      const h = e.header;
      const comps = normalizeEntryName(h.name);
      if (h.type === 'hardlink' && !files.has(normalizeEntryName(h.linkname ?? '').join('/'))) {
        // A hard link to a file of a lower layer: unpacking it alone would fail on every build.
        // The entry stays in the store as a marker with no files, so later builds go straight to the blob.
        lowerLink = h.linkname ?? '';
        notes.unsupported = `a hard link ${h.name} to ${lowerLink}, a file of a lower layer`;
        continue;
      }
      if (h.type !== 'dir') files.add(comps.join('/'));
      const w = classifyWhiteout(comps);
      if (w.kind === 'whiteout') notes.whiteouts.push([...comps.slice(0, -1), w.target].join('/'));
      else if (w.kind === 'opaque') notes.opaque.push(comps.slice(0, -1).join('/'));
      else if (w.kind === 'none' && comps.length === 0 && h.type === 'dir') notes.root = { mode: h.mode, uid: h.uid, gid: h.gid, mtime: mtimeSeconds(h.mtime) };
      else if (w.kind === 'none') {
        if (h.type === 'dir') explicit.add(comps.join('/'));
        if ((h.type === 'dir' || h.type === 'symlink') && keptXattrs(h.xattrs)) notes.unsupported ??= `extended attributes on the ${h.type} ${h.name}`;
      }
      yield e;
    }
  };
  await unpackLayer(dir, observe(entries), { ownership: 'preserve', ...(opts.layerName ? { layerName: opts.layerName } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  if (lowerLink !== undefined) {
    for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    return { v: 1, whiteouts: [], opaque: [], implicit: [], unsupported: notes.unsupported! };
  }
  // Where each directory entry landed (a parent may be a symlink of the same layer), then every
  // stored directory that no entry made.
  const landed = new Set<string>();
  for (const name of explicit) {
    const comps = name.split('/');
    landed.add([...resolveComponentsInRoot(dir, comps.slice(0, -1), { followFinal: true }), comps.at(-1)!].join('/'));
  }
  const walk = (rel: string) => {
    for (const d of readdirSync(rel === '' ? dir : join(dir, rel), { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const child = rel === '' ? d.name : `${rel}/${d.name}`;
      if (!landed.has(child)) notes.implicit.push(child);
      walk(child);
    }
  };
  walk('');
  return notes;
}

/** The store builds use: `$XDG_CACHE_HOME/gantry/layers`, size from GANTRY_LAYER_STORE_MAX (0 turns it off). */
export function openUnpackedLayerStore(env: NodeJS.ProcessEnv, logger: Logger): UnpackedLayerStore | undefined {
  const raw = env.GANTRY_LAYER_STORE_MAX;
  const maxBytes = raw === undefined || raw === '' ? DEFAULT_LAYER_STORE_BYTES : parseByteSize(raw);
  if (maxBytes === 0) return undefined;
  return new UnpackedLayerStore(defaultLayerStoreDir(env), {
    unpack: (dir: string, tar: Readable, signal?: AbortSignal) => unpackIntoStore(dir, readTar(tar), signal ? { signal } : {}),
    maxBytes,
    logger,
    // A build machine that builds once (a CI runner) never pays for the store.
    storeOnSecondSight: true,
  });
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** Sizes as `gantry prune --keep-storage` reads them: `1024`, `512MB`, `10GiB`. */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new GantryError('INVALID_ARGUMENT', `GANTRY_LAYER_STORE_MAX: invalid size "${text}"`, { hint: 'give a number of bytes with an optional unit, e.g. 512MB or 20GiB; 0 turns the layer store off' });
  }
  return Math.floor(Number(m[1]) * unit);
}


function removePath(host: string, st: Stats): void {
  if (st.isDirectory()) rmSync(host, { recursive: true, force: true });
  else unlinkSync(host);
}

/** Runs `make`; when the path is taken, clears it (unlink before create) and runs it again. */
function replace(host: string, make: () => void): void {
  try {
    make();
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  removePath(host, lstatSync(host));
  make();
}

export interface LinkStats {
  linked: number;
  dirs: number;
  symlinks: number;
  whiteouts: number;
}

/**
 * Applies the layer stored at `src` onto `root` (as the unpacker would apply its tar), linking
 * its files. Both must be on one filesystem. On failure the root is partly applied; unpacking the
 * layer's tar over it afterwards still gives the right result (every entry replaces what is there).
 */
export async function linkStoredLayer(src: string, root: string, notes: LayerNotes, signal?: AbortSignal): Promise<LinkStats> {
  const stats: LinkStats = { linked: 0, dirs: 0, symlinks: 0, whiteouts: 0 };
  const implicit = new Set(notes.implicit);
  const isExplicitDir = (rel: string) => !implicit.has(rel) && lstatOrUndefined(join(src, rel))?.isDirectory() === true;

  /**
   * Where the directory `comps` of a whiteout is in the root: lower symlinks are followed as the
   * unpacker follows them, except where this layer has a directory of its own, which replaces a
   * lower non-directory (and then there is nothing lower below it to delete).
   */
  const locateLower = (comps: readonly string[]): string[] | undefined => {
    let host: string[] = [];
    for (let i = 0; i < comps.length; i++) {
      if (isExplicitDir(comps.slice(0, i + 1).join('/'))) {
        if (!lstatOrUndefined(join(root, ...host, comps[i]!))?.isDirectory()) return undefined;
        host.push(comps[i]!);
      } else host = resolveComponentsInRoot(root, [...host, comps[i]!], { followFinal: true });
    }
    return host;
  };
  for (const w of notes.whiteouts) {
    const comps = w.split('/');
    const parent = locateLower(comps.slice(0, -1));
    if (!parent) continue;
    const host = join(root, ...parent, comps.at(-1)!);
    const st = lstatOrUndefined(host);
    if (st) removePath(host, st);
    stats.whiteouts++;
  }
  for (const o of notes.opaque) {
    const dir = locateLower(o === '' ? [] : o.split('/'));
    if (!dir) continue;
    const host = join(root, ...dir);
    if (!lstatOrUndefined(host)?.isDirectory()) continue;
    for (const name of readdirSync(host)) removePath(join(host, name), lstatSync(join(host, name)));
    stats.whiteouts++;
  }

  const dirMeta: Array<[string, number, number, number]> = [];
  // Root paths this layer wrote. Two stored paths can land on one root path through symlinks of
  // lower layers (`l/foo` and `d/foo` with `l -> d`): which wins then depends on readdir order,
  // not on the tar's, so such a layer is refused here and unpacked from its blob instead.
  const claimed = new Set<string>();
  const claim = (host: string) => {
    if (claimed.has(host)) throw new GantryError('UNSUPPORTED', `two entries of the layer land on ${host} through symlinks of lower layers`);
    claimed.add(host);
  };
  let sinceYield = 0;
  const walk = async (rel: string, hostComps: string[]): Promise<void> => {
    const srcDir = rel === '' ? src : join(src, rel);
    const hostDir = join(root, ...hostComps);
    // Types come with the names: only directories and symlinks need an lstat (for their metadata).
    for (const d of readdirSync(srcDir, { withFileTypes: true })) {
      const name = d.name;
      if (++sinceYield >= 512) {
        sinceYield = 0;
        // Let uploads and other stages breathe: a base layer has tens of thousands of entries.
        await new Promise((r) => setImmediate(r));
        if (signal?.aborted) throw new GantryError('ABORTED', 'cancelled');
      }
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const from = join(srcDir, name);
      const host = join(hostDir, name);
      if (d.isDirectory()) {
        if (implicit.has(childRel)) {
          await walk(childRel, ensureParentDir(root, [...hostComps, name]));
          continue;
        }
        claim(host);
        try {
          mkdirSync(host, 0o700);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          const existing = lstatSync(host);
          if (!existing.isDirectory()) {
            removePath(host, existing);
            mkdirSync(host, 0o700);
          }
        }
        const st = lstatSync(from);
        lchownSync(host, st.uid, st.gid);
        dirMeta.push([host, st.mode & 0o7777, st.mtimeMs / 1000, hostComps.length + 1]);
        stats.dirs++;
        await walk(childRel, [...hostComps, name]);
      } else if (d.isSymbolicLink()) {
        const st = lstatSync(from);
        const target = readlinkSync(from);
        claim(host);
        replace(host, () => symlinkSync(target, host));
        lchownSync(host, st.uid, st.gid);
        lutimesSync(host, st.mtimeMs / 1000, st.mtimeMs / 1000);
        stats.symlinks++;
      } else {
        claim(host);
        replace(host, () => linkSync(from, host));
        stats.linked++;
      }
    }
  };
  await walk('', []);
  // Modes and times last, deepest first: adding entries changes a directory's mtime.
  dirMeta.sort((a, b) => b[3] - a[3]);
  for (const [host, mode, mtime] of dirMeta) {
    // chmod follows symlinks: only what is still a directory.
    if (!lstatOrUndefined(host)?.isDirectory()) continue;
    chmodSync(host, mode);
    lutimesSync(host, mtime, mtime);
  }
  if (notes.root) {
    lchownSync(root, notes.root.uid, notes.root.gid);
    chmodSync(root, notes.root.mode & 0o7777);
    lutimesSync(root, notes.root.mtime, notes.root.mtime);
  }
  return stats;
}

/**
 * A directory the layer needs but has no entry for, as the unpacker makes one: an existing
 * directory (through lower symlinks) is used as it is, missing ones are created 0755.
 */
function ensureParentDir(root: string, comps: readonly string[]): string[] {
  const direct = lstatOrUndefined(join(root, ...comps));
  if (direct?.isDirectory()) return [...comps];
  const resolved = resolveComponentsInRoot(root, comps, { followFinal: true });
  for (let i = 1; i <= resolved.length; i++) {
    const host = join(root, ...resolved.slice(0, i));
    const st = lstatOrUndefined(host);
    if (st?.isDirectory()) continue;
    if (st) {
      throw new GantryError('ARCHIVE_INVALID', `parent /${resolved.slice(0, i).join('/')} is not a directory`, {
        hint: 'a lower layer has a file where this layer expects a directory, and this layer does not replace it',
      });
    }
    mkdirSync(host, 0o755);
  }
  return resolved;
}
