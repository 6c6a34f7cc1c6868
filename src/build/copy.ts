/**
 * Writes COPY/ADD sources into a root directory with BuildKit's semantics (fsutil copy):
 * - the destination is resolved inside the root, every symlink followed (the last one too: a
 *   copy onto an existing symlink writes through it, and the link stays);
 * - the destination is a directory when it ends in `/` (or several sources are given); missing
 *   parents are created 0755 (the --chmod mode when given), owned by the --chown user (else 0:0);
 * - a source directory copies its contents; a missing destination is created like a parent, not
 *   with the source directory's metadata; into an existing directory they merge, and the
 *   existing directory keeps its metadata (directories below it take the source's);
 * - a file copied onto an existing directory lands inside it;
 * - modes and mtimes come from the source, owners are 0:0 for the build context (kept for other
 *   stages) unless --chown; --chmod applies to every copied file and directory;
 * - symlinks inside copied directories stay symlinks; hard links among copied files stay links.
 * Every path written is recorded (relative to the root) so the layer holds exactly those.
 */
import { randomBytes } from 'node:crypto';
import { lchown, mkdir } from 'node:fs/promises';
import { createReadStream, readlinkSync } from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { decompressStream, detectFileCompression, readTar } from '../archive/index.js';
import type { IgnoreMatcher } from '../dockerfile/index.js';
import { resolveComponentsInRoot, unpackLayer } from '../fs/unpack/index.js';
import { GantryError } from '../util/errors.js';
import { lstatInTree, walkTree, type SourceTree, type TreeEntry } from './sources.js';
import { diskOps, type RootFsOps, type RootStats } from './root-fs-ops.js';
import type { Owner } from './users.js';

export type CopyItem =
  /** A path of a source tree, symlink already followed; `name` is the name it was asked by. */
  | { kind: 'tree'; tree: SourceTree; entry: TreeEntry; name: string; excludes?: IgnoreMatcher; parents?: string }
  /** Generated content: heredocs, downloads (from a host file). */
  | { kind: 'file'; name: string; data?: Buffer; host?: string; mode: number; mtime: Date }
  /** A local tar archive ADD unpacks. */
  | { kind: 'archive'; name: string; host: string };

export interface CopyOptions {
  chown?: Owner;
  chmod?: number;
  /** mtime of directories the copy creates. */
  now: Date;
  signal?: AbortSignal;
}

