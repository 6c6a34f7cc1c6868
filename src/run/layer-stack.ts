import { lstat, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { readXattrs, isOpaqueMarked } from '../fs/diff/index.js';
import { GantryError } from '../util/errors.js';

/**
 * Path lookup in a stack of overlay layer directories (top first: the upperdir, then the
 * lowerdirs) with overlayfs semantics, without mounting: char 0:0 whiteouts hide lower entries,
 * an opaque directory hides the same directory in the layers below it, the topmost non-directory
 * wins. Symlinks resolve inside the image root, never on the host.
 *
 * The ns sandbox needs this before it mounts anything: mount targets must be created in a
 * skeleton layer (or, for the working directory, in the upperdir) at their real, symlink-free
 * location, since `mount` itself would follow an image symlink such as `/etc/resolv.conf ->
 * /run/...` on the host.
 */

const MAX_SYMLINKS = 40;

export type StackEntryKind = 'dir' | 'file' | 'symlink' | 'other';

export interface StackDir {
  /** Path relative to the image root, '' for the root. */
  rel: string;
  /** Layers holding this directory, topmost first, cut below an opaque one. */
  layers: number[];
  /** Metadata of the topmost copy: what the merged view shows. */
  stat?: Stats;
}

export interface Resolution {
  /** Symlink-free path inside the image of the deepest existing element, then the missing rest. */
  path: string;
  /** Existing directories from the root down to the deepest existing one (root first). */
  dirs: StackDir[];
  /** The final element, when it exists. */
  leaf?: { kind: StackEntryKind; stat: Stats; layer: number };
  /** Components below `dirs` that do not exist (empty when the whole path exists). */
  missing: string[];
}

function kindOf(st: Stats): StackEntryKind {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

export const isWhiteoutStat = (st: Stats) => st.isCharacterDevice() && st.rdev === 0;

type Lookup =
  | { kind: 'missing' }
  | { kind: 'dir'; dir: StackDir }
  | { kind: Exclude<StackEntryKind, 'dir'>; stat: Stats; layer: number };

export class LayerStack {
  private readonly opaque = new Map<string, boolean>();

  /** `layers`: host directories, topmost first. */
  constructor(readonly layers: readonly string[]) {}

  root(): StackDir {
    return { rel: '', layers: this.layers.map((_, i) => i) };
  }

  /** Whether a layer's copy of a directory carries the overlay opaque marker (cached). */
  async isOpaque(layer: number, rel: string): Promise<boolean> {
    const host = join(this.layers[layer], rel);
    let known = this.opaque.get(host);
    if (known === undefined) {
      const attrs = await readXattrs([host], { match: '^(trusted|user)\\.overlay\\.opaque$' });
      known = isOpaqueMarked(attrs.get(host));
      this.opaque.set(host, known);
    }
    return known;
  }

  async lookup(parent: StackDir, name: string): Promise<Lookup> {
    const rel = parent.rel === '' ? name : `${parent.rel}/${name}`;
    for (let k = 0; k < parent.layers.length; k++) {
      const layer = parent.layers[k];
      const st = await lstatOrUndefined(join(this.layers[layer], rel));
      if (!st) continue;
      if (isWhiteoutStat(st)) return { kind: 'missing' };
      if (!st.isDirectory()) return { kind: kindOf(st) as Exclude<StackEntryKind, 'dir'>, stat: st, layer };
      // A directory: it merges with the same directory further down until a layer has something
      // else there, or this copy is opaque.
      const layers = [layer];
      const rest = parent.layers.slice(k + 1);
      if (rest.length > 0 && !(await this.isOpaque(layer, rel))) {
        for (const below of rest) {
          const b = await lstatOrUndefined(join(this.layers[below], rel));
          if (!b) continue;
          if (!b.isDirectory()) break;
          layers.push(below);
          if (below !== rest[rest.length - 1] && (await this.isOpaque(below, rel))) break;
        }
      }
      return { kind: 'dir', dir: { rel, layers, stat: st } };
    }
    return { kind: 'missing' };
  }

  /**
   * Resolves an absolute in-image path. Symlinks are followed (the last one too when
   * `followLast`), `..` never climbs above the root.
   */
  async resolve(path: string, opts: { followLast?: boolean } = {}): Promise<Resolution> {
    if (!path.startsWith('/')) throw new GantryError('INVALID_ARGUMENT', `"${path}" is not an absolute path`);
    const stack: StackDir[] = [this.root()];
    const queue = path.split('/').filter((c) => c !== '' && c !== '.');
    let links = 0;
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const parent = stack[stack.length - 1];
      const found = await this.lookup(parent, name);
      const last = queue.length === 0;
      if (found.kind === 'missing') return this.result(stack, undefined, [name, ...queue]);
      if (found.kind === 'dir') {
        stack.push(found.dir);
        continue;
      }
      if (found.kind === 'symlink' && (!last || opts.followLast)) {
        if (++links > MAX_SYMLINKS) {
          throw new GantryError('UNSAFE_PATH', `too many levels of symbolic links resolving ${path} in the image`);
        }
        const rel = parent.rel === '' ? name : `${parent.rel}/${name}`;
        const target = await readlink(join(this.layers[found.layer], rel));
        if (target.startsWith('/')) stack.splice(1);
        queue.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
        continue;
      }
      if (!last) {
        throw new GantryError('INVALID_ARGUMENT', `cannot resolve ${path} in the image: /${parent.rel === '' ? name : `${parent.rel}/${name}`} is not a directory`);
      }
      return this.result(stack, { kind: found.kind, stat: found.stat, layer: found.layer }, [], name);
    }
    const top = stack[stack.length - 1];
    const stat = top.stat ?? (await lstat(this.layers[0]));
    return { path: '/' + top.rel, dirs: stack, leaf: { kind: 'dir', stat, layer: top.layers[0] ?? 0 }, missing: [] };
  }

  private result(stack: StackDir[], leaf: Resolution['leaf'], missing: string[], leafName?: string): Resolution {
    const base = stack[stack.length - 1].rel;
    const tail = leafName !== undefined ? [leafName] : missing;
    return { path: posix.join('/', base, ...tail), dirs: stack, leaf, missing };
  }
}
