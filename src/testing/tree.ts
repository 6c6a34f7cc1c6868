import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Descriptor } from '../oci/types.js';

export type TreeEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** One path of an image's merged filesystem, as a container would see it (mtimes left out on purpose). */
export interface TreeEntry {
  /** Absolute, normalised: `/`, `/etc`, `/etc/passwd`. */
  path: string;
  type: TreeEntryType;
  /** Permission bits plus setuid/setgid/sticky (mask 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Content size for files and hardlinks (a hardlink reports its target's), else 0. */
  size: number;
  /** `sha256:<hex>` of the content for files and hardlinks. */
  sha256?: string;
  /** Symlink target as stored, or a hardlink's target as an absolute path. */
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /**
   * A parent directory no layer has an entry for (a runtime's unpacker creates it as 0755 root);
   * recorded so a builder that omits parent entries does not show up as a missing directory.
   */
  implicit?: boolean;
}

export type TreeField = 'type' | 'mode' | 'uid' | 'gid' | 'size' | 'sha256' | 'linkTarget' | 'devMajor' | 'devMinor';
export const ALL_TREE_FIELDS: readonly TreeField[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'linkTarget', 'devMajor', 'devMinor'];

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** `./a/b/`, `a//b`, `/a/b` -> `/a/b`; `.` and `./` -> `/`. Layer paths never legitimately contain `..`. */
export function normalizeTarPath(name: string): string {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new Error(`layer entry "${name}" escapes the root`);
    parts.push(p);
  }
  return '/' + parts.join('/');
}

const parentOf = (path: string) => (path === '/' ? '/' : path.slice(0, path.lastIndexOf('/')) || '/');
const baseOf = (path: string) => path.slice(path.lastIndexOf('/') + 1);

function typeOf(header: tar.Header): TreeEntryType | undefined {
  switch (header.type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'hardlink';
    case 'character-device':
      return 'char';
    case 'block-device':
      return 'block';
    case 'fifo':
      return 'fifo';
    default:
      return undefined; // pax/gnu metadata headers are consumed by tar-stream itself
  }
}

function removeSubtree(tree: Map<string, TreeEntry>, path: string, keepSelf = false): void {
  if (!keepSelf) tree.delete(path);
  const prefix = path === '/' ? '/' : `${path}/`;
  for (const key of [...tree.keys()]) if (key !== '/' && key.startsWith(prefix)) tree.delete(key);
}

/**
 * Applies one uncompressed layer tar onto `tree` the way an OCI unpacker does: whiteouts delete
 * from lower layers only, an opaque marker empties its directory of lower content, a non-directory
 * replaces whatever was at its path (a directory with all its children), a directory over a
 * directory just updates its metadata. File bodies are hashed as they stream past.
 */
export async function applyLayerTar(tree: Map<string, TreeEntry>, tarStream: Readable): Promise<void> {
  const extract = tar.extract();
  const upper = new Map<string, TreeEntry>();
  const whiteouts: string[] = [];
  const opaque: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    tarStream.on('error', (e) => extract.destroy(e));
  });
  extract.on('entry', (header, body, next) => {
    const finish = (err?: unknown) => (err ? extract.destroy(err as Error) : next());
    try {
      const path = normalizeTarPath(header.name);
      const base = baseOf(path);
      const type = typeOf(header);
      if (base === OPAQUE) {
        opaque.push(parentOf(path));
        body.resume().on('end', () => finish());
        return;
      }
      if (base.startsWith(WHITEOUT)) {
        whiteouts.push(join(parentOf(path), base.slice(WHITEOUT.length)));
        body.resume().on('end', () => finish());
        return;
      }
      if (type === undefined) {
        body.resume().on('end', () => finish());
        return;
      }
      const entry: TreeEntry = { path, type, mode: (header.mode ?? 0) & 0o7777, uid: header.uid ?? 0, gid: header.gid ?? 0, size: 0 };
      if (type === 'symlink') entry.linkTarget = header.linkname ?? '';
      if (type === 'hardlink') {
        entry.linkTarget = normalizeTarPath(header.linkname ?? '');
        // The target is either earlier in this layer or in a lower one; report its content.
        const target = upper.get(entry.linkTarget) ?? tree.get(entry.linkTarget);
        if (target?.sha256 !== undefined) {
          entry.size = target.size;
          entry.sha256 = target.sha256;
        }
      }
      if (type === 'char' || type === 'block') {
        entry.devMajor = header.devmajor ?? 0;
        entry.devMinor = header.devminor ?? 0;
      }
      if (type !== 'file') {
        upper.set(path, entry);
        body.resume().on('end', () => finish());
        return;
      }
      const hash = createHash('sha256');
      let size = 0;
      body.on('data', (chunk: unknown) => {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      });
      body.on('error', finish);
      body.on('end', () => {
        entry.size = size;
        entry.sha256 = `sha256:${hash.digest('hex')}`;
        upper.set(path, entry);
        finish();
      });
    } catch (e) {
      body.resume();
      finish(e);
    }
  });
  tarStream.pipe(extract);
  await done;

  for (const dir of opaque) removeSubtree(tree, dir, true);
  for (const path of whiteouts) removeSubtree(tree, path);
  for (const [path, entry] of upper) {
    const lower = tree.get(path);
    if (lower && lower.type === 'directory' && entry.type !== 'directory') removeSubtree(tree, path);
    tree.set(path, entry);
  }
}