/** lstat that says `undefined` for a path that is not there. */
function lstatOrNone(ops: RootFsOps, host: string): RootStats | undefined {
  try {
    return ops.lstat(host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * The paths a copy wrote into a root, with the owners they must have in the layer. The root is a
 * directory on disk, or a sparse root held in memory (memory-root.ts): every call goes through `ops`.
 *
 * The file system calls are synchronous on purpose: a COPY is thousands of tiny metadata
 * operations in a strict order, and one thread-pool round trip each (two scheduler wake-ups on a
 * loaded machine) cost far more than the calls themselves. Methods stay async for callers.
 */
export class RootWriter {
  readonly written = new Set<string>();
  readonly owners = new Map<string, Owner>();
  private dirTimes: Array<[string, Date]> = [];
  private readonly links = new Map<string, string>();
  /** Directories mkdirAll created (host paths), and the mode they get (--chmod applies to them). */
  private createdDirs: string[] = [];
  private createdMode = 0o755;
  /** Directories this writer made empty: a name inside them not yet written needs no clearing. */
  private readonly fresh = new Set<string>();

  /** `ops` is where the root lives: on disk, or in memory for a sparse root. */
  constructor(
    readonly root: string,
    readonly ops: RootFsOps = diskOps,
  ) {}

  private host(parts: readonly string[]): string {
    return join(this.root, ...parts);
  }

  /** In-root components of `path`; the last one followed when it is a symlink and `followFinal`. */
  resolve(path: string, followFinal: boolean): string[] {
    return resolveComponentsInRoot(this.root, path, { followFinal }, this.ops);
  }

  /** What is at in-root components now, or undefined. */
  stat(parts: readonly string[]): RootStats | undefined {
    try {
      return this.ops.lstat(this.host(parts));
    } catch {
      return undefined;
    }
  }

  private setOwner(host: string, parts: readonly string[], owner: Owner): void {
    this.owners.set(parts.join('/'), owner);
    if (this.ops.canChown) this.ops.lchown(host, owner.uid, owner.gid);
  }

  private record(parts: readonly string[]): void {
    this.written.add(parts.join('/'));
  }

  /**
   * The mode of the directories mkdirAll creates, from now on and for those it already made:
   * BuildKit applies --chmod to the parents a copy creates (tonistiigi/fsutil#228, for
   * moby/buildkit#4945; see moby/buildkit#5943 for the consequence on file modes).
   */
  async setCreatedDirMode(mode: number): Promise<void> {
    this.createdMode = mode;
    // Only what is still a directory: a later item may have replaced one by a symlink (chmod follows).
    for (const host of this.createdDirs) if (lstatOrNone(this.ops, host)?.isDirectory()) this.ops.chmod(host, mode);
  }

  /** mkdir -p inside the root; created directories get 0755 (or the --chmod mode), `owner`, and `mtime`. */
  async mkdirAll(path: string, owner: Owner, mtime: Date): Promise<string[]> {
    const parts = this.resolve(path, true);
    for (let i = 1; i <= parts.length; i++) {
      const sub = parts.slice(0, i);
      const host = this.host(sub);
      const st = lstatOrNone(this.ops, host);
      if (st?.isDirectory()) continue;
      if (st) {
        throw new GantryError('BUILD_FAILED', `cannot create directory /${sub.join('/')}: a file with that name exists in the image`, {
          hint: 'change the destination, or remove that file in an earlier step',
        });
      }
      this.ops.mkdir(host);
      this.ops.chmod(host, this.createdMode);
      this.setOwner(host, sub, owner);
      this.createdDirs.push(host);
      this.fresh.add(host);
      this.dirTimes.push([host, mtime]);
      this.record(sub);
    }
    return parts;
  }

  /** Removes whatever is at `host` unless it is a directory and `keepDir`. Returns whether a directory remains. */
  private clear(host: string, parts: readonly string[], keepDir: boolean): boolean {
    if (parts.length > 0 && this.fresh.has(dirname(host)) && !this.written.has(parts.join('/'))) return false;
    const st = lstatOrNone(this.ops, host);
    if (!st) return false;
    if (st.isDirectory()) {
      if (keepDir) return true;
      this.forget(host, parts, true);
      this.ops.rmTree(host);
      return false;
    }
    this.forget(host, parts, false);
    this.ops.unlink(host);
    return false;
  }

  /**
   * Drops what this writer remembered about a path it is about to remove (and, for a directory,
   * everything below it): a later item of the same COPY may put a symlink there, and a remembered
   * child path, directory time or mode would then be read or set through that symlink, possibly
   * outside the root (`COPY a b /dest/` with `a/x/f` and `b/x -> /etc`).
   */
  private forget(host: string, parts: readonly string[], tree: boolean): void {
    const prefix = host + '/';
    const gone = (h: string) => h === host || (tree && h.startsWith(prefix));
    this.dirTimes = this.dirTimes.filter(([h]) => !gone(h));
    this.createdDirs = this.createdDirs.filter((h) => !gone(h));
    for (const [inode, h] of this.links) if (gone(h)) this.links.delete(inode);
    if (!tree) return;
    const relPrefix = parts.join('/') + '/';
    for (const rel of this.written) if (rel.startsWith(relPrefix)) this.written.delete(rel);
    for (const rel of this.owners.keys()) if (rel.startsWith(relPrefix)) this.owners.delete(rel);
  }

  async writeFile(parts: readonly string[], src: { host?: string; data?: Buffer }, meta: { mode: number; owner: Owner; mtime: Date; inode?: string }): Promise<void> {
    const host = this.host(parts);
    this.clear(host, parts, false);
    const first = meta.inode ? this.links.get(meta.inode) : undefined;
    if (first !== undefined) {
      this.ops.link(first, host);
      this.record(parts);
      return;
    }
    if (src.host !== undefined) this.ops.copyFile(src.host, host);
    else this.ops.writeFile(host, src.data ?? Buffer.alloc(0));
    if (meta.inode) this.links.set(meta.inode, host);
    this.setOwner(host, parts, meta.owner);
    this.ops.chmod(host, meta.mode);
    this.ops.utimes(host, meta.mtime, meta.mtime);
    this.record(parts);
  }

  async writeSymlink(parts: readonly string[], target: string, meta: { owner: Owner; mtime: Date }): Promise<void> {
    const host = this.host(parts);
    this.clear(host, parts, false);
    this.ops.symlink(target, host);
    this.setOwner(host, parts, meta.owner);
    this.ops.lutimes(host, meta.mtime, meta.mtime);
    this.record(parts);
  }

  /** Creates (or, unless `keepExisting`, re-stamps) a directory with the given metadata. */
  async writeDir(parts: readonly string[], meta: { mode: number; owner: Owner; mtime: Date }, keepExisting: boolean): Promise<void> {
    const host = this.host(parts);
    const exists = this.clear(host, parts, true);
    if (exists && keepExisting) return;
    if (!exists) {
      this.ops.mkdir(host);
      this.fresh.add(host);
    }
    this.setOwner(host, parts, meta.owner);
    this.ops.chmod(host, meta.mode);
    this.dirTimes.push([host, meta.mtime]);
    this.record(parts);
  }

  /** Something other than this writer (an archive unpack) wrote into the root: names may exist anywhere. */
  forgetFresh(): void {
    this.fresh.clear();
  }

  /** Directory times last, deepest first: writing inside a directory changes its mtime. */
  async finish(): Promise<void> {
    for (const [host, t] of this.dirTimes.reverse()) if (lstatOrNone(this.ops, host)?.isDirectory()) this.ops.utimes(host, t, t);
    this.dirTimes = [];
  }
}

function treeOwner(item: { tree: SourceTree }, entry: TreeEntry, opts: CopyOptions): Owner {
  if (opts.chown) return opts.chown;
  return item.tree.resetOwners ? { uid: 0, gid: 0 } : { uid: entry.stat.uid, gid: entry.stat.gid };
}

function modeOf(entry: TreeEntry, opts: CopyOptions, tree?: SourceTree): number {
  if (opts.chmod !== undefined) return opts.chmod;
  // The context's root is not itself sent to BuildKit (only what is below it): its copy is a
  // plain 0755 directory, whatever the mode of the directory the user builds from.
  if (tree?.resetOwners && entry.rel === '') return 0o755;
  return entry.stat.mode & 0o7777;
}

/**
 * Copies one item to `dest` (an absolute in-image path). A destination that must be a directory
 * (trailing slash, several sources) is created by the caller first, so items land inside it.
 */
export async function copyItem(w: RootWriter, item: CopyItem, dest: string, opts: CopyOptions): Promise<void> {
  const owner0: Owner = opts.chown ?? { uid: 0, gid: 0 };
  if (opts.chmod !== undefined) await w.setCreatedDirMode(opts.chmod);
  if (item.kind === 'archive') {
    const parts = await w.mkdirAll(dest, owner0, opts.now);
    await extractArchive(w, item.host, parts, opts);
    return;
  }
  const isDir = item.kind === 'tree' && item.entry.stat.isDirectory();
  // Where the item lands: into an existing directory, or at the destination itself.
  let target: string[];
  let mergeTop = false;
  // The destination is resolved inside the root with its last component followed too
  // (fsutil: fs.RootPath(dstRoot, dst)): a copy onto an existing symlink writes through it.
  const resolved = w.resolve(dest, true);
  const st = w.stat(resolved);
  if (item.kind === 'tree' && item.parents !== undefined) {
    target = w.resolve(posix.join(dest, item.parents), false);
  } else if (st?.isDirectory()) {
    if (isDir) {
      target = resolved;
      mergeTop = true;
    } else target = [...resolved, item.name];
  } else if (isDir && !st) {
    // A missing destination of a directory copy is made like its parents (0755, --chown user
    // or root; fsutil prepareTargetDir's MkdirAll), never with the source directory's metadata.
    target = await w.mkdirAll('/' + resolved.join('/'), owner0, opts.now);
    mergeTop = true;
  } else target = resolved;

  if (item.kind === 'tree' && item.parents !== undefined) await copyParents(w, item, dest, opts);
  if (target.length > 1) await w.mkdirAll('/' + target.slice(0, -1).join('/'), owner0, opts.now);
  if (item.kind === 'file') {
    await w.writeFile(target, item, { mode: opts.chmod ?? item.mode, owner: owner0, mtime: item.mtime });
    return;
  }
  const entry = item.entry;
  const owner = treeOwner(item, entry, opts);
  if (!isDir) {
    await writeTreeEntry(w, item, entry, target, owner, opts);
    return;
  }
  if (target.length === 0) mergeTop = true; // the root itself
  else await w.writeDir(target, { mode: modeOf(entry, opts, item.tree), owner, mtime: entry.stat.mtime }, mergeTop);
  for (const child of await walkTree(item.tree, entry, item.excludes)) {
    if (opts.signal?.aborted) throw new GantryError('ABORTED', 'build cancelled');
    const parts = [...target, ...child.rel.split('/')];
    const childOwner = treeOwner(item, child, opts);
    if (child.stat.isDirectory()) await w.writeDir(parts, { mode: modeOf(child, opts), owner: childOwner, mtime: child.stat.mtime }, false);
    else await writeTreeEntry(w, item, child, parts, childOwner, opts);
  }
}

/** --parents: the directories between the pivot and the source are copied with their metadata. */
async function copyParents(w: RootWriter, item: Extract<CopyItem, { kind: 'tree' }>, dest: string, opts: CopyOptions): Promise<void> {
  const comps = item.parents!.split('/').filter(Boolean);
  const pivot = item.entry.rel.slice(0, item.entry.rel.length - item.parents!.length).replace(/\/+$/, '');
  const destParts = await w.mkdirAll(dest, opts.chown ?? { uid: 0, gid: 0 }, opts.now);
  for (let i = 1; i < comps.length; i++) {
    const rel = [pivot, ...comps.slice(0, i)].filter(Boolean).join('/');
    const dir = await lstatInTree(item.tree, rel, true);
    if (!dir?.stat.isDirectory()) continue;
    await w.writeDir([...destParts, ...comps.slice(0, i)], { mode: modeOf(dir, opts), owner: treeOwner(item, dir, opts), mtime: dir.stat.mtime }, true);
  }
}

async function writeTreeEntry(w: RootWriter, item: { tree: SourceTree }, entry: TreeEntry, parts: string[], owner: Owner, opts: CopyOptions): Promise<void> {
  const st = entry.stat;
  if (st.isSymbolicLink()) {
    await w.writeSymlink(parts, readlinkSync(entry.host), { owner, mtime: st.mtime });
  } else if (st.isFile()) {
    const inode = st.nlink > 1 ? `${item.tree.dir}:${st.dev}:${st.ino}` : undefined;
    const meta: { mode: number; owner: Owner; mtime: Date; inode?: string } = { mode: modeOf(entry, opts), owner, mtime: st.mtime };
    if (inode) meta.inode = inode;
    await w.writeFile(parts, { host: entry.host }, meta);
  } else {
    throw new GantryError('UNSUPPORTED', `cannot copy ${entry.rel || '/'} from ${item.tree.name}: not a regular file, directory or symlink`, {
      hint: 'devices, sockets and FIFOs cannot be copied; exclude them with .dockerignore or --exclude',
    });
  }
}

/**
 * True when a local file is a tar archive, plain or gzip/bzip2/xz/zstd-compressed (what ADD
 * unpacks): the first 512 decompressed bytes form a header with a valid checksum.
 */
export async function isTarArchive(host: string): Promise<boolean> {
  let compression;
  try {
    compression = await detectFileCompression(host);
  } catch {
    return false;
  }
  const block = await firstBytes(host, compression, 512).catch(() => undefined);
  if (!block || block.length < 512) return false;
  const stored = parseInt(block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum === stored;
}

async function firstBytes(host: string, compression: Awaited<ReturnType<typeof detectFileCompression>>, n: number): Promise<Buffer> {
  const file = createReadStream(host);
  const stream: Readable = compression === 'none' ? file : file.pipe(await decompressStream(compression));
  const chunks: Buffer[] = [];
  let have = 0;
  try {
    for await (const c of stream) {
      chunks.push(c as Buffer);
      have += (c as Buffer).length;
      if (have >= n) break;
    }
  } finally {
    file.destroy();
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** Unpacks an archive into `destParts` (a directory of the root), recording every entry. */
async function extractArchive(w: RootWriter, host: string, destParts: string[], opts: CopyOptions): Promise<void> {
  const compression = await detectFileCompression(host);
  const file = createReadStream(host);
  const stream: Readable = compression === 'none' ? file : file.pipe(await decompressStream(compression));
  file.on('error', (err) => stream.destroy(err));
  const names: Array<{ name: string; hardlink: boolean }> = [];
  const record = async function* () {
    for await (const e of readTar(stream)) {
      const name = e.header.name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
      const base = basename(name);
      if (name !== '' && name !== '.' && !base.startsWith('.wh.')) names.push({ name, hardlink: e.header.type === 'hardlink' });
      yield e;
    }
  };
  // Archives unpack on disk only (executor.ts gives ADD of an archive the full root).
  if (w.ops !== diskOps) throw new GantryError('INTERNAL', 'archives can only be unpacked into a root on disk');
  const sub = join(w.root, ...destParts);
  w.forgetFresh();
  await unpackLayer(sub, record(), { ownership: diskOps.canChown ? 'preserve' : 'squash', layerName: host, ...(opts.signal ? { signal: opts.signal } : {}) });
  for (const { name, hardlink } of names) {
    // Where the unpacker put the entry: its name resolved inside `sub` as the unpacker resolves it
    // (symlinks from the archive followed, never out of it), the last component not followed.
    // Joining the name as written would follow an archive symlink (`x -> /etc`, then `x/passwd`)
    // out of the root for the chown and for the layer.
    const parts = [...destParts, ...resolveComponentsInRoot(sub, name, { followFinal: false })];
    w.written.add(parts.join('/'));
    if (opts.chown) {
      // A hard link shares its target's inode, which may be a base file hard-linked from the
      // store of unpacked layers (layer-farm.ts): never chowned in place.
      if (diskOps.canChown && !hardlink) await lchown(join(w.root, ...parts), opts.chown.uid, opts.chown.gid).catch(() => undefined);
      w.owners.set(parts.join('/'), opts.chown);
    }
  }
}

/** A fresh, empty directory under `parent` (for --link layers and downloads). */
export async function scratchDir(parent: string, prefix: string): Promise<string> {
  const dir = join(parent, `${prefix}-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}