/** Adds the parent directories no layer declared (see TreeEntry.implicit), plus `/` itself. */
function addImplicitParents(tree: Map<string, TreeEntry>): void {
  for (const path of [...tree.keys()]) {
    for (let p = parentOf(path); ; p = parentOf(p)) {
      if (!tree.has(p)) tree.set(p, { path: p, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, implicit: true });
      if (p === '/') break;
    }
  }
}

/** The merged tree of a sequence of layers (each an uncompressed tar stream, opened lazily in order). */
export async function treeFromLayers(layers: Iterable<() => Promise<Readable> | Readable>): Promise<TreeEntry[]> {
  const tree = new Map<string, TreeEntry>();
  for (const open of layers) await applyLayerTar(tree, await open());
  addImplicitParents(tree);
  return [...tree.values()].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

interface LayoutIndex {
  manifests: Array<Descriptor & { platform?: { architecture?: string; os?: string } }>;
}

const blobPath = (ociDir: string, digest: string) => {
  const [alg, hex] = digest.split(':');
  return join(ociDir, 'blobs', alg!, hex!);
};

function layerStream(ociDir: string, desc: Descriptor): Readable {
  const file = createReadStream(blobPath(ociDir, desc.digest));
  if (/zstd/.test(desc.mediaType)) throw new Error(`layer ${desc.digest}: zstd layers are not supported by imageTree (media type ${desc.mediaType})`);
  if (/gzip/.test(desc.mediaType)) {
    const gunzip = createGunzip();
    file.on('error', (e) => gunzip.destroy(e));
    return file.pipe(gunzip);
  }
  return file;
}

/** The layer descriptors of the image tagged `tag` (or the only image) in the OCI layout `ociDir`. */
export async function layoutLayers(ociDir: string, tag?: string): Promise<Descriptor[]> {
  const readJson = async <T>(path: string) => JSON.parse(await readFile(path, 'utf8')) as T;
  const index = await readJson<LayoutIndex>(join(ociDir, 'index.json'));
  const refName = 'org.opencontainers.image.ref.name';
  const candidates = tag === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.[refName] === tag);
  if (candidates.length !== 1) {
    const tags = index.manifests.map((m) => m.annotations?.[refName] ?? m.digest).join(', ');
    throw new Error(`${ociDir}: expected one image tagged ${tag ?? '(any)'}, found ${candidates.length} (has: ${tags})`);
  }
  let desc: Descriptor = candidates[0]!;
  // A multi-platform layout: take the host's linux image, as a runtime would.
  for (let depth = 0; /index|manifest\.list/.test(desc.mediaType); depth++) {
    if (depth > 4) throw new Error(`${ociDir}: nested indexes too deep`);
    const nested = await readJson<LayoutIndex>(blobPath(ociDir, desc.digest));
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const match = nested.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ?? nested.manifests[0];
    if (!match) throw new Error(`${ociDir}: empty index ${desc.digest}`);
    desc = match;
  }
  const manifest = await readJson<{ layers: Descriptor[] }>(blobPath(ociDir, desc.digest));
  return manifest.layers;
}

/** The merged file tree of an image in an OCI layout, read straight from its layer blobs (nothing is extracted). */
export async function imageTree(ociDir: string, tag?: string): Promise<TreeEntry[]> {
  const layers = await layoutLayers(ociDir, tag);
  return treeFromLayers(layers.map((l) => () => layerStream(ociDir, l)));
}

export interface DiffOptions {
  /** Paths (or path + entries) whose differences are expected; see buildahRunArtifacts. */
  ignore?: (path: string, a: TreeEntry | undefined, b: TreeEntry | undefined) => boolean;
  fields?: readonly TreeField[];
  /** How the two sides are called in the lines; default ['a', 'b']. */
  names?: readonly [string, string];
  /**
   * Compare hardlinks as the files they are (content, mode, owner), not by which path the tar
   * stored first: buildah 1.28 COPY does not keep hardlinks between copied files at all, and two
   * builders that do may pick different first paths.
   */
  hardlinksAsFiles?: boolean;
}

function asFile(e: TreeEntry | undefined): TreeEntry | undefined {
  if (e?.type !== 'hardlink') return e;
  const { linkTarget: _target, ...rest } = e;
  return { ...rest, type: 'file' };
}

function show(field: TreeField, value: unknown): string {
  if (value === undefined) return '(none)';
  if (field === 'mode') return (value as number).toString(8).padStart(4, '0');
  if (field === 'linkTarget' || field === 'sha256') return JSON.stringify(value);
  return String(value);
}

function describe(e: TreeEntry): string {
  const what = e.type === 'symlink' || e.type === 'hardlink' ? `${e.type} -> ${e.linkTarget}` : e.type;
  return `${what} ${show('mode', e.mode)} ${e.uid}:${e.gid}${e.type === 'file' ? ` ${e.size} bytes` : ''}${e.implicit ? ' (implicit)' : ''}`;
}

/**
 * Readable differences between two trees, one line each, in path order:
 * `/etc/x: mode 0644 != 0755`, `/etc/y: only in b (file 0644 0:0 3 bytes)`. Empty when equal.
 * Modification times are never compared: every builder stamps its own.
 */
export function diffTrees(a: readonly TreeEntry[], b: readonly TreeEntry[], opts: DiffOptions = {}): string[] {
  const fields = opts.fields ?? ALL_TREE_FIELDS;
  const [nameA, nameB] = opts.names ?? ['a', 'b'];
  const mapA = new Map(a.map((e) => [e.path, e]));
  const mapB = new Map(b.map((e) => [e.path, e]));
  const paths = [...new Set([...mapA.keys(), ...mapB.keys()])].sort();
  const lines: string[] = [];
  for (const path of paths) {
    const ea = opts.hardlinksAsFiles ? asFile(mapA.get(path)) : mapA.get(path);
    const eb = opts.hardlinksAsFiles ? asFile(mapB.get(path)) : mapB.get(path);
    if (opts.ignore?.(path, ea, eb)) continue;
    if (!ea) {
      lines.push(`${path}: only in ${nameB} (${describe(eb!)})`);
      continue;
    }
    if (!eb) {
      lines.push(`${path}: only in ${nameA} (${describe(ea)})`);
      continue;
    }
    const diffs = fields.filter((f) => ea[f] !== eb[f]).map((f) => `${f} ${show(f, ea[f])} != ${show(f, eb[f])}`);
    if (diffs.length > 0) lines.push(`${path}: ${diffs.join(', ')}`);
  }
  return lines;
}

/** Fails (node:assert) with the first `limit` differences when the trees differ. */
export function assertSameTree(a: readonly TreeEntry[], b: readonly TreeEntry[], opts: DiffOptions & { limit?: number; message?: string } = {}): void {
  const lines = diffTrees(a, b, opts);
  if (lines.length === 0) return;
  const limit = opts.limit ?? 30;
  const [nameA, nameB] = opts.names ?? ['a', 'b'];
  const more = lines.length > limit ? `\n… and ${lines.length - limit} more` : '';
  assert.fail(`${opts.message ? `${opts.message}: ` : ''}${lines.length} differences between ${nameA} and ${nameB}:\n${lines.slice(0, limit).join('\n')}${more}`);
}

/**
 * What buildah 1.28 (chroot isolation) leaves in an image after a RUN step when the base image
 * lacks it, found by building `RUN` over bases with and without these paths:
 * - the files it bind-mounts the container's name resolution onto, committed as EMPTY regular
 *   files, mode 0755, root-owned;
 * - the directories it mounts the kernel filesystems on, committed as EMPTY 0755 root directories,
 *   and /etc when it had to create it as the parent of the files above.
 * Neither BuildKit nor Kaniko commits mount points, so these are expected differences, but only in
 * exactly that shape: present on buildah's side alone, empty, root, 0755.
 */
export const BUILDAH_RUN_MOUNT_FILES: readonly string[] = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];
export const BUILDAH_RUN_MOUNT_DIRS: readonly string[] = ['/dev', '/proc', '/sys', '/run', '/etc'];

/**
 * An `ignore` for diffTrees that skips buildah's RUN mount-point artifacts (see
 * BUILDAH_RUN_MOUNT_FILES/DIRS). `buildahTree` is the buildah side, needed to check that an extra
 * directory is empty apart from other artifacts; `buildahSide` says which argument of diffTrees it is.
 */
export function ignoreBuildahRunArtifacts(buildahTree: readonly TreeEntry[], buildahSide: 'a' | 'b' = 'b'): NonNullable<DiffOptions['ignore']> {
  const isRootOwned0755 = (e: TreeEntry) => e.mode === 0o755 && e.uid === 0 && e.gid === 0;
  const isArtifactFile = (e: TreeEntry) => BUILDAH_RUN_MOUNT_FILES.includes(e.path) && e.type === 'file' && e.size === 0 && isRootOwned0755(e);
  const children = (dir: string) => buildahTree.filter((e) => e.path.startsWith(`${dir}/`));
  return (path, a, b) => {
    const [buildah, other] = buildahSide === 'a' ? [a, b] : [b, a];
    if (other !== undefined || buildah === undefined) return false;
    if (isArtifactFile(buildah)) return true;
    return (
      BUILDAH_RUN_MOUNT_DIRS.includes(path) &&
      buildah.type === 'directory' &&
      isRootOwned0755(buildah) &&
      children(path).every(isArtifactFile)
    );
  };
}
